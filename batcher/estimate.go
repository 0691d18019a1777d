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

// estimate returns the expected service time of a batch of n rows.
func (m *serviceModel) estimate(n int64) time.Duration {
	if m.w == 0 {
		return 0
	}
	x := float64(n)
	mx, my := m.sx/m.w, m.sy/m.w
	vxx := m.sxx/m.w - mx*mx
	var y float64
	if vxx <= 1e-9*(1+mx*mx) {
		// One batch size seen: no slope to fit.
		y = my
		if x > mx && mx > 0 {
			y = my * x / mx
		}
	} else {
		b := (m.sxy/m.w - mx*my) / vxx
		b = max(b, 0)
		a := max(my-b*mx, 0)
		y = a + b*x
	}
	return time.Duration(y * float64(time.Second))
}
