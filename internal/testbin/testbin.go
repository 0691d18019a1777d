// Package testbin builds the infergate binary for tests that run it as the
// real process users get (runtimes, the gateway, the bench tool). It is
// for TestMain functions and never used outside tests.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Main builds the infergate binary into a temporary directory, stores its
// path in *path, runs the tests with run, removes the directory and exits
// with run's code. A failed build exits 1 with the compiler's output.
func Main(path *string, run func() int) {
	dir, err := os.MkdirTemp("", "infergate-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*path = filepath.Join(dir, "infergate")
	args := []string{"build", "-o", *path}
	if race {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/infergate/infergate/cmd/infergate")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building infergate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := run()
	os.RemoveAll(dir)
	os.Exit(code)
}
