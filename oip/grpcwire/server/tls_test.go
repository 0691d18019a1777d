package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/internal/tlsconf/tlstest"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// tlsFixture is a CA with a server certificate and a client certificate.
type tlsFixture struct {
	ca     *tlstest.CA
	server tls.Certificate
	client tls.Certificate
	pool   *x509.CertPool
}

func newTLSFixture(t *testing.T) *tlsFixture {
	t.Helper()
	ca, err := tlstest.NewCA("test CA")
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
	f := &tlsFixture{ca: ca, server: keyPair(ca.Server()), client: keyPair(ca.Client("tenant-a")), pool: x509.NewCertPool()}
	f.pool.AddCert(ca.Cert)
	return f
}

// serveTLS starts a Server with opts and svc on a TLS listener with cfg,
// as the gateway wraps its listener, and returns its address.
func serveTLS(t *testing.T, opts Options, svc *inferService, cfg *tls.Config) string {
	t.Helper()
	opts.Codec = oip.Codec{}
	s := New(opts)
	s.RegisterService(serviceDesc(), svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// peerInfer answers ModelInfer with what the handler's peer says: its
// AuthInfo's type and security level, and the common name of the
// client's certificate, as model_name.
func peerInfer(ss grpc.ServerStream) error {
	in := new(oip.RawFrame)
	if err := ss.RecvMsg(in); err != nil {
		return err
	}
	p, ok := peer.FromContext(ss.Context())
	if !ok {
		return status.Error(codes.Internal, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return status.Errorf(codes.Internal, "AuthInfo %T, want credentials.TLSInfo", p.AuthInfo)
	}
	cn := "(no certificate)"
	if pc := ti.State.PeerCertificates; len(pc) > 0 {
		cn = pc[0].Subject.CommonName
	}
	b, err := proto.Marshal(&pb.ModelInferResponse{ModelName: ti.AuthType() + " " + ti.SecurityLevel.String() + " " + ti.State.NegotiatedProtocol + " " + cn})
	if err != nil {
		return err
	}
	return ss.SendMsg(&oip.RawFrame{Bytes: b})
}

// TestTLSListener: served on a tls.NewListener, grpc-go clients with TLS
// credentials (ALPN h2) call unary and stream methods, and handlers find
// the client's certificate in the peer's AuthInfo, as on grpc-go's own
// server; with mutual TLS a client without a certificate gets no answer.
func TestTLSListener(t *testing.T) {
	f := newTLSFixture(t)
	addr := serveTLS(t, Options{}, &inferService{infer: peerInfer}, &tls.Config{
		Certificates: []tls.Certificate{f.server},
		NextProtos:   []string{"h2"},
		ClientCAs:    f.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	})
	tests := []struct {
		name   string
		certs  []tls.Certificate
		wantCN string
	}{
		{"client certificate", []tls.Certificate{f.client}, "tenant-a"},
		{"no client certificate", nil, "(no certificate)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := dialTLS(t, addr, &tls.Config{RootCAs: f.pool, Certificates: tc.certs})
			ctx := testContext(t)
			resp, err := inferRaw(ctx, cc, &pb.ModelInferRequest{ModelName: "m"})
			if err != nil {
				t.Fatal(err)
			}
			if want := "tls PrivacyAndIntegrity h2 " + tc.wantCN; resp.ModelName != want {
				t.Errorf("the handler saw %q, want %q", resp.ModelName, want)
			}
			md, err := pb.NewGRPCInferenceServiceClient(cc).ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "iris"})
			if err != nil || !strings.HasPrefix(md.GetName(), "iris") {
				t.Errorf("ModelMetadata: %v, %v", md, err)
			}
		})
	}

	// Required client certificates: a client without one is refused.
	mtls := serveTLS(t, Options{}, &inferService{infer: peerInfer}, &tls.Config{
		Certificates: []tls.Certificate{f.server},
		NextProtos:   []string{"h2"},
		ClientCAs:    f.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	cc := dialTLS(t, mtls, &tls.Config{RootCAs: f.pool})
	_, err := inferRaw(testContext(t), cc, &pb.ModelInferRequest{ModelName: "m"})
	// The client may see the alert ("certificate required") or the
	// connection closed first.
	if status.Code(err) != codes.Unavailable {
		t.Errorf("without a client certificate: %v, want UNAVAILABLE", err)
	}
	cc = dialTLS(t, mtls, &tls.Config{RootCAs: f.pool, Certificates: []tls.Certificate{f.client}})
	if _, err := inferRaw(testContext(t), cc, &pb.ModelInferRequest{ModelName: "m"}); err != nil {
		t.Errorf("with a client certificate: %v", err)
	}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestTLSHandshakeTimeout: a client that opens a TCP connection to a TLS
// listener and sends no ClientHello is closed after ConnectionTimeout, as
// one that sends no HTTP/2 preface is; so is one that speaks cleartext
// HTTP/2 to it.
func TestTLSHandshakeTimeout(t *testing.T) {
	f := newTLSFixture(t)
	addr := serveTLS(t, Options{ConnectionTimeout: 50 * time.Millisecond}, &inferService{}, &tls.Config{
		Certificates: []tls.Certificate{f.server},
		NextProtos:   []string{"h2"},
	})
	for _, send := range []string{"", clientPreface} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(testWait))
		if _, err := io.WriteString(nc, send); err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(nc)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("sent %q: the connection was still open after %v", send, testWait)
		}
		nc.Close()
	}
}
