package runtimes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/infergate/infergate/internal/tlsconf/tlstest"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// runtimeTLS is a runtime's TLS certificate for loopback, the pool of the
// CA that signed it, and a client certificate of that CA.
type runtimeTLS struct {
	server, client tls.Certificate
	pool           *x509.CertPool
}

func newRuntimeTLS(t *testing.T) *runtimeTLS {
	t.Helper()
	ca, err := tlstest.NewCA("runtime CA")
	if err != nil {
		t.Fatal(err)
	}
	keyPair := func(p tlstest.Pair, err error) tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		kp, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	r := &runtimeTLS{server: keyPair(ca.Server()), client: keyPair(ca.Client("gateway")), pool: x509.NewCertPool()}
	r.pool.AddCert(ca.Cert)
	return r
}

// serverConfig serves r's certificate with ALPN protos, asking for a
// client certificate of r's CA when mtls is set.
func (r *runtimeTLS) serverConfig(mtls bool, protos ...string) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{r.server}, NextProtos: protos, MinVersion: tls.VersionTLS12}
	if mtls {
		cfg.ClientCAs, cfg.ClientAuth = r.pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}

// tlsRESTRuntime serves okRuntime's answers over TLS with cfg (cleartext
// when nil), logging nothing; the infer answer carries the connection's
// ALPN protocol in X-ALPN.
func tlsRESTRuntime(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Logger: discardLogger{}, Handler: func(ctx *fasthttp.RequestCtx) {
		if cs := ctx.TLSConnectionState(); cs != nil {
			ctx.Response.Header.Set("X-ALPN", cs.NegotiatedProtocol)
		}
		switch {
		case strings.HasSuffix(string(ctx.Path()), "/ready"):
		case strings.HasSuffix(string(ctx.Path()), "/infer"):
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"model_name":"m","id":"x","outputs":[{"name":"y","datatype":"INT32","shape":[2],"data":[7,8]}]}`)
		default:
			ctx.SetStatusCode(404)
		}
	}}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

func restClient(t *testing.T, opts RESTOptions) *RESTClient {
	t.Helper()
	c, err := NewRESTClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testCtx bounds a call of these tests.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRESTClientTLS: with TLS, a runtime at an https:// endpoint is
// reached over TLS (ALPN http/1.1, its certificate verified against the
// address's host with the configured CA) by every call: decoded calls,
// probes and the pass-through, pipelined or not.
func TestRESTClientTLS(t *testing.T) {
	rt := newRuntimeTLS(t)
	addr := tlsRESTRuntime(t, rt.serverConfig(false, "h2", "http/1.1"))
	for _, pipeline := range []bool{false, true} {
		c := restClient(t, RESTOptions{Addr: addr, TLS: true, TLSConfig: &tls.Config{RootCAs: rt.pool}, Pipeline: pipeline})
		resp, err := c.Infer(testCtx(t), &oip.InferRequest{ModelName: "m"})
		if err != nil {
			t.Fatalf("pipeline %v: %v", pipeline, err)
		}
		if resp.ID != "x" {
			t.Errorf("pipeline %v: answer %+v", pipeline, resp)
		}
		if ok, err := c.ModelReady(testCtx(t), "m", ""); !ok || err != nil {
			t.Errorf("pipeline %v: ModelReady = %v, %v", pipeline, ok, err)
		}
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/v2/models/m/infer")
		if err := c.Forward(req, res, time.Now().Add(10*time.Second)); err != nil {
			t.Fatalf("pipeline %v: Forward: %v", pipeline, err)
		}
		if alpn := string(res.Header.Peek("X-ALPN")); alpn != "http/1.1" {
			t.Errorf("pipeline %v: ALPN %q, want http/1.1", pipeline, alpn)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(res)
	}
}

// TestRESTClientTLSErrors: a TLS handshake that fails is an unavailable,
// unreachable error (the call was not sent) that says what failed and
// names the replica, never its address; Detail names the address.
func TestRESTClientTLSErrors(t *testing.T) {
	rt := newRuntimeTLS(t)
	addr := tlsRESTRuntime(t, rt.serverConfig(false))
	mtlsAddr := tlsRESTRuntime(t, rt.serverConfig(true))
	plainAddr := tlsRESTRuntime(t, nil)
	other := newRuntimeTLS(t)
	const name = `model "m" endpoint 0`
	tests := []struct {
		name    string
		opts    RESTOptions
		want    string // in the message
		notSent bool
	}{
		{
			name: "CA that did not sign the runtime's certificate",
			opts: RESTOptions{Addr: addr, TLS: true, TLSConfig: &tls.Config{RootCAs: other.pool}},
			want: "TLS handshake failed: the runtime's certificate is signed by an unknown authority", notSent: true,
		},
		{
			name: "no TLSConfig: the system's roots",
			opts: RESTOptions{Addr: addr, TLS: true},
			want: "TLS handshake failed: the runtime's certificate is signed by an unknown authority", notSent: true,
		},
		{
			name: "certificate for another name",
			opts: RESTOptions{Addr: addr, TLS: true, TLSConfig: &tls.Config{RootCAs: rt.pool, ServerName: "runtime.example"}},
			want: "TLS handshake failed: the runtime's certificate is not valid for its address", notSent: true,
		},
		{
			name: "https to a cleartext runtime",
			opts: RESTOptions{Addr: plainAddr, TLS: true, TLSConfig: &tls.Config{RootCAs: rt.pool}},
			want: "TLS handshake failed: the runtime does not speak TLS", notSent: true,
		},
		{
			name: "http to a TLS runtime",
			opts: RESTOptions{Addr: addr},
			want: "failed: connection closed before an answer",
		},
		{
			name: "TLSConfig without TLS is cleartext",
			opts: RESTOptions{Addr: addr, TLSConfig: &tls.Config{RootCAs: rt.pool}},
			want: "failed: connection closed before an answer",
		},
		{
			// In TLS 1.3 the runtime refuses the missing certificate
			// after the client's handshake: fasthttp reports the
			// connection closed, and the call may have been sent.
			name: "runtime that wants a client certificate",
			opts: RESTOptions{Addr: mtlsAddr, TLS: true, TLSConfig: &tls.Config{RootCAs: rt.pool}},
			want: "failed: connection closed before an answer",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Name = name
			c := restClient(t, tc.opts)
			_, err := c.Infer(testCtx(t), &oip.InferRequest{ModelName: "m"})
			if err == nil {
				t.Fatal("the call succeeded")
			}
			if oip.KindOf(err) != oip.KindUnavailable {
				t.Errorf("kind %v (%v), want unavailable", oip.KindOf(err), err)
			}
			if errors.Is(err, ErrUnreachable) != tc.notSent {
				t.Errorf("unreachable %v (%v), want %v", errors.Is(err, ErrUnreachable), err, tc.notSent)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, name) || strings.Contains(msg, "127.0.0.1") {
				t.Errorf("message %q: want %q and the replica's name, no address (Detail %s)", msg, tc.want, Detail(err))
			}
			if tc.notSent && !strings.Contains(Detail(err), "TLS handshake with "+tc.opts.Addr) {
				t.Errorf("Detail %q: want the handshake's address", Detail(err))
			}
		})
	}

	// With a client certificate of the runtime's CA, the mutual-TLS
	// runtime answers.
	c := restClient(t, RESTOptions{Addr: mtlsAddr, TLS: true, TLSConfig: &tls.Config{RootCAs: rt.pool, Certificates: []tls.Certificate{rt.client}}})
	if _, err := c.Infer(testCtx(t), &oip.InferRequest{ModelName: "m"}); err != nil {
		t.Errorf("with a client certificate: %v", err)
	}
}

// metadataService adds ModelMetadata to the wire tests' runtime.
type metadataService struct{ wireService }

func (metadataService) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	return &pb.ModelMetadataResponse{Name: req.Name, Platform: "tls"}, nil
}

// tlsGRPCRuntime serves metadataService with grpc-go over TLS with cfg.
func tlsGRPCRuntime(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	pb.RegisterGRPCInferenceServiceServer(srv, metadataService{})
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func grpcClient(t *testing.T, opts GRPCOptions) *GRPCClient {
	t.Helper()
	c, err := NewGRPCClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestGRPCClientTLS: with TLS, a runtime at a grpcs:// endpoint is
// reached over TLS by both of the client's connections: ModelInferRaw's
// (the gateway's own HTTP/2 client) and the others' (grpc-go), with a
// client certificate when the runtime asks for one.
func TestGRPCClientTLS(t *testing.T) {
	rt := newRuntimeTLS(t)
	for _, mtls := range []bool{false, true} {
		addr := tlsGRPCRuntime(t, rt.serverConfig(mtls))
		c := grpcClient(t, GRPCOptions{Addr: addr, TLS: true, TLSConfig: &tls.Config{RootCAs: rt.pool, Certificates: []tls.Certificate{rt.client}}})
		resp, err := rawInfer(t, c, testCtx(t), "echo", "over-tls")
		if err != nil {
			t.Fatalf("mTLS %v: ModelInferRaw: %v", mtls, err)
		}
		if resp.Id != "over-tls" || !strings.HasPrefix(resp.ModelVersion, "infergate-grpcwire") {
			t.Errorf("mTLS %v: ModelInferRaw answered %v, want the echo through the grpcwire client", mtls, resp)
		}
		md, err := c.ModelMetadata(testCtx(t), "iris", "")
		if err != nil || md.Name != "iris" || md.Platform != "tls" {
			t.Errorf("mTLS %v: ModelMetadata = %+v, %v", mtls, md, err)
		}
		out, err := c.Infer(testCtx(t), &oip.InferRequest{ModelName: "echo", ID: "decoded"})
		if err != nil || out.ID != "decoded" {
			t.Errorf("mTLS %v: Infer = %+v, %v", mtls, out, err)
		}
	}
}

// TestGRPCClientTLSErrors: a runtime whose certificate the CA did not
// sign, or that speaks no TLS, is unreachable on both connections, with a
// message that says so and names the replica, and a Detail that names the
// address.
func TestGRPCClientTLSErrors(t *testing.T) {
	rt := newRuntimeTLS(t)
	other := newRuntimeTLS(t)
	const name = `model "m" endpoint 1`
	tests := []struct {
		name   string
		addr   string
		detail string
	}{
		{"CA that did not sign the runtime's certificate", tlsGRPCRuntime(t, rt.serverConfig(false)), "certificate signed by unknown authority"},
		{"grpcs to a cleartext runtime", startWireRuntime(t), "handshake"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := grpcClient(t, GRPCOptions{Addr: tc.addr, Name: name, TLS: true, TLSConfig: &tls.Config{RootCAs: other.pool}})
			_, rawErr := rawInfer(t, c, testCtx(t), "echo", "x")
			_, mdErr := c.ModelMetadata(testCtx(t), "iris", "")
			for call, err := range map[string]error{"ModelInferRaw": rawErr, "ModelMetadata": mdErr} {
				if !errors.Is(err, ErrUnreachable) || oip.KindOf(err) != oip.KindUnavailable {
					t.Errorf("%s: %v, want unavailable and unreachable", call, err)
					continue
				}
				msg := err.Error()
				if !strings.Contains(msg, name+" could not be reached: TLS handshake failed") || strings.Contains(msg, "127.0.0.1") {
					t.Errorf("%s: message %q: want the replica's name and the TLS handshake, no address", call, msg)
				}
				if d := Detail(err); !strings.Contains(d, tc.detail) {
					t.Errorf("%s: Detail %q: want %q", call, d, tc.detail)
				}
			}
			if d := Detail(rawErr); !strings.Contains(d, tc.addr) {
				t.Errorf("ModelInferRaw: Detail %q: want the address", d)
			}
		})
	}
}

// BenchmarkRESTForwardTLS: the REST pass-through to an in-process runtime,
// over cleartext and over TLS, one call at a time and in parallel.
func BenchmarkRESTForwardTLS(b *testing.B) {
	ca, err := tlstest.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	p, err := ca.Server()
	if err != nil {
		b.Fatal(err)
	}
	kp, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	serveBench := func(cfg *tls.Config) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &fasthttp.Server{Logger: discardLogger{}, Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"model_name":"m","outputs":[{"name":"y","datatype":"INT32","shape":[2],"data":[7,8]}]}`)
		}}
		if cfg != nil {
			ln = tls.NewListener(ln, cfg)
		}
		go srv.Serve(ln) //nolint:errcheck
		b.Cleanup(func() { srv.Shutdown() })
		return ln.Addr().String()
	}
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`)
	for _, tc := range []struct {
		name string
		opts RESTOptions
	}{
		{"cleartext", RESTOptions{Addr: serveBench(nil)}},
		{"tls", RESTOptions{Addr: serveBench(&tls.Config{Certificates: []tls.Certificate{kp}}), TLS: true, TLSConfig: &tls.Config{RootCAs: pool}}},
	} {
		c, err := NewRESTClient(tc.opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		forward := func() error {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetRequestURI("/v2/models/m/infer")
			req.SetBodyRaw(body)
			return c.Forward(req, resp, time.Now().Add(time.Minute))
		}
		b.Run(tc.name+"/seq", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := forward(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := forward(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestForwardSpeaksTheReplicasScheme: a request that reached the gateway
// over https is forwarded in cleartext to an http:// replica, and one that
// came in cleartext goes over TLS to an https:// replica: the scheme is
// the replica's, not the client's hop's.
func TestForwardSpeaksTheReplicasScheme(t *testing.T) {
	rt := newRuntimeTLS(t)
	tlsAddr := tlsRESTRuntime(t, rt.serverConfig(false, "http/1.1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(`{"id":"x","outputs":[]}`) }}
	go srv.Serve(ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { ln.Close() })
	for _, tc := range []struct {
		name, uri string
		opts      RESTOptions
	}{
		{"https in, http replica", "https://gateway.example/v2/models/m/infer", RESTOptions{Addr: ln.Addr().String()}},
		{"http in, https replica", "http://gateway.example/v2/models/m/infer", RESTOptions{Addr: tlsAddr, TLS: true, TLSConfig: &tls.Config{RootCAs: rt.pool}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := restClient(t, tc.opts)
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetRequestURI(tc.uri)
			if err := c.Forward(req, res, time.Now().Add(10*time.Second)); err != nil {
				t.Fatalf("Forward: %v", err)
			}
			if res.StatusCode() != 200 {
				t.Fatalf("status %d", res.StatusCode())
			}
		})
	}
}
