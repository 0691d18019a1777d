package batcher

import "time"

// serviceModel learns how long the runtime takes to answer a batch of n
// rows, as a + b*n fitted by least squares over the batches observed, each
// observation weighing serviceDecay times the one after it, so the fit
// follows a runtime that changes (a replica warming up, a busier GPU).
//
// The zero value knows nothing and estimates zero. Until two different
// batch sizes have been seen it cannot tell a from b and assumes the worse
// for a deadline: the mean time, scaled up in proportion for larger batches.
// The fit is clamped so that neither a nor b is negative. It is not safe
// for concurrent use; the batcher holds its lock.
type serviceModel struct {
	w, sx, sy, sxx, sxy float64
}

// serviceDecay is the weight of the past at each observation: the last 10
// observations carry about two thirds of the weight.
const serviceDecay = 0.9

func (m *serviceModel) observe(n int64, d time.Duration) {
	x, y := float64(n), d.Seconds()
	m.w = m.w*serviceDecay + 1
	m.sx = m.sx*serviceDecay + x
	m.sy = m.sy*serviceDecay + y
	m.sxx = m.sxx*serviceDecay + x*x
	m.sxy = m.sxy*serviceDecay + x*y
}

// known reports whether a batch has been observed: until then estimate
// returns zero, which means "unknown", not "instant".
func (m *serviceModel) known() bool { return m.w > 0 }

// estimate returns the expected service time of a batch of n rows.
func (m *serviceModel) estimate(n int64) time.Duration {
	if m.w == 0 {
		return 0
	}
	x := float64(n)
	a, b, ok := m.fit()
	if !ok {
		// One batch size seen: no slope to fit.
		y, mx := m.sy/m.w, m.sx/m.w
		if x > mx && mx > 0 {
			y = y * x / mx
		}
		return seconds(y)
	}
	return seconds(a + b*x)
}

// fixed returns the part of a batch's service time that does not grow
// with its size, the a of a + b·n: what a batch of one costs beyond its
// row, and what merging saves per batch. Until two batch sizes have been
// seen it cannot be told from the rest, and the mean time is returned
// whole, which would have the hold rule overrate waiting rather than
// break up batches of one steady size. It returns zero before any batch
// has been seen.
func (m *serviceModel) fixed() time.Duration {
	if m.w == 0 {
		return 0
	}
	a, _, ok := m.fit()
	if !ok {
		return seconds(m.sy / m.w)
	}
	return seconds(a)
}

// fit returns a and b in seconds, or false while the batch sizes seen do
// not vary enough to tell them apart. m.w is not zero.
func (m *serviceModel) fit() (a, b float64, ok bool) {
	mx, my := m.sx/m.w, m.sy/m.w
	vxx := m.sxx/m.w - mx*mx
	if vxx <= 1e-9*(1+mx*mx) {
		return 0, 0, false
	}
	b = max((m.sxy/m.w-mx*my)/vxx, 0)
	a = max(my-b*mx, 0)
	return a, b, true
}

func seconds(y float64) time.Duration { return time.Duration(y * float64(time.Second)) }
