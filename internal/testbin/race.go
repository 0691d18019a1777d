//go:build race

package testbin

// race is set when the tests run with -race: the binary they start is
// then built with it too, so that its races fail them as well.
const race = true
