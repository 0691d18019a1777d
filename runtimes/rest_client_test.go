package runtimes

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRESTClientLetsBurstConnectionsGo opens connections with a burst of
// concurrent calls, then calls one at a time more often than the idle
// timeout: the connections the burst opened close, instead of being kept
// alive for ever by calls taking each in turn (first in, first out), which
// is how the supervisor's probes held ~120 connections per replica.
func TestRESTClientLetsBurstConnectionsGo(t *testing.T) {
	var open atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var burst sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/health/ready" && r.URL.Query().Get("burst") != "" {
				burst.Done()
				<-release
			}
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	const idle = 200 * time.Millisecond
	c, err := NewRESTClient(RESTOptions{Addr: ln.Addr().String(), MaxIdleConnDuration: idle})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 8
	burst.Add(n)
	var calls sync.WaitGroup
	for range n {
		calls.Go(func() { _, _, _ = c.hc.Get(nil, "http://"+ln.Addr().String()+"/v2/health/ready?burst=1") })
	}
	burst.Wait() // n connections open, each with a call in flight
	close(release)
	calls.Wait()
	if got := open.Load(); got != n {
		t.Fatalf("%d connections after the burst, want %d", got, n)
	}
	// Calls one at a time, several per idle period, until the burst's
	// connections have closed, for at most 30 periods.
	for end := time.Now().Add(30 * idle); open.Load() > 2 && time.Now().Before(end); time.Sleep(idle / 20) {
		if _, err := c.ServerReady(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := open.Load(); got > 2 {
		t.Errorf("%d connections still open while calls went one at a time, want the burst's to have closed", got)
	}
}
