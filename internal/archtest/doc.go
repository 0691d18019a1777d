// Package archtest holds the test that keeps the imports between infergate's
// packages running one way, as DESIGN.md draws them, and keeps client-go and
// apimachinery out of the data path (gateway, router, batcher, runtimes,
// oip). It runs `go list -deps` over the module, in the manner of Knative's
// pkg/queue/sharedmain/nodeps_test.go.
//
// The rules are a table in archtest_test.go, one entry per top-level
// package: a package's sub-packages follow its rule and may import each
// other. A rule may also deny a sub-package of a package it allows
// (controlplane may import autoscaler, not autoscaler/activator). A new
// top-level package needs a rule there (and a line in DESIGN.md); until
// it has one the test fails naming it.
//
// The package has no code of its own: only the test.
package archtest
