package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/internal/tlsconf/tlstest"
)

// tlsRuntime serves the test service with grpc-go over TLS with a
// certificate of a new CA, whose pool it returns. With alpn set, the
// server's ALPN protocols are those (h2 not added, as grpc-go's
// credentials would).
func tlsRuntime(t *testing.T, alpn bool, nextProtos ...string) (string, *x509.CertPool) {
	t.Helper()
	ca, err := tlstest.NewCA("runtime CA")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Server()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}, NextProtos: nextProtos}
	ln := listen(t)
	if alpn {
		serveGRPC(t, tls.NewListener(ln, cfg), newTestService())
	} else {
		serveGRPC(t, ln, newTestService(), grpc.Creds(credentials.NewTLS(cfg)))
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return ln.Addr().String(), pool
}

// TestTLS: with TLSConfig, calls go over TLS (ALPN h2, the certificate
// verified against the address's host); a certificate the config does not
// trust, a peer that speaks no TLS and a peer that does not agree to h2
// are UNAVAILABLE, saying so and naming the address.
func TestTLS(t *testing.T) {
	addr, pool := tlsRuntime(t, false)
	c := newClient(t, addr, Options{TLSConfig: &tls.Config{RootCAs: pool}})
	resp, err := infer(testCtx(t), t, c, modelEcho, "over-tls", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Id != "over-tls" {
		t.Errorf("answer %v, want the echo", resp)
	}

	_, otherPool := tlsRuntime(t, false)
	plain, _ := startGRPC(t, newTestService())
	noALPN, noALPNPool := tlsRuntime(t, true)
	http1, http1Pool := tlsRuntime(t, true, "http/1.1")
	tests := []struct {
		name string
		addr string
		cfg  *tls.Config
		want string
	}{
		{"unknown authority", addr, &tls.Config{RootCAs: otherPool}, "certificate signed by unknown authority"},
		{"wrong name", addr, &tls.Config{RootCAs: pool, ServerName: "runtime.example"}, "runtime.example"},
		{"no TLS", plain, &tls.Config{RootCAs: pool}, "TLS handshake"},
		{"no ALPN", noALPN, &tls.Config{RootCAs: noALPNPool}, "did not agree to HTTP/2 (ALPN h2)"},
		{"HTTP/1.1 only", http1, &tls.Config{RootCAs: http1Pool}, "no application protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.addr, Options{TLSConfig: tc.cfg})
			_, err := infer(testCtx(t), t, c, modelEcho, "x", nil)
			wantCode(t, err, codes.Unavailable)
			msg := status.Convert(err).Message()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.addr) || !strings.Contains(msg, "TLS handshake") {
				t.Errorf("message %q: want the TLS handshake, %q and the address", msg, tc.want)
			}
		})
	}
}

// BenchmarkInvokeTLS: one call at a time and 16 at once, to an in-process
// grpc-go runtime, over cleartext and over TLS.
func BenchmarkInvokeTLS(b *testing.B) {
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
	plain, tlsLn := listen(b), listen(b)
	serveGRPC(b, plain, newIrisService())
	serveGRPC(b, tlsLn, newIrisService(), grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{kp}})))
	req := irisRequest(b)
	for _, tc := range []struct {
		name string
		addr string
		cfg  *tls.Config
	}{{"cleartext", plain.Addr().String(), nil}, {"tls", tlsLn.Addr().String(), &tls.Config{RootCAs: pool}}} {
		for _, par := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/conc=%d", tc.name, par), func(b *testing.B) {
				c := newClient(b, tc.addr, Options{TLSConfig: tc.cfg})
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if _, err := c.Invoke(ctx, inferMethod, req, nil); err != nil { // connect
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetParallelism(max(1, par/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := c.Invoke(ctx, inferMethod, req, nil); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
