package runtimes

import "time"

// Outlier ejection, after Envoy's outlier detection: a replica that fails
// EjectFailures calls in a row (5xx-class errors and connect failures, as
// classify counts them) is taken out of the choice for BaseEjectionTime
// times the number of times it has been ejected, capped at MaxEjectionTime.
// The ejection ends by itself: the choice reads the clock and lets the
// replica back once its time is up, with no goroutine. Each
// BaseEjectionTime a replica then spends without being ejected takes one
// off its count, so a replica that recovered for good starts again from the
// base time.
//
// At most MaxEjectionPercent of the pool's replicas are ejected at once,
// and never the last replica that could take a call: ejection protects the
// others from a sick replica, and with no other left it would only turn
// slow answers into none.

// ejected reports whether r is ejected at now (UnixNano).
func (r *Replica) ejected(now int64) bool {
	until := r.ejectedUntil.Load()
	return until != 0 && now < until
}

// ejectedNow is the choice's look at r's ejection: it reads the clock only
// while r has an ejection on record, and clears the record once its time
// is up, so that a replica back in the pool costs no clock read.
func (p *Pool) ejectedNow(r *Replica) bool {
	until := r.ejectedUntil.Load()
	if until == 0 {
		return false
	}
	if p.now().UnixNano() < until {
		return true
	}
	r.ejectedUntil.CompareAndSwap(until, 0)
	return false
}

// noteFailure counts a 5xx-class failure on r and ejects r when the run of
// failures reaches the threshold and the pool can spare it.
func (p *Pool) noteFailure(rs []*Replica, r *Replica) {
	n := r.ejectRun.Add(1)
	if p.opts.EjectFailures <= 0 || n < int32(p.opts.EjectFailures) {
		return
	}
	p.tryEject(rs, r)
}

// tryEject ejects r if the pool allows it now. Decisions are serialized so
// that two replicas failing together cannot both take the last share.
func (p *Pool) tryEject(rs []*Replica, r *Replica) {
	p.ejectMu.Lock()
	defer p.ejectMu.Unlock()
	now := p.now().UnixNano()
	if r.ejected(now) || r.draining.Load() {
		return
	}
	ejected, available := 0, 0
	for _, x := range rs {
		switch {
		case x.ejected(now):
			ejected++
		case x != r && x.ready.Load() && !x.draining.Load() && (x.brk == nil || !x.brk.open()):
			available++
		}
	}
	if available == 0 || (ejected+1)*100 > p.opts.MaxEjectionPercent*len(rs) {
		return
	}
	base := int64(p.opts.BaseEjectionTime)
	if r.lastEjectEnd != 0 && now > r.lastEjectEnd {
		// One off the count per base time spent back in the pool.
		r.ejections -= int((now - r.lastEjectEnd) / base)
		if r.ejections < 0 {
			r.ejections = 0
		}
	}
	r.ejections++
	d := min(time.Duration(r.ejections)*p.opts.BaseEjectionTime, p.opts.MaxEjectionTime)
	r.lastEjectEnd = now + int64(d)
	r.ejectedUntil.Store(r.lastEjectEnd)
	r.ejectRun.Store(0)
	p.stats.ejections.Add(1)
	p.opts.Logger.Warn("replica ejected", "model", p.opts.Model, "replica", addrOf(r.Client),
		"for", d, "times", r.ejections)
}
