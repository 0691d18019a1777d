package gateway

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// BenchmarkRESTFrontDoor measures the whole REST front door, fasthttp's
// server included, on keep-alive connections over an in-memory listener.
func BenchmarkRESTFrontDoor(b *testing.B) {
	rt := newFakeRuntime(b, "a")
	g := newTestGateway(b, Route{Model: "m", Pool: readyPool(b, "m", rt.client(b))})
	ln := fasthttputil.NewInmemoryListener()
	srv := g.restServer()
	go srv.Serve(ln) //nolint:errcheck // ends when the listener closes
	b.Cleanup(func() { ln.Close() })
	c := &fasthttp.HostClient{Addr: "gw", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 64}
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://gw/v2/models/m/infer")
			req.SetBody(body)
			if err := c.DoTimeout(req, resp, 10*time.Second); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("status %d: %v", resp.StatusCode(), err)
			}
		}
	})
}
