//go:build long

package long

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// flood is a set of connections held open to one port, doing nothing
// (or having sent the start of a request and nothing more).
type flood struct {
	conns   []net.Conn
	failed  map[string]int
	elapsed time.Duration
}

// openFlood opens n connections to addr, 64 at a time; every other one
// writes partial and then nothing.
func openFlood(addr string, n int, partial []byte) *flood {
	f := &flood{failed: map[string]int{}}
	start := time.Now()
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				if err == nil && i%2 == 1 && len(partial) > 0 {
					_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
					_, err = c.Write(partial)
					if err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					f.failed[transportReason(err)]++
				} else {
					f.conns = append(f.conns, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	f.elapsed = time.Since(start)
	return f
}

// closedByPeer counts the flood's connections the server has closed.
func (f *flood) closedByPeer() int {
	n := 0
	buf := make([]byte, 4096)
	for _, c := range f.conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // an answer (an error page): read on until EOF or the deadline
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				n++
			}
			break
		}
	}
	return n
}

func (f *flood) close() {
	for _, c := range f.conns {
		c.Close()
	}
}

// checkClients has a client that arrives now (new connections) use each
// port once: an infer over REST and gRPC, GET /metrics on the admin
// port. It returns a failure per port that did not serve it within 10s.
func checkClients(s *server) []string {
	var fails []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.rest+"/v2/models/iris/infer", bytes.NewReader(irisBody))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := hc.Do(req); err != nil {
		fails = append(fails, fmt.Sprintf("REST infer: %v", err))
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			fails = append(fails, fmt.Sprintf("REST infer: status %d", resp.StatusCode))
		}
	}
	restTook := time.Since(start)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	start = time.Now()
	if conn, err := grpc.NewClient("passthrough:///"+s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		fails = append(fails, fmt.Sprintf("gRPC: %v", err))
	} else {
		if _, err := pb.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx2, irisGRPC("iris")); err != nil {
			fails = append(fails, fmt.Sprintf("gRPC infer: %v", err))
		}
		conn.Close()
	}
	grpcTook := time.Since(start)
	ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel3()
	start = time.Now()
	req, _ = http.NewRequestWithContext(ctx3, http.MethodGet, "http://"+s.admin+"/metrics", nil)
	if resp, err := hc.Do(req); err != nil {
		fails = append(fails, fmt.Sprintf("admin GET /metrics: %v", err))
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			fails = append(fails, fmt.Sprintf("admin GET /metrics: status %d", resp.StatusCode))
		}
	}
	if len(fails) == 0 {
		s.t.Logf("a new client was served on every port: REST %s, gRPC %s, admin %s", restTook.Round(time.Millisecond), grpcTook.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	return fails
}

// testConnFlood holds LONG_FLOOD_CONNS connections open to each port in
// turn (REST, gRPC, admin), half of them idle and half having sent the
// start of a request, then to all three at once, while a light load runs
// on connections opened before. Under each flood a client arriving then
// must be served on every port within 10s, the load must get 200s, and
// once the flood is closed the gateway's open files must come back to
// within 64 of what they were.
func testConnFlood(t *testing.T) {
	r := newReport(t)
	s := startServer(t, irisModel(t, "iris", "iris", 1, 1, 10, ""))
	if !s.waitReady(t, "iris", 1, time.Minute) {
		return
	}
	l := startLoad(t, s, loadOptions{rate: 100, mix: irisMix("iris")})
	step(r, s, l, "before", 3*time.Second)
	since := time.Now()
	base := s.sample(since)
	r.notef("before: RSS %.0f MB, %d open files, %d goroutines", base.rssMB, base.fds, base.goroutines)
	ports := []struct {
		name, addr string
		partial    []byte
	}{
		{"REST", s.rest, []byte("POST /v2/models/iris/infer HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100\r\n")},
		{"gRPC", s.grpc, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")},
		{"admin", s.admin, []byte("GET /metrics HTTP/1.1\r\nHost: gateway\r\n")},
	}
	hold := func(name string, floods []*flood) {
		l.setPhase("flood " + name)
		peak := base
		for i := range 10 {
			if i == 2 {
				if fails := checkClients(s); len(fails) > 0 {
					r.errorf("flood %s: a new client was not served: %s", name, strings.Join(fails, "; "))
				}
			}
			if !s.pause(time.Second) {
				r.errorf("infergate serve exited (%v) under the flood %s", s.waitErr, name)
				return
			}
			if p := s.sampleProc(since); p.fds > peak.fds {
				peak = p
			}
		}
		peak.goroutines = s.goroutines()
		dialed, closed := 0, 0
		failed := map[string]int{}
		for _, f := range floods {
			dialed += len(f.conns)
			closed += f.closedByPeer()
			for k, v := range f.failed {
				failed[k] += v
			}
			f.close()
		}
		r.notef("flood %s: %d connections held 10s (%d could not be opened: %s), %d of them closed by the gateway meanwhile; gateway at its peak: RSS %.0f MB, %d open files; goroutines at the end: %d (-1: /metrics did not answer within 2s)",
			name, dialed, sumInts(failed), formatInts(failed), closed, peak.rssMB, peak.fds, peak.goroutines)
		l.setPhase("after flood " + name)
		deadline := time.Now().Add(30 * time.Second)
		for {
			p := s.sampleProc(since)
			if p.fds >= 0 && p.fds <= base.fds+64 {
				r.notef("after flood %s: back to %d open files in %s", name, p.fds, (30*time.Second - time.Until(deadline)).Round(time.Second))
				break
			}
			if time.Now().After(deadline) || s.hasExited() {
				r.errorf("after flood %s: the gateway still has %d open files 30s after the flood closed (%d before it)", name, p.fds, base.fds)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, p := range ports {
		hold(p.name, []*flood{openFlood(p.addr, floodConns, p.partial)})
	}
	var all []*flood
	for _, p := range ports {
		all = append(all, openFlood(p.addr, floodConns, p.partial))
	}
	hold("all ports at once", all)
	tl := l.finish()
	c := tl.sum(nil)
	r.counts(c)
	r.noBad("the load", c)
	r.alive(s)
	r.phases(tl)
	r.allOK("the load running on connections opened before the floods", c)
}

func sumInts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// rssSampler records the largest RSS of a process, every 100ms, until
// stopped.
type rssSampler struct {
	peak atomic.Int64 // KB
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	rs := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(rs.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := int64(rssMB(pid) * 1024); v > rs.peak.Load() {
				rs.peak.Store(v)
			}
			select {
			case <-rs.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return rs
}

// finish stops the sampler and returns the peak in MB.
func (rs *rssSampler) finish() float64 {
	close(rs.stop)
	<-rs.done
	return float64(rs.peak.Load()) / 1024
}

// burst sends perWorker requests of kind from each of workers at once
// into phase of tl.
func burst(cl *clients, tl *tally, phase string, k *reqKind, workers, perWorker int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				start := time.Now()
				tl.record(phase, k, cl.do(k), start)
			}
		})
	}
	wg.Wait()
}

// memCap is the cap on request bytes held at once that testMemFlood
// gives the gateway (-max-inflight-bytes): a quarter of what the flood
// offers, so that the cap is what must keep the gateway's memory within
// LONG_MEM_BOUND_MB (default 768 MB: twice the cap for the Go heap's
// headroom, plus 256 MB).
const memCap = 256 << 20

// testMemFlood sends large bodies at once: 64 REST bodies of 16 MiB in
// flight (1 GiB), then 32 gRPC messages of 16 MiB, then holds 128 REST
// requests that declare 48 MiB bodies and send 1 MiB of them. The
// gateway's RSS is sampled every 100ms and may grow by at most
// LONG_MEM_BOUND_MB over its level before: the gateway must bound the
// memory that clients' bodies can make it hold, below what this flood
// offers. Every flood request must be answered (the runtime refuses
// these bodies: 400; or 413/429/503 from the gateway) and a new client
// must be served afterwards.
func testMemFlood(t *testing.T) {
	r := newReport(t)
	s := startServer(t, irisModel(t, "iris", "iris", 1, 1, 10, ""), "-max-inflight-bytes", fmt.Sprint(memCap))
	if !s.waitReady(t, "iris", 1, time.Minute) {
		return
	}
	s.pause(2 * time.Second)
	base := rssMB(s.pid)
	const body = 16 << 20
	// A JSON body the runtime turns down quickly (no inputs) once read:
	// the gateway forwards REST bodies as they are.
	big := make([]byte, body)
	copy(big, `{"id":"flood","inputs":[`)
	for i := len(`{"id":"flood","inputs":[`); i < body-2; i++ {
		big[i] = ' '
	}
	copy(big[body-2:], "]}")
	restKind := &reqKind{name: "16 MiB REST body", proto: protoREST, path: "/v2/models/iris/infer", body: big}
	grpcKind := &reqKind{name: "16 MiB gRPC message", proto: protoGRPC, grpc: &pb.ModelInferRequest{
		ModelName:        "iris",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}}},
		RawInputContents: [][]byte{big},
	}}
	cl := newClients(t, s.rest, s.grpc, 64, 0, 60*time.Second)
	tl := newTally()
	peak := base
	var figures []string
	phase := func(name string, run func() string) {
		from := rssMB(s.pid)
		rs := sampleRSS(s.pid)
		what := run()
		p := rs.finish()
		peak = max(peak, p)
		figures = append(figures, fmt.Sprintf("%s: %.0f MB at the start, peak %.0f MB%s", name, from, p, what))
	}
	phase("64 REST bodies of 16 MiB at once, twice", func() string {
		burst(cl, tl, "REST bodies", restKind, 64, 2)
		return ""
	})
	phase("32 gRPC messages of 16 MiB at once, twice", func() string {
		burst(cl, tl, "gRPC messages", grpcKind, 32, 2)
		return ""
	})
	phase("slow bodies", func() string {
		return "; " + slowBodies(s.rest, 128, 48<<20, 1<<20, 10*time.Second)
	})
	cl.close()
	if fails := checkClients(s); len(fails) > 0 {
		r.errorf("after the memory flood a new client was not served: %s", strings.Join(fails, "; "))
	}
	c := tl.sum(nil)
	r.counts(c)
	r.alive(s)
	r.phases(tl)
	for k, n := range c.bad {
		if !strings.Contains(k, "200 with") {
			r.errorf("%d malformed error answers: %s", n, k)
		}
	}
	if n := sum(c.notSent); n > 0 {
		r.errorf("%d flood requests got no answer, their connection broke while the body was being sent (%s): a request turned away must get its answer (413, 429, 503) before its connection closes", n, formatMap(c.notSent))
	}
	r.notef("gateway RSS %.0f MB before the flood, %.0f MB after; %s", base, rssMB(s.pid), strings.Join(figures, "; "))
	if grew := peak - base; grew > float64(memBoundMB) {
		r.errorf("the gateway's RSS grew by %.0f MB under the flood (%.0f to %.0f MB), more than the bound of %d MB (LONG_MEM_BOUND_MB)", grew, base, peak, memBoundMB)
	}
}

// slowBodies opens n connections that each send a request declaring a
// body of declared bytes, send sent bytes of it, hold for hold and close.
// It says how many connections got that far and what the gateway did.
func slowBodies(addr string, n, declared, sent int, hold time.Duration) string {
	chunk := bytes.Repeat([]byte(" "), sent)
	head := fmt.Sprintf("POST /v2/models/iris/infer HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", declared)
	var conns []net.Conn
	failed := map[string]int{}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err == nil {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err = c.Write([]byte(head)); err == nil {
				_, err = c.Write(chunk)
			}
		}
		if err != nil {
			failed[transportReason(err)]++
			if c != nil {
				c.Close()
			}
			continue
		}
		conns = append(conns, c)
	}
	time.Sleep(hold)
	f := &flood{conns: conns}
	closed := f.closedByPeer()
	f.close()
	return fmt.Sprintf("%d connections declared %d MiB bodies and sent %d MiB of each, held %s (%d failed: %s); the gateway closed %d of them meanwhile",
		len(conns), declared>>20, sent>>20, hold, sumInts(failed), formatInts(failed), closed)
}
