package main

import (
	"slices"
	"testing"

	"github.com/infergate/infergate/config"
	"github.com/infergate/infergate/runtimes/supervisor"
)

// TestCommandFieldsMatchVars keeps config's list of the fields a command
// template may use, which config validates templates against, in step with
// the fields the supervisor fills in.
func TestCommandFieldsMatchVars(t *testing.T) {
	if got, want := supervisor.VarNames(), config.CommandFields; !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("supervisor fills %v; config accepts %v", got, want)
	}
}
