package runtimes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infergate/infergate/internal/keyhash"
)

// newNamedPool returns a pool of ready fake replicas with the given names.
func newNamedPool(t testing.TB, names []string, opts PoolOptions) *Pool {
	t.Helper()
	opts.Model = "m"
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	cs := make([]Client, len(names))
	for i, n := range names {
		cs[i] = &fakeClient{name: n}
	}
	p, err := NewPool(opts, cs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.Replicas() {
		r.SetReady(true)
	}
	return p
}

func replicaNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("r%d", i)
	}
	return names
}

// sessionKeys returns n keys as the gateway makes them from session IDs.
func sessionKeys(n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = keyhash.Bytes(fmt.Appendf(nil, "session-%d", i))
	}
	return keys
}

// routes sends one successful call per key through DoKey and returns the
// name of the replica each went to.
func routes(t *testing.T, p *Pool, keys []uint64) []string {
	t.Helper()
	got := make([]string, len(keys))
	for i, k := range keys {
		err := p.DoKey(context.Background(), k, func(c Client) error {
			got[i] = addrOf(c)
			return nil
		})
		if err != nil {
			t.Fatalf("DoKey(%d): %v", k, err)
		}
	}
	return got
}

// ringOrder returns the pool's replicas in the order the ring meets them
// from key's point: the order in which DoKey falls back.
func ringOrder(p *Pool, key uint64) []string {
	s := p.set.Load()
	g := &s.ring
	var order []string
	seen := map[int32]bool{}
	for k, pos := 0, g.start(keyhash.Mix(key)); k < len(g.points); k, pos = k+1, (pos+1)%len(g.points) {
		if i := g.owner[pos]; !seen[i] {
			seen[i] = true
			order = append(order, addrOf(s.rs[i].Client))
		}
	}
	return order
}

// recv waits for a value on ch, failing the test after a deadline.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after 10s")
		panic("unreachable")
	}
}

func TestHashBalanceFactorOption(t *testing.T) {
	tests := []struct {
		name    string
		in      float64
		want    float64
		wantErr bool
	}{
		{name: "default", in: 0, want: 1.25},
		{name: "set", in: 2, want: 2},
		{name: "unbounded", in: math.Inf(1), want: math.Inf(1)},
		{name: "one", in: 1, wantErr: true},
		{name: "below one", in: 0.5, wantErr: true},
		{name: "negative", in: -1, wantErr: true},
		{name: "NaN", in: math.NaN(), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPool(PoolOptions{Model: "m", HashBalanceFactor: tc.in}, nil)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "HashBalanceFactor") {
					t.Errorf("NewPool = %v, want an error naming HashBalanceFactor", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.opts.HashBalanceFactor; got != tc.want {
				t.Errorf("HashBalanceFactor = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDoKeySticky: while nothing changes, a key's calls all go to one
// replica.
func TestDoKeySticky(t *testing.T) {
	for _, n := range []int{1, 3, 8, 600} { // 600: past the walk's bitset
		t.Run(fmt.Sprintf("replicas=%d", n), func(t *testing.T) {
			p := newFakePool(t, n, PoolOptions{Seed: 29})
			keys := sessionKeys(1000)
			first := routes(t, p, keys)
			for round := range 3 {
				if diff := cmp.Diff(first, routes(t, p, keys)); diff != "" {
					t.Fatalf("round %d moved keys (-first +now):\n%s", round, diff)
				}
			}
		})
	}
}

// TestDoKeySpread: keys spread over the replicas nearly evenly, whether
// they are hashes, small sequential IDs, or the replicas share an address.
func TestDoKeySpread(t *testing.T) {
	const nkeys = 10000
	sequential := make([]uint64, nkeys)
	for i := range sequential {
		sequential[i] = uint64(i)
	}
	tests := []struct {
		name  string
		names []string
		keys  []uint64
		slack float64 // most a share may differ from 1/n, relative
	}{
		{name: "four replicas", names: replicaNames(4), keys: sessionKeys(nkeys), slack: 0.2},
		{name: "ten replicas", names: replicaNames(10), keys: sessionKeys(nkeys), slack: 0.25},
		{name: "sequential keys", names: replicaNames(4), keys: sequential, slack: 0.2},
		{name: "one address", names: []string{"same", "same", "same", "same"}, keys: sessionKeys(nkeys), slack: 0.2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newNamedPool(t, tc.names, PoolOptions{})
			counts := map[Client]int{}
			for _, k := range tc.keys {
				_ = p.DoKey(context.Background(), k, func(c Client) error { counts[c]++; return nil })
			}
			even := float64(len(tc.keys)) / float64(len(tc.names))
			for i, r := range p.Replicas() {
				got := counts[r.Client]
				if math.Abs(float64(got)-even) > tc.slack*even {
					t.Errorf("replica %d got %d keys, want %.0f ± %.0f%%", i, got, even, 100*tc.slack)
				}
			}
		})
	}
}

// TestDoKeyRebalance: adding a replica moves about 1/(n+1) of the keys, all
// to it; removing one moves that replica's keys and no other.
func TestDoKeyRebalance(t *testing.T) {
	const nkeys = 10000
	tests := []struct {
		name         string
		replicas     int
		add          bool
		remove       int // index of the replica removed when !add
		wantMoved    float64
		movedToAdded bool
	}{
		{name: "add a fifth to four", replicas: 4, add: true, wantMoved: 1.0 / 5},
		{name: "add an eleventh to ten", replicas: 10, add: true, wantMoved: 1.0 / 11},
		{name: "remove one of five", replicas: 5, remove: 2, wantMoved: 1.0 / 5},
		{name: "remove the first of four", replicas: 4, remove: 0, wantMoved: 1.0 / 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, tc.replicas, PoolOptions{})
			keys := sessionKeys(nkeys)
			before := routes(t, p, keys)
			gone := ""
			if tc.add {
				p.Add(&fakeClient{name: "new"}).SetReady(true)
			} else {
				r := p.Replicas()[tc.remove]
				gone = addrOf(r.Client)
				if err := p.Remove(context.Background(), r); err != nil {
					t.Fatal(err)
				}
			}
			after := routes(t, p, keys)
			moved := 0
			for i := range keys {
				if before[i] == after[i] {
					if before[i] == gone {
						t.Fatalf("key %d still goes to the removed replica", i)
					}
					continue
				}
				moved++
				switch {
				case tc.add && after[i] != "new":
					t.Errorf("key %d moved from %s to %s, not to the new replica", i, before[i], after[i])
				case !tc.add && before[i] != gone:
					t.Errorf("key %d moved from %s to %s, though %s was removed", i, before[i], after[i], gone)
				}
			}
			if got := float64(moved) / nkeys; math.Abs(got-tc.wantMoved) > 0.3*tc.wantMoved {
				t.Errorf("%.3f of the keys moved, want about %.3f", got, tc.wantMoved)
			}
		})
	}
}

// TestDoKeySkipsUnavailable: the keys of a replica that may not take calls
// go where they would go without it (the next replica on the ring), and
// the other keys stay.
func TestDoKeySkipsUnavailable(t *testing.T) {
	type setup func(t *testing.T, p *Pool, r *Replica, clock *fakeClock)
	tests := []struct {
		name  string
		setup setup
	}{
		{name: "not ready", setup: func(_ *testing.T, _ *Pool, r *Replica, _ *fakeClock) { r.SetReady(false) }},
		{name: "draining", setup: func(_ *testing.T, _ *Pool, r *Replica, _ *fakeClock) { r.draining.Store(true) }},
		{name: "ejected", setup: func(_ *testing.T, _ *Pool, r *Replica, c *fakeClock) {
			r.ejectedUntil.Store(c.Now().Add(time.Minute).UnixNano())
		}},
		{name: "ejected through DoKey", setup: func(t *testing.T, p *Pool, r *Replica, _ *fakeClock) {
			// Five failures on the replica, each call to one of its keys.
			fails := 0
			for i := 0; fails < 5 && i < 100000; i++ {
				_ = p.DoKey(context.Background(), uint64(i), func(c Client) error {
					if c == r.Client {
						fails++
						return err500
					}
					return nil
				})
			}
			if p.Stats().Ejected != 1 {
				t.Fatalf("%s not ejected after 5 failures", addrOf(r.Client))
			}
		}},
		{name: "breaker open", setup: func(_ *testing.T, _ *Pool, r *Replica, _ *fakeClock) {
			r.brk.openUntil.Store(time.Now().Add(time.Hour).UnixNano())
			r.brk.state.Store(stateOpen)
		}},
	}
	names := replicaNames(5)
	keys := sessionKeys(5000)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for down := range names {
				clock := newFakeClock()
				p := newNamedPool(t, names, PoolOptions{Now: clock.Now, BreakerFailures: 100})
				tc.setup(t, p, p.Replicas()[down], clock)
				without := newNamedPool(t, append(names[:down:down], names[down+1:]...), PoolOptions{})
				if diff := cmp.Diff(routes(t, without, keys), routes(t, p, keys)); diff != "" {
					t.Errorf("with %s %s, routes differ from a pool without it (-without +got):\n%s", names[down], tc.name, diff)
				}
			}
		})
	}
}

// TestDoKeyBoundedLoad holds calls for one hot key in flight, started one
// at a time, and checks each went to the first replica in the key's ring
// order that was below ceil(c*(T+1)/n) with T calls in flight, so that no
// replica that took a keyed call ever holds more than ceil(c*T/n) and the
// overflow goes on along the ring.
func TestDoKeyBoundedLoad(t *testing.T) {
	tests := []struct {
		name     string
		replicas int
		c        float64
		preload  map[int]int64 // calls in flight from elsewhere, by replica index
		calls    int
	}{
		{name: "default factor, four replicas", replicas: 4, calls: 40},
		{name: "factor 2, five replicas", replicas: 5, c: 2, calls: 50},
		{name: "factor 1.1, three replicas", replicas: 3, c: 1.1, calls: 31},
		{name: "one replica", replicas: 1, calls: 10},
		{name: "unbounded", replicas: 4, c: math.Inf(1), calls: 20},
		{name: "load from Do counts", replicas: 4, preload: map[int]int64{0: 12, 1: 3, 2: 5}, calls: 20},
	}
	const hot = 0x5eed
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, tc.replicas, PoolOptions{HashBalanceFactor: tc.c})
			c := p.opts.HashBalanceFactor
			order := ringOrder(p, hot)
			rs := p.Replicas()
			load := map[string]int64{}
			took := map[string]bool{} // replicas that took a keyed call
			var total int64
			for i, l := range tc.preload {
				rs[i].inflight.Store(l)
				load[addrOf(rs[i].Client)] = l
				total += l
			}

			release := make(chan struct{})
			entered := make(chan string, tc.calls)
			var wg sync.WaitGroup
			defer func() {
				close(release)
				wg.Wait()
				for i, l := range tc.preload {
					if got := rs[i].InFlight(); got != l {
						t.Errorf("replica %d has %d calls in flight after the release, want %d", i, got, l)
					}
				}
			}()
			for j := range tc.calls {
				want := order[0]
				if !math.IsInf(c, 1) {
					bound := int64(math.Ceil(c * float64(total+1) / float64(tc.replicas)))
					want = ""
					for _, name := range order {
						if load[name] < bound {
							want = name
							break
						}
					}
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := p.DoKey(context.Background(), hot, func(c Client) error {
						entered <- addrOf(c)
						<-release
						return nil
					})
					if err != nil {
						t.Error(err)
					}
				}()
				got := recv(t, entered)
				if got != want {
					t.Fatalf("call %d with loads %v went to %s, want %s (ring order %v)", j, load, got, want, order)
				}
				load[got]++
				took[got] = true
				total++
				if math.IsInf(c, 1) {
					continue
				}
				limit := int64(math.Ceil(c * float64(total) / float64(tc.replicas)))
				for _, r := range rs {
					if l := r.InFlight(); took[addrOf(r.Client)] && l > limit {
						t.Fatalf("after call %d, %s has %d calls in flight, above ceil(%v*%d/%d) = %d",
							j, addrOf(r.Client), l, c, total, tc.replicas, limit)
					}
				}
			}
		})
	}
}

// TestDoKeyRetriesAlongRing: a retryable failure goes on to the next
// replica on the key's ring, each at most once; others are not retried.
func TestDoKeyRetriesAlongRing(t *testing.T) {
	tests := []struct {
		name      string
		failFirst int // calls that fail before one succeeds; -1: all fail
		err       error
		wantCalls int
		wantErr   error
	}{
		{name: "503 then success", failFirst: 1, err: err503, wantCalls: 2},
		{name: "unreachable twice then success", failFirst: 2, err: errRefused, wantCalls: 3},
		{name: "every replica once", failFirst: -1, err: err503, wantCalls: 4, wantErr: err503},
		{name: "no retry of internal errors", failFirst: -1, err: err500, wantCalls: 1, wantErr: err500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, 4, PoolOptions{})
			const key = 42
			var got []string
			err := p.DoKey(context.Background(), key, func(c Client) error {
				got = append(got, addrOf(c))
				if tc.failFirst < 0 || len(got) <= tc.failFirst {
					return tc.err
				}
				return nil
			})
			if diff := cmp.Diff(ringOrder(p, key)[:tc.wantCalls], got); diff != "" {
				t.Errorf("replicas tried (-ring order +got):\n%s", diff)
			}
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("DoKey = %v, want %v", err, tc.wantErr)
			}
			for _, r := range p.Replicas() {
				// Unreachable replicas are marked not ready, as Do does.
				failed := tc.failFirst > 0 && slices.Contains(got[:tc.failFirst], addrOf(r.Client))
				if want := !(failed && errors.Is(tc.err, ErrUnreachable)); r.Ready() != want {
					t.Errorf("%s ready = %v, want %v", addrOf(r.Client), r.Ready(), want)
				}
			}
		})
	}
}

// TestDoKeyNoReplica: DoKey fails like Do when nothing can take the call.
func TestDoKeyNoReplica(t *testing.T) {
	tests := []struct {
		name     string
		replicas int
		notReady bool
	}{
		{name: "empty pool", replicas: 0},
		{name: "none ready", replicas: 3, notReady: true},
		{name: "none ready, past the walk's bitset", replicas: 600, notReady: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePool(t, tc.replicas, PoolOptions{})
			for _, r := range p.Replicas() {
				r.SetReady(!tc.notReady)
			}
			err := p.DoKey(context.Background(), 7, func(Client) error {
				t.Error("fn called")
				return nil
			})
			if !containsModel(err) || err.Error() != p.noReplicaError().Error() {
				t.Errorf("DoKey = %v, want %v", err, p.noReplicaError())
			}
		})
	}
}

// TestPoolDoKeyAllocs guards DoKey's hot path: it allocates nothing, idle
// or with every replica busy (the bound is computed then).
func TestPoolDoKeyAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector allocates")
	}
	for _, n := range []int{1, 2, 8, 200} {
		for _, busy := range []bool{false, true} {
			t.Run(fmt.Sprintf("replicas=%d/busy=%v", n, busy), func(t *testing.T) {
				p := newFakePool(t, n, PoolOptions{})
				if busy {
					for i, r := range p.Replicas() {
						r.inflight.Store(int64(1 + i%3))
					}
				}
				ctx := context.Background()
				fn := func(Client) error { return nil }
				var key uint64
				if a := testing.AllocsPerRun(1000, func() { key++; _ = p.DoKey(ctx, key, fn) }); a != 0 {
					t.Errorf("DoKey allocates %v times per call, want 0", a)
				}
			})
		}
	}
}

func BenchmarkPoolDoKey(b *testing.B) {
	for _, n := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			p := newFakePool(b, n, PoolOptions{})
			ctx := context.Background()
			fn := func(Client) error { return nil }
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := uint64(0)
				for pb.Next() {
					key++
					if err := p.DoKey(ctx, key, fn); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkPoolDoKeySerial(b *testing.B) {
	p := newFakePool(b, 4, PoolOptions{})
	ctx := context.Background()
	fn := func(Client) error { return nil }
	b.ReportAllocs()
	var key uint64
	for b.Loop() {
		key++
		if err := p.DoKey(ctx, key, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoolDoKeyBusy: every replica has calls in flight, so each call
// reads the whole pool's counters for the bound.
func BenchmarkPoolDoKeyBusy(b *testing.B) {
	for _, n := range []int{4, 32} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			p := newFakePool(b, n, PoolOptions{})
			for _, r := range p.Replicas() {
				r.inflight.Store(8)
			}
			ctx := context.Background()
			fn := func(Client) error { return nil }
			b.ReportAllocs()
			var key uint64
			for b.Loop() {
				key++
				if err := p.DoKey(ctx, key, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
