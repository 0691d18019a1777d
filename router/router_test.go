package router

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/keyhash"
	"github.com/infergate/infergate/oip"
)

func revs(names ...string) []*Revision[string] {
	out := make([]*Revision[string], len(names))
	for i, n := range names {
		out[i] = &Revision[string]{Name: n, Number: i + 1, Backend: "backend-" + n}
	}
	return out
}

func canary(stable, latest float64) Model[string] {
	m := Model[string]{
		Name:      "iris",
		Revisions: revs("iris-00001", "iris-00002"),
		Tags:      map[string]string{"latest": "iris-00002", "prev": "iris-00001"},
	}
	if stable > 0 {
		m.Traffic = append(m.Traffic, Weight{"iris-00001", stable})
	}
	if latest > 0 {
		m.Traffic = append(m.Traffic, Weight{"iris-00002", latest})
	}
	return m
}

func mustTable(t testing.TB, models ...Model[string]) *Table[string] {
	t.Helper()
	tab, err := New(models)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestResolvePinned(t *testing.T) {
	tab := mustTable(t, canary(90, 10))
	for _, tc := range []struct {
		pin, want, wantErr string
	}{
		{pin: "iris-00001", want: "iris-00001"},
		{pin: "iris-00002", want: "iris-00002"},
		{pin: "1", want: "iris-00001"},
		{pin: "2", want: "iris-00002"},
		{pin: "latest", want: "iris-00002"},
		{pin: "prev", want: "iris-00001"},
		{pin: "3", wantErr: `model "iris" has no revision or tag "3"; revisions: iris-00001 (1), iris-00002 (2); tags: latest=iris-00002, prev=iris-00001`},
		{pin: "00001", wantErr: `has no revision or tag "00001"`},
	} {
		rev, _, err := tab.Resolve(Request{Model: []byte("iris"), Pin: []byte(tc.pin)})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || oip.KindOf(err) != oip.KindNotFound {
				t.Errorf("pin %q: error %v, want not found containing %q", tc.pin, err, tc.wantErr)
			}
			continue
		}
		if err != nil || rev.Name != tc.want || rev.Backend != "backend-"+tc.want {
			t.Errorf("pin %q: got %v, %v; want %s", tc.pin, rev, err, tc.want)
		}
	}
	_, _, err := tab.Resolve(Request{Model: []byte("digits")})
	if err == nil || oip.KindOf(err) != oip.KindNotFound || !strings.Contains(err.Error(), "served models: iris") {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestResolveSplit(t *testing.T) {
	for _, tc := range []struct {
		name           string
		stable, latest float64
	}{
		{"all stable", 100, 0},
		{"canary 10", 90, 10},
		{"half", 50, 50},
		{"canary 1", 99, 1},
		{"promoted", 0, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := mustTable(t, canary(tc.stable, tc.latest))
			const n = 200000
			got := map[string]int{}
			for range n {
				rev, mirror, err := tab.Resolve(Request{Model: []byte("iris")})
				if err != nil || mirror != nil {
					t.Fatal(rev, mirror, err)
				}
				got[rev.Name]++
			}
			// 5 standard deviations of a binomial count.
			p := tc.latest / 100
			tol := 5*math.Sqrt(n*p*(1-p)) + 1
			if d := math.Abs(float64(got["iris-00002"]) - n*p); d > tol {
				t.Fatalf("latest got %d of %d, want %.0f ± %.0f", got["iris-00002"], n, n*p, tol)
			}
		})
	}
}

func TestStickyKeysStayAndMoveOneWay(t *testing.T) {
	const keys = 20000
	assign := func(stable, latest float64) []string {
		tab := mustTable(t, canary(stable, latest))
		out := make([]string, keys)
		for k := range keys {
			rev, _, err := tab.Resolve(Request{Model: []byte("iris"), Key: keyhash.Bytes([]byte(fmt.Sprintf("user-%d", k))), Sticky: true})
			if err != nil {
				t.Fatal(err)
			}
			out[k] = rev.Name
		}
		return out
	}
	prev := assign(95, 5)
	again := assign(95, 5)
	for k := range keys {
		if prev[k] != again[k] {
			t.Fatalf("key %d flipped between equal tables: %s then %s", k, prev[k], again[k])
		}
	}
	for _, step := range []float64{10, 25, 50, 75, 100} {
		next := assign(100-step, step)
		onLatest := 0
		for k := range keys {
			if prev[k] == "iris-00002" && next[k] != "iris-00002" {
				t.Fatalf("raising the canary to %v%% moved key %d off it", step, k)
			}
			if next[k] == "iris-00002" {
				onLatest++
			}
		}
		p := step / 100
		if tol := 5*math.Sqrt(keys*p*(1-p)) + 1; math.Abs(float64(onLatest)-keys*p) > tol {
			t.Fatalf("at %v%%, %d of %d keys on the canary", step, onLatest, keys)
		}
		prev = next
	}
}

func TestMirror(t *testing.T) {
	m := canary(100, 0)
	m.Mirror = &Mirror{Revision: "latest", Percent: 20}
	tab := mustTable(t, m)
	const n = 100000
	mirrored := 0
	for range n {
		rev, mirror, err := tab.Resolve(Request{Model: []byte("iris")})
		if err != nil || rev.Name != "iris-00001" {
			t.Fatal(rev, err)
		}
		if mirror != nil {
			if mirror.Name != "iris-00002" {
				t.Fatalf("mirrored to %s", mirror.Name)
			}
			mirrored++
		}
	}
	if tol := 5*math.Sqrt(n*0.2*0.8) + 1; math.Abs(float64(mirrored)-n*0.2) > tol {
		t.Fatalf("mirrored %d of %d, want 20%%", mirrored, n)
	}
	// A request pinned to the mirror's revision is not copied to itself.
	for range 1000 {
		if _, mirror, _ := tab.Resolve(Request{Model: []byte("iris"), Pin: []byte("latest")}); mirror != nil {
			t.Fatal("a request to the mirror revision was mirrored to it")
		}
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Model[string])
		want string
	}{
		{"no revision", func(m *Model[string]) { m.Revisions = nil }, `model "iris": no revision`},
		{"no traffic", func(m *Model[string]) { m.Traffic = nil }, "no traffic split"},
		{"sum", func(m *Model[string]) { m.Traffic[0].Percent = 80 }, "sum to 90, not 100"},
		{"unknown traffic", func(m *Model[string]) { m.Traffic[1].Revision = "latest" }, `traffic names revision "latest"`},
		{"zero weight", func(m *Model[string]) { m.Traffic = append(m.Traffic, Weight{"iris-00002", 0}) }, "not in (0, 100]"},
		{"twice", func(m *Model[string]) { m.Revisions[1].Number = 1 }, "declared twice"},
		{"bad tag", func(m *Model[string]) { m.Tags["canary"] = "iris-00009" }, `tag "canary" names revision "iris-00009"`},
		{"tag shadows", func(m *Model[string]) { m.Tags["1"] = "iris-00002" }, `tag "1" is also`},
		{"mirror", func(m *Model[string]) { m.Mirror = &Mirror{Revision: "x", Percent: 5} }, `mirror names revision "x"`},
		{"mirror percent", func(m *Model[string]) { m.Mirror = &Mirror{Revision: "latest", Percent: 101} }, "mirror percent 101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := canary(90, 10)
			tc.edit(&m)
			_, err := New([]Model[string]{m})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := New([]Model[string]{canary(100, 0), canary(100, 0)}); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Fatalf("duplicate model: %v", err)
	}
}

func TestTablesDoNotShareRevisions(t *testing.T) {
	m := canary(90, 10)
	stats := new(Stats)
	m.Revisions[0].Stats = stats
	a := mustTable(t, m)
	b := mustTable(t, m)
	ra, rb := a.Revisions("iris")[0], b.Revisions("iris")[0]
	if ra == rb || ra == m.Revisions[0] {
		t.Fatal("tables share the caller's Revision values")
	}
	if ra.Stats != stats || rb.Stats != stats {
		t.Fatal("a given Stats is not kept across tables")
	}
}

// bigTable is 1,000 models of 10 revisions each, 90/10 between the last two.
func bigTable(b *testing.B) (*Table[string], [][]byte) {
	models := make([]Model[string], 1000)
	names := make([][]byte, len(models))
	for i := range models {
		name := fmt.Sprintf("model-%04d", i)
		names[i] = []byte(name)
		rs := make([]*Revision[string], 10)
		for j := range rs {
			rs[j] = &Revision[string]{Name: fmt.Sprintf("%s-%05d", name, j+1), Number: j + 1}
		}
		models[i] = Model[string]{
			Name: name, Revisions: rs,
			Traffic: []Weight{{rs[8].Name, 90}, {rs[9].Name, 10}},
			Tags:    map[string]string{"latest": rs[9].Name, "prev": rs[8].Name},
		}
	}
	tab, err := New(models)
	if err != nil {
		b.Fatal(err)
	}
	return tab, names
}

func BenchmarkResolve(b *testing.B) {
	tab, names := bigTable(b)
	prev := []byte("prev")
	for _, bc := range []struct {
		name string
		req  func(i int) Request
	}{
		{"split", func(i int) Request { return Request{Model: names[i%len(names)]} }},
		{"sticky", func(i int) Request { return Request{Model: names[i%len(names)], Key: uint64(i), Sticky: true} }},
		{"pinned", func(i int) Request { return Request{Model: names[i%len(names)], Pin: prev} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, err := tab.Resolve(bc.req(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func TestResolveDoesNotAllocate(t *testing.T) {
	tab := mustTable(t, canary(90, 10))
	name, pin := []byte("iris"), []byte("latest")
	allocs := testing.AllocsPerRun(1000, func() {
		_, _, _ = tab.Resolve(Request{Model: name})
		_, _, _ = tab.Resolve(Request{Model: name, Key: 42, Sticky: true})
		_, _, _ = tab.Resolve(Request{Model: name, Pin: pin})
	})
	if allocs != 0 {
		t.Fatalf("Resolve allocates %v times per run", allocs)
	}
}
