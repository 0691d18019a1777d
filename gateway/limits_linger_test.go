package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestRESTRefusalReadWhileBodyIsSent: a request refused under
// MaxInFlightBytes while its client is still sending a large body gets
// its 503, not a reset. The gateway answers from the Content-Length with
// the body unread; Go's http.Client, which keeps writing the body until
// the connection fails, returns the failed write instead of the answer
// unless the gateway discards the body's rest before it closes.
func TestRESTRefusalReadWhileBodyIsSent(t *testing.T) {
	const limit = 32 << 20
	rt := newFakeRuntime(t, "a")
	s := serve(t, Options{
		Routes:           []Route{{Model: "m", Pool: readyPool(t, "m", rt.client(t))}},
		MaxBodyBytes:     limit,
		MaxInFlightBytes: limit,
		InFlightWait:     10 * time.Millisecond,
	}, nil)
	// A request that declares a body of the whole bound and sends only its
	// start (what fasthttp reads with the headers) holds all the room
	// while the gateway waits for the rest.
	holder := dial(t, s.rest)
	fmt.Fprintf(holder, "POST /v2/models/m/infer HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		limit, bytes.Repeat([]byte(" "), 64<<10))
	eventually(t, "the first request holds the room", func() bool {
		return metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes") == limit
	})

	// Larger than the socket buffers of both ends: the client is still
	// writing it when the answer comes.
	body := bytes.Repeat([]byte(" "), 24<<20)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(hc.CloseIdleConnections)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.rest+"/v2/models/m/infer", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("request %d: %v; want the 503 answer", i, err)
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil {
			t.Fatalf("request %d: reading the answer: %v", i, err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !resp.Close {
			t.Errorf("request %d: %s, Retry-After %q, close %v (%s); want 503 with Retry-After and Connection: close",
				i, resp.Status, resp.Header.Get("Retry-After"), resp.Close, answer)
		}
	}
	if got := metricValue(t, s.reg, "infergate_gateway_in_flight_refused_total", "protocol", "rest"); got != 3 {
		t.Errorf("refusals counted = %v, want 3", got)
	}
}
