//go:build long

package long

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testKills kills random replicas of iris with SIGKILL under load. The
// README's promise: a replica whose process exits is withdrawn at once and
// only the requests in flight on it fail (and those are retried on
// another replica when one is ready); the supervisor restarts it. So at
// most the requests in flight at the kills may fail. With one replica the
// requests that arrive while it restarts are held until it is ready
// (within their deadline), not failed.
func testKills(t *testing.T, replicas int) {
	r := newReport(t)
	rng := newRand(t)
	s := startServer(t, irisModel(t, "iris", "iris", replicas, replicas, 10, ""))
	if !s.waitReady(t, "iris", replicas, time.Minute) {
		return
	}
	// One replica: half the rate, so that what arrives during the longest
	// restart (4s of backoff) fits in the activator's queue of 1000
	// requests (a full queue is a documented 503).
	rate := faultRate
	if replicas == 1 {
		rate = faultRate / 2
	}
	l := startLoad(t, s, loadOptions{rate: rate, mix: irisMix("iris")})

	// One replica: three kills 12s apart, so that the restart backoff (1s,
	// 2s, 4s) stays inside the 10s deadline. Three: a kill every 2 to 3s
	// for half a minute, never of the last ready replica.
	var at []time.Duration
	end := 38 * time.Second
	if replicas == 1 {
		at = []time.Duration{3 * time.Second, 15 * time.Second, 27 * time.Second}
	} else {
		for d := 3 * time.Second; d < 33*time.Second; d += 2*time.Second + time.Duration(rng.IntN(1000))*time.Millisecond {
			at = append(at, d)
		}
		end = 36 * time.Second
	}
	start := time.Now()
	l.setPhase("kills")
	kills, passed := 0, 0
	var inFlightAtKills int64
	for _, d := range at {
		if !s.pause(time.Until(start.Add(d))) {
			break
		}
		reps := s.replicas("iris")
		if len(reps) == 0 || (replicas > 1 && s.readyServing("iris") < 2) {
			passed++
			continue
		}
		v := reps[rng.IntN(len(reps))]
		inFlightAtKills += l.inFlight.Load()
		v.signal(t, syscall.SIGKILL)
		kills++
	}
	l.setPhase("after the last kill")
	s.pause(time.Until(start.Add(end)))
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.alive(s)
	r.phases(tl)
	r.notef("%d replicas killed with SIGKILL (%d turns passed: fewer than 2 replicas ready); %d requests were in flight at the kills", kills, passed, inFlightAtKills)
	if f := c.failed(); f > inFlightAtKills {
		r.errorf("%d requests did not get 200/OK (answered %s; reasons %s; not sent %s), but only the %d in flight at the kills may fail",
			f, formatMap(c.answered), formatMap(c.reasons), formatMap(c.notSent), inFlightAtKills)
	}
	if !s.waitReady(t, "iris", replicas, time.Minute) {
		r.errorf("the killed replicas did not all come back within a minute")
	}
	if rows, err := s.models("iris"); err == nil && len(rows) > 0 {
		r.notef("restarts counted by the supervisor: %d", rows[0].Restarts)
	}
}

// testHang stops a replica with SIGSTOP (alive, but answering nothing)
// and later resumes it; then stops another and kills it while stopped.
// The README's promise: replicas are probed every 500ms with a 1s
// deadline and a sick replica stops taking traffic within a second, so
// from 3s after a replica hung every request must get 200. Requests sent
// to it before must still get an answer (504 at their deadline at worst).
func testHang(t *testing.T) {
	r := newReport(t)
	rng := newRand(t)
	s := startServer(t, irisModel(t, "iris", "iris", 3, 3, 10, ""))
	if !s.waitReady(t, "iris", 3, time.Minute) {
		return
	}
	l := startLoad(t, s, loadOptions{rate: faultRate, mix: irisMix("iris")})
	ok := step(r, s, l, "steady", 3*time.Second)
	reps := s.replicas("iris")
	if len(reps) != 3 {
		t.Fatalf("%d iris replicas, want 3", len(reps))
	}
	a := reps[rng.IntN(len(reps))]
	l.setPhase("A hung, first 3s")
	a.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = syscall.Kill(a.pid, syscall.SIGCONT) })
	ok = ok && step(r, s, l, "A hung, first 3s", 3*time.Second)
	ok = ok && step(r, s, l, "A hung", 12*time.Second)
	l.setPhase("A resumed")
	a.signal(t, syscall.SIGCONT)
	ok = ok && step(r, s, l, "A resumed", 5*time.Second)
	var b replica
	for _, x := range s.replicas("iris") {
		if x.pid != a.pid {
			b = x
			break
		}
	}
	if ok && b.pid != 0 {
		l.setPhase("B hung, first 3s")
		b.signal(t, syscall.SIGSTOP)
		t.Cleanup(func() { _ = syscall.Kill(b.pid, syscall.SIGCONT) })
		ok = ok && step(r, s, l, "B hung, first 3s", 3*time.Second)
		ok = ok && step(r, s, l, "B hung", 7*time.Second)
		l.setPhase("B killed while hung")
		b.signal(t, syscall.SIGKILL)
		ok = ok && step(r, s, l, "B killed while hung", 8*time.Second)
	}
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.alive(s)
	r.phases(tl)
	r.notef("replica A (pid %d, index %d) stopped 15s then resumed; replica B (pid %d, index %d) stopped 10s then killed", a.pid, a.index, b.pid, b.index)
	r.allOK("requests sent from 3s after replica A hung until it resumed", tl.phase("A hung"))
	r.allOK("requests sent from 3s after replica B hung until it was killed", tl.phase("B hung"))
	if !s.waitReady(t, "iris", 3, time.Minute) {
		r.errorf("iris did not get back to 3 ready replicas within a minute")
	}
}

// testGarbage serves a model from fake runtimes that answer every other
// infer with garbage (see garbageModes), next to a healthy iris. The
// gateway must stay up, iris must not notice, every request must be
// answered, and what the gateway itself says must be well-formed: an
// error in OIP form (a runtime's garbage is a 5xx, never the client's
// 4xx), and over gRPC (where the gateway decodes the runtime's JSON to
// translate it) never an OK whose tensors do not fill their shapes. A
// REST 200 carrying the runtime's bytes as they were is the pass-through
// the README documents; those are counted, not failed.
func testGarbage(t *testing.T) {
	r := newReport(t)
	s := startServer(t, fakeModel("garbage", "garbage", 2, 2)+"---\n"+irisModel(t, "iris", "iris", 1, 1, 10, ""))
	if !s.waitReady(t, "garbage", 2, time.Minute) || !s.waitReady(t, "iris", 1, time.Minute) {
		return
	}
	gr := restInfer("garbage rest", "garbage", irisBody)
	gr.expect, gr.weight = nil, 3
	gg := grpcInfer("garbage grpc", irisGRPC("garbage"))
	gg.expect, gg.weight = nil, 3
	mix := append([]*reqKind{gr, gg}, irisMix("iris")...)
	l := startLoad(t, s, loadOptions{rate: faultRate, mix: mix})
	step(r, s, l, "garbage", 20*time.Second)
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.alive(s)
	if resp, err := http.Get("http://" + s.rest + "/v2/health/live"); err != nil || resp.StatusCode != 200 {
		r.errorf("the gateway is not live after the garbage: %v", err)
	} else {
		resp.Body.Close()
	}
	iris := tl.sum(func(_, k string) bool { return strings.HasPrefix(k, "iris ") })
	r.allOK("iris, next to a runtime that answers garbage", iris)
	r.noBad("iris", iris)

	rest := tl.kind("garbage rest")
	r.notef("garbage over REST: %s", tableLine("garbage rest", rest))
	r.onlyStatuses("garbage over REST", rest, "rest 200", "rest 500", "rest 502", "rest 503", "rest 504")
	passed := int64(0)
	for k, n := range rest.bad {
		if strings.HasPrefix(k, "rest 200 with") {
			passed += n
		} else {
			r.errorf("garbage over REST: %d answers: %s", n, k)
		}
	}
	r.notef("REST 200s carrying the runtime's malformed body as it was (pass-through, not decoded): %d (%s)", passed, formatMap(rest.bad))

	g := tl.kind("garbage grpc")
	r.notef("garbage over gRPC: %s", tableLine("garbage grpc", g))
	r.onlyStatuses("garbage over gRPC (translated from the runtime's REST)", g, "grpc OK", "grpc Internal", "grpc Unavailable", "grpc DeadlineExceeded")
	r.noBad("garbage over gRPC (the gateway decodes and re-encodes these)", g)
	r.notef("modes the fake runtime cycles through: %s", strings.Join(garbageModes, ", "))
}

// repository calls a replica's model repository API: POST
// /v2/repository/models/iris/{action}.
func repository(t *testing.T, rep replica, action string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://%s/v2/repository/models/%s/%s", rep.rest, rep.model, action), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s on replica %d: %v", action, rep.index, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// testUnready unloads the model from one replica through the replica's own
// repository API (the process is alive, its model is not ready), loads it
// back, then does the same to every replica at once. The README's
// promise: a replica gets traffic only while the runtime and the model
// both answer ready, probed every 500ms; so from 3s after the unload
// every request gets 200 while other replicas are ready, and from 3s
// after the model is ready again everywhere.
func testUnready(t *testing.T) {
	r := newReport(t)
	rng := newRand(t)
	s := startServer(t, irisModel(t, "iris", "iris", 3, 3, 10, ""))
	if !s.waitReady(t, "iris", 3, time.Minute) {
		return
	}
	reps := s.replicas("iris")
	if len(reps) != 3 || reps[0].rest == "" {
		t.Fatalf("iris replicas = %+v, want 3 with their REST addresses", reps)
	}
	l := startLoad(t, s, loadOptions{rate: faultRate, mix: irisMix("iris")})
	ok := step(r, s, l, "steady", 3*time.Second)
	a := reps[rng.IntN(len(reps))]
	// Each phase starts before the change it follows, so that requests
	// sent while the change is made count in the phase that allows for it.
	l.setPhase("A unready, first 3s")
	codes := []int{repository(t, a, "unload")}
	ok = ok && step(r, s, l, "A unready, first 3s", 3*time.Second)
	ok = ok && step(r, s, l, "A unready", 7*time.Second)
	codes = append(codes, repository(t, a, "load"))
	l.setPhase("A loading")
	s.waitReady(t, "iris", 3, 30*time.Second)
	ok = ok && step(r, s, l, "A ready again, first 3s", 3*time.Second)
	ok = ok && step(r, s, l, "A ready again", 3*time.Second)
	l.setPhase("all unready, first 3s")
	for _, x := range reps {
		codes = append(codes, repository(t, x, "unload"))
	}
	ok = ok && step(r, s, l, "all unready, first 3s", 3*time.Second)
	ok = ok && step(r, s, l, "all unready", 4*time.Second)
	l.setPhase("all loading")
	for _, x := range reps {
		codes = append(codes, repository(t, x, "load"))
	}
	l.setPhase("all loading")
	s.waitReady(t, "iris", 3, 30*time.Second)
	ok = ok && step(r, s, l, "all ready again, first 3s", 3*time.Second)
	_ = ok && step(r, s, l, "all ready again", 4*time.Second)
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("all requests", c)
	r.alive(s)
	r.phases(tl)
	r.notef("repository API answers (unload, load, 3 unloads, 3 loads): %v", codes)
	r.allOK("requests sent from 3s after replica A's model was unloaded until it was loaded again", tl.phase("A unready"))
	r.allOK("requests sent from 3s after replica A was ready again", tl.phase("A ready again"))
	r.allOK("requests sent from 3s after every replica was ready again", tl.phase("all ready again"))
}
