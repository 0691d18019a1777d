package runtimes

// Panic routing, after Envoy's panic threshold: the breaker and ejection
// keep calls off a sick replica so that the healthy ones take them. When no
// replica is healthy, they would only turn every call into an unavailable
// error while the runtimes may still answer: a model with one replica whose
// breaker opened would refuse even the calls the runtime rejects itself (a
// malformed request) for the whole open timeout. So when every replica that
// is ready and not draining has its breaker open or half-open, or is
// ejected, the pool is in panic and chooses among those replicas as if they
// were healthy (power of two choices, or the ring for DoKey), and the
// runtime's own answers, errors included, go back to the caller.
//
// Panic leaves the replicas' health to the mechanisms that judge it: a
// call the breaker would refuse goes without the breaker's first step, and
// its outcome says nothing to the open breaker (as a call from before it
// opened), which still half-opens after its timeout and closes or opens
// again on its probes' outcomes alone; a call the breaker admits (a
// half-open probe) is its probe as usual. Readiness is never overridden: a
// replica not ready, or draining, takes no call in panic either, and a pool
// with none ready answers unavailable.
//
// The decision is taken per choice, from the replicas' state at that
// moment, so the pool leaves panic as soon as one replica is healthy again.
// A call that finds no healthy replica only because it already tried them
// (a retry) is not in panic. PoolStats.PanicRouted counts the calls sent in
// panic; the pool logs when it enters and leaves panic.

// healthy reports whether r takes calls by the ordinary rules and its
// breaker is closed: a pool with one such replica is not in panic.
func (p *Pool) healthy(r *Replica) bool {
	return usable(r) && (r.ejectedUntil.Load() == 0 || !p.ejectedNow(r)) &&
		(r.brk == nil || r.brk.state.Load() == stateClosed)
}

// panicking reports whether rs has a usable replica and no healthy one.
func (p *Pool) panicking(rs []*Replica) bool {
	some := false
	for _, r := range rs {
		if p.healthy(r) {
			return false
		}
		some = some || usable(r)
	}
	return some
}

// takePanic is take's choice in panic: a usable replica not in t, with the
// breaker's first step when the breaker admits the call, else without it.
func (p *Pool) takePanic(rs []*Replica, t *tried, w ringWalk) (*Replica, func(error)) {
	for range len(rs) {
		var i int
		if w.ring != nil {
			i = p.pickKey(rs, w, t, true)
		} else {
			i = p.pick(rs, t, true)
		}
		if i < 0 {
			return nil, nil
		}
		t.add(i)
		r := rs[i]
		r.inflight.Add(1)
		r.calls.Add(1)
		if r.draining.Load() {
			r.done()
			continue
		}
		p.stats.panicRouted.Add(1)
		if !p.inPanic.Load() && p.inPanic.CompareAndSwap(false, true) {
			p.opts.Logger.Warn("no healthy replica: sending calls to replicas whose breaker is open or that are ejected",
				"model", p.opts.Model)
		}
		if r.brk != nil {
			if done, ok := r.brk.before(); ok {
				return r, done
			}
		}
		return r, nil
	}
	return nil, nil
}

// leftPanic notes a call chosen by the ordinary rules: the pool is out of
// panic if it was in it.
func (p *Pool) leftPanic() {
	if p.inPanic.Load() && p.inPanic.CompareAndSwap(true, false) {
		p.opts.Logger.Info("a replica is healthy again: panic routing ended", "model", p.opts.Model)
	}
}
