//go:build long

package long

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testbin"
)

// binPath is the infergate binary, built once by TestMain.
var binPath string

var summaryFlag = flag.String("summary", "", "path of the markdown summary (default $LONG_SUMMARY, else a file in the temporary directory)")

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(fakeRuntimeEnv); ok {
		// Started by a case as a runtime replica; see fakeRuntimeMain.
		os.Exit(fakeRuntimeMain(mode, os.Args[1:]))
	}
	testbin.Main(&binPath, func() int {
		code := m.Run()
		if path := writeSummary(); path != "" {
			fmt.Printf("test-long summary: %s\n", path)
		}
		return code
	})
}

// samplesDir is the absolute path of examples/models.
func samplesDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "examples", "models"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// envDuration reads a duration from the environment, def when unset.
func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		panic(fmt.Sprintf("%s=%q: want a positive duration such as 1m", name, v))
	}
	return d
}

// envInt reads a positive integer from the environment, def when unset.
func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		panic(fmt.Sprintf("%s=%q: want a positive integer", name, v))
	}
	return n
}

// Knobs; see the package doc.
var (
	soakDuration = envDuration("LONG_SOAK", 20*time.Minute)
	faultRate    = float64(envInt("LONG_RATE", 400))
	floodConns   = envInt("LONG_FLOOD_CONNS", 4000)
	memBoundMB   = envInt("LONG_MEM_BOUND_MB", 768)
	seed         = uint64(envInt("LONG_SEED", int(time.Now().UnixNano()%1e9)+1))
)

// newRand returns the case's random source, seeded from LONG_SEED and the
// case's name so that a rerun with the same seed makes the same choices.
func newRand(t *testing.T) *rand.Rand {
	var h uint64 = 14695981039346656037
	for _, c := range []byte(t.Name()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	t.Logf("random choices from LONG_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, h))
}
