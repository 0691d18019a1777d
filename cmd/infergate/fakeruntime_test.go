package main

import "github.com/infergate/infergate/serving/servingtest"

// The fake runtimes these tests start as revisions' runtime processes:
// this test binary, turned into one by servingtest.RunRuntime in TestMain.
const (
	// fakeRuntimeEnv's value is "version=V,status=S[,unready][,exit=N]":
	// see servingtest.FakeEnv.
	fakeRuntimeEnv = servingtest.FakeEnv
	// slowRuntimeEnv's value is how long each infer takes: see
	// servingtest.SlowEnv.
	slowRuntimeEnv = servingtest.SlowEnv
)

// fakeRuntimeCommand is the infergate.io/command of a fake runtime.
func fakeRuntimeCommand() string { return servingtest.Command() }
