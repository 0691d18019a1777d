//go:build long

package long

import (
	"fmt"
	"sync"
	"time"
)

// Outcome classes.
const (
	answered = iota // the server answered, completely
	notSent         // the request never reached the server
	lost            // written, and no complete answer came back
)

// outcome is what happened to one request.
type outcome struct {
	class int
	// status is the answer's HTTP status or gRPC code name.
	status string
	// reason says why: an error answer's message (digits folded), or
	// what kept a request from being sent or answered.
	reason string
	// bad is set when the answer is malformed.
	bad string
	// revision is the X-Model-Revision the answer carried.
	revision string
}

// counts is a tally of outcomes. Maps are keyed by "proto status" or by
// reason.
type counts struct {
	sent       int64 // requests issued (answered + not sent + lost)
	answered   map[string]int64
	reasons    map[string]int64 // error answers: "rest 503: model ... no ready replica"
	notSent    map[string]int64
	lost       map[string]int64
	bad        map[string]int64
	unexpected map[string]int64 // answers whose status the kind does not expect
	revisions  map[string]int64
	// skipped counts arrivals of an open loop that found MaxInFlight
	// requests outstanding and were not sent at all.
	skipped int64
	// lostSamples are the first lost requests, for the log.
	lostSamples []string
}

func newCounts() *counts {
	return &counts{
		answered: map[string]int64{}, reasons: map[string]int64{}, notSent: map[string]int64{},
		lost: map[string]int64{}, bad: map[string]int64{}, unexpected: map[string]int64{}, revisions: map[string]int64{},
	}
}

func addMap(dst, src map[string]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

func (c *counts) add(o *counts) {
	c.sent += o.sent
	c.skipped += o.skipped
	addMap(c.answered, o.answered)
	addMap(c.reasons, o.reasons)
	addMap(c.notSent, o.notSent)
	addMap(c.lost, o.lost)
	addMap(c.bad, o.bad)
	addMap(c.unexpected, o.unexpected)
	addMap(c.revisions, o.revisions)
	for _, s := range o.lostSamples {
		if len(c.lostSamples) < 10 {
			c.lostSamples = append(c.lostSamples, s)
		}
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// ok counts answers with status 200 or OK.
func (c *counts) ok() int64 { return c.answered["rest 200"] + c.answered["grpc OK"] }

// failed counts requests that did not end in 200 / OK: error answers,
// requests not sent and lost ones.
func (c *counts) failed() int64 { return c.sent - c.ok() }

func (c *counts) lostTotal() int64 { return sum(c.lost) }

// tally holds counts per phase and request kind. It is safe for
// concurrent use.
type tally struct {
	mu     sync.Mutex
	start  time.Time
	by     map[[2]string]*counts // {phase, kind}
	phases []string              // in the order they began
}

func newTally() *tally { return &tally{start: time.Now(), by: map[[2]string]*counts{}} }

func (t *tally) get(phase, kind string) *counts {
	k := [2]string{phase, kind}
	c := t.by[k]
	if c == nil {
		c = newCounts()
		t.by[k] = c
		seen := false
		for _, p := range t.phases {
			seen = seen || p == phase
		}
		if !seen {
			t.phases = append(t.phases, phase)
		}
	}
	return c
}

func (t *tally) record(phase string, k *reqKind, o outcome, started time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.get(phase, k.name)
	c.sent++
	key := k.proto + " " + o.status
	switch o.class {
	case answered:
		c.answered[key]++
		if o.status != "200" && o.status != "OK" {
			c.reasons[key+": "+o.reason]++
		}
		if len(k.expect) > 0 && !contains(k.expect, o.status) {
			c.unexpected[k.name+" "+key]++
		}
		if o.bad != "" {
			c.bad[k.proto+" "+o.bad]++
		}
		if o.revision != "" {
			c.revisions[o.revision]++
		}
	case notSent:
		c.notSent[k.proto+" "+o.reason]++
	case lost:
		c.lost[k.proto+" "+o.reason]++
		if len(c.lostSamples) < 10 {
			c.lostSamples = append(c.lostSamples, fmt.Sprintf("%s started at +%s (phase %q): %s", k.name, started.Sub(t.start).Round(time.Millisecond), phase, o.reason))
		}
	}
}

func (t *tally) skip(phase string, k *reqKind) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(phase, k.name).skipped++
}

// sum returns the counts of the phases and kinds keep accepts (nil: all).
func (t *tally) sum(keep func(phase, kind string) bool) *counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := newCounts()
	for k, c := range t.by {
		if keep == nil || keep(k[0], k[1]) {
			out.add(c)
		}
	}
	return out
}

// phase returns the counts of one phase, all kinds.
func (t *tally) phase(name string) *counts {
	return t.sum(func(p, _ string) bool { return p == name })
}

// kind returns the counts of one kind, all phases.
func (t *tally) kind(name string) *counts {
	return t.sum(func(_, k string) bool { return k == name })
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
