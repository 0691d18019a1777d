package registry

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The benchmarks run on a registry of benchModels models with
// benchVersions READY versions each (one artifact, alias prod on the
// newest but one), built once per benchmark process and backend. Run them
// with
//
//	go test -run '^$' -bench . -benchtime 2000x ./registry/
//
// (and INFERGATE_TEST_POSTGRES set for PostgreSQL). Each reports p50 and
// p99 latencies besides ns/op.
const (
	benchModels   = 100
	benchVersions = 100
)

type fixture struct {
	once    sync.Once
	r       *Registry
	dir     string
	cleanup func()
	err     error
}

var fixtures = map[string]*fixture{"sqlite": {}, "postgres": {}}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range fixtures {
		if f.cleanup != nil {
			f.cleanup()
		}
	}
	os.Exit(code)
}

// benchRegistry returns the shared fixture of backend b, building it on
// first use.
func benchRegistry(b *testing.B, backend string) *Registry {
	b.Helper()
	if backend == "postgres" && os.Getenv(pgEnv) == "" {
		b.Skip(pgEnv + " is not set: PostgreSQL benchmarks skipped")
	}
	f := fixtures[backend]
	f.once.Do(func() {
		start := time.Now()
		f.r, f.err = buildFixture(f, backend)
		if f.err == nil {
			fmt.Fprintf(os.Stderr, "registry: %s fixture of %d models x %d versions built in %s\n", backend, benchModels, benchVersions, time.Since(start).Round(time.Millisecond))
		}
	})
	if f.err != nil {
		b.Fatal(f.err)
	}
	return f.r
}

func buildFixture(f *fixture, backend string) (*Registry, error) {
	dir, err := os.MkdirTemp("", "registry-bench-")
	if err != nil {
		return nil, err
	}
	f.cleanup = func() { os.RemoveAll(dir) }
	store := ""
	if backend == "postgres" {
		base := os.Getenv(pgEnv)
		r0, err := Open(context.Background(), Options{DataDir: dir, Store: base})
		if err != nil {
			return nil, err
		}
		var b [6]byte
		crand.Read(b[:])
		schema := "bench_" + hex.EncodeToString(b[:])
		if _, err := r0.st.db.Exec(`CREATE SCHEMA ` + schema); err != nil {
			return nil, err
		}
		f.cleanup = func() {
			r0.st.db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
			r0.Close()
			os.RemoveAll(dir)
		}
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		store = base + sep + "search_path=" + schema
	}
	r, err := Open(context.Background(), Options{DataDir: dir, Store: store})
	if err != nil {
		return nil, err
	}
	ctx := WithActor(context.Background(), "bench")
	// Models, one real version each through the API (its blob is shared by
	// all versions), then the other versions inserted as the API would,
	// in one transaction per model, to keep the build short.
	for i := range benchModels {
		name := fmt.Sprintf("model-%03d", i)
		if _, err := r.CreateModel(ctx, ModelCreate{Name: name, Labels: map[string]string{"team": fmt.Sprint("t", i%10)}}); err != nil {
			return nil, err
		}
		v, err := r.CreateVersion(ctx, name, VersionCreate{Metrics: map[string]float64{"accuracy": 0.9}})
		if err != nil {
			return nil, err
		}
		if _, err := r.AddArtifact(ctx, name, v.Version, ArtifactUpload{Name: "model.onnx", Format: "onnx"}, strings.NewReader("weights")); err != nil {
			return nil, err
		}
		if v, err = r.MarkReady(ctx, name, v.Version); err != nil {
			return nil, err
		}
		art := v.Artifacts[0]
		if err := r.Update(ctx, func(ctx context.Context, tx *Tx) error {
			var mid int64
			if err := tx.QueryRowContext(ctx, `SELECT id FROM models WHERE name = $1`, name).Scan(&mid); err != nil {
				return err
			}
			for n := int64(2); n <= benchVersions; n++ {
				now := micros(time.Now())
				var vid int64
				if err := tx.QueryRowContext(ctx, `INSERT INTO versions (model_id, version, author, labels, metrics, status, state, source_kind, source_actor, digest, create_time, update_time)
VALUES ($1, $2, 'bench', '{"stage":"x"}', '{"accuracy":0.9}', 'READY', 'LIVE', 'user', 'bench', $3, $4, $4) RETURNING id`, mid, n, v.Digest, now).Scan(&vid); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO version_labels (version_id, key, value) VALUES ($1, 'stage', 'x')`, vid); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO artifacts (version_id, name, digest, size, format, content_type, create_time) VALUES ($1, $2, $3, $4, 'onnx', '', $5)`,
					vid, art.Name, art.Digest, art.Size, now); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `UPDATE models SET next_version = $1 WHERE id = $2`, benchVersions+1, mid)
			return err
		}); err != nil {
			return nil, err
		}
		if _, err := r.SetAlias(ctx, name, "prod", benchVersions-1, "bench"); err != nil {
			return nil, err
		}
	}
	// The planner statistics a store of that size would have by now.
	if _, err := r.st.db.Exec(`ANALYZE`); err != nil {
		return nil, err
	}
	return r, nil
}

// timed runs op b.N times and reports p50 and p99 latency.
func timed(b *testing.B, op func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportQuantiles(b, lat)
}

func reportQuantiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

func BenchmarkResolve(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			r := benchRegistry(b, backend)
			ctx := context.Background()
			digest := must[*ModelVersion](b)(r.GetVersion(ctx, "model-000", 1)).Digest
			for _, form := range []struct {
				name string
				ref  func(m string) string
			}{
				{"latest", func(m string) string { return "registry://" + m }},
				{"version", func(m string) string { return "registry://" + m + "/42" }},
				{"alias", func(m string) string { return "registry://" + m + "@prod" }},
				{"digest", func(m string) string { return "registry://" + m + "@" + digest }},
			} {
				b.Run(form.name, func(b *testing.B) {
					rng := rand.New(rand.NewPCG(1, 2))
					timed(b, func(int) error {
						_, err := r.Resolve(ctx, form.ref(fmt.Sprintf("model-%03d", rng.IntN(benchModels))))
						return err
					})
				})
			}
		})
	}
}

func BenchmarkListModels(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			r := benchRegistry(b, backend)
			ctx := context.Background()
			b.Run("page100", func(b *testing.B) {
				timed(b, func(int) error {
					p, err := r.ListModels(ctx, ListOptions{PageSize: 100})
					if err == nil && len(p.Items) != 100 {
						err = fmt.Errorf("%d items", len(p.Items))
					}
					return err
				})
			})
			b.Run("label-filter", func(b *testing.B) {
				timed(b, func(int) error {
					_, err := r.ListModels(ctx, ListOptions{PageSize: 100, Labels: map[string]string{"team": "t3"}})
					return err
				})
			})
		})
	}
}

func BenchmarkListVersions(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			r := benchRegistry(b, backend)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(3, 4))
			b.Run("page100", func(b *testing.B) {
				timed(b, func(int) error {
					p, err := r.ListVersions(ctx, fmt.Sprintf("model-%03d", rng.IntN(benchModels)), ListOptions{PageSize: 100, Order: OrderDesc})
					if err == nil && len(p.Items) != 100 {
						err = fmt.Errorf("%d items", len(p.Items))
					}
					return err
				})
			})
		})
	}
}

// BenchmarkRegisterVersion measures the write rate of a whole registration:
// CreateVersion, AddArtifact (1 KiB) and MarkReady.
func BenchmarkRegisterVersion(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			r := benchRegistry(b, backend)
			ctx := WithActor(context.Background(), "bench")
			register := func(model string, i int) error {
				v, err := r.CreateVersion(ctx, model, VersionCreate{})
				if err != nil {
					return err
				}
				body := strings.NewReader(fmt.Sprintf("%s-%d-%s", model, v.Version, strings.Repeat("x", 1000)))
				if _, err := r.AddArtifact(ctx, model, v.Version, ArtifactUpload{Name: "model.onnx"}, body); err != nil {
					return err
				}
				_, err = r.MarkReady(ctx, model, v.Version)
				return err
			}
			b.Run("serial", func(b *testing.B) {
				start := time.Now()
				timed(b, func(i int) error { return register(fmt.Sprintf("model-%03d", i%benchModels), i) })
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "registrations/s")
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				var mu sync.Mutex
				var lat []time.Duration
				var n int
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					var mine []time.Duration
					for pb.Next() {
						mu.Lock()
						n++
						i := n
						mu.Unlock()
						t0 := time.Now()
						if err := register(fmt.Sprintf("model-%03d", i%benchModels), i); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
				b.StopTimer()
				b.ReportMetric(float64(len(lat))/time.Since(start).Seconds(), "registrations/s")
				reportQuantiles(b, lat)
			})
		})
	}
}
