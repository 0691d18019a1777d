package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/tlsconf/tlstest"
)

var quiet = slog.New(slog.DiscardHandler)

// waitTime bounds every wait for a reload.
const waitTime = 10 * time.Second

// certs writes a CA, server and client certificates into a new temporary
// directory.
func certs(t *testing.T) (tlstest.Files, *tlstest.CA) {
	t.Helper()
	f, ca, err := tlstest.WriteDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f, ca
}

func newCA(t *testing.T, name string) *tlstest.CA {
	t.Helper()
	ca, err := tlstest.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// pair returns a function that fails t on an issuing error.
func pair(t *testing.T) func(tlstest.Pair, error) tlstest.Pair {
	return func(p tlstest.Pair, err error) tlstest.Pair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := tlstest.Replace(path, data); err != nil {
		t.Fatal(err)
	}
}

// serve accepts TLS connections on a loopback port with cfg: each that
// completes its handshake gets "ok" and is closed. It returns the address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tln := tls.NewListener(ln, cfg)
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitTime))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dial handshakes with addr and reads the server's "ok", which a server
// that refuses the client's certificate never sends (in TLS 1.3 the
// client's handshake ends before the server has checked it). It returns
// the server certificate's serial number.
func dial(addr string, cfg *tls.Config) (*big.Int, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTime}, Config: cfg}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTime))
	b, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	if string(b) != "ok" {
		return nil, errors.New("the server closed without its ok")
	}
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber, nil
}

func clientTo(t *testing.T, ca *tlstest.CA) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// reloads returns an OnReload hook and the channel it reports on.
func reloads() (func(error), chan error) {
	ch := make(chan error, 64)
	return func(err error) { ch <- err }, ch
}

// waitReload waits for a successful reload, skipping failures (a
// certificate renamed into place before its key is a mismatch for a
// moment), at most waitTime.
func waitReload(t *testing.T, ch chan error) {
	t.Helper()
	timeout := time.After(waitTime)
	for {
		select {
		case err := <-ch:
			if err == nil {
				return
			}
			t.Logf("reload failed on the way: %v", err)
		case <-timeout:
			t.Fatal("no reload within the wait")
		}
	}
}

// waitFailure waits for a failed reload and returns its error.
func waitFailure(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		if err == nil {
			t.Fatal("the files reloaded, want a failure")
		}
		return err
	case <-time.After(waitTime):
		t.Fatal("no failed reload within the wait")
	}
	return nil
}

// run runs c's watch until the test ends, and waits until it watches.
func run(t *testing.T, r interface {
	Run(context.Context) error
	Watching() <-chan struct{}
}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-r.Watching():
	case err := <-done:
		t.Fatalf("Run ended before it watched: %v", err)
	case <-time.After(waitTime):
		t.Fatal("Run did not start watching")
	}
}

func TestServerHandshake(t *testing.T) {
	f, ca := certs(t)
	sc, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, NextProtos: []string{"h2"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, sc.TLSConfig())
	for _, name := range []string{"127.0.0.1", "localhost"} {
		cfg := clientTo(t, ca)
		cfg.ServerName = name
		cfg.NextProtos = []string{"h2"}
		sn, err := dial(addr, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sn.Cmp(sc.Certificate().SerialNumber) != 0 {
			t.Errorf("%s: served serial %v, want %v", name, sn, sc.Certificate().SerialNumber)
		}
	}
	// ALPN is what the caller asked for.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: clientTo(t, ca).RootCAs, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1", "h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ALPN %q, want h2", p)
	}
	c.Close()
}

// TestServerOldTLSRefused: TLS 1.0 and 1.1 clients are refused.
func TestServerOldTLSRefused(t *testing.T) {
	f, ca := certs(t)
	sc, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, sc.TLSConfig())
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		cfg := clientTo(t, ca)
		cfg.MinVersion, cfg.MaxVersion = v, v
		if _, err := dial(addr, cfg); err == nil {
			t.Errorf("a %s client was served", tls.VersionName(v))
		} else if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("%s: %v, want a protocol version alert", tls.VersionName(v), err)
		}
	}
	cfg := clientTo(t, ca)
	cfg.MaxVersion = tls.VersionTLS12
	if _, err := dial(addr, cfg); err != nil {
		t.Errorf("TLS 1.2: %v", err)
	}
}

// TestServerReload: certificate and key renamed into place are served by
// the next handshake, without a restart.
func TestServerReload(t *testing.T) {
	f, ca := certs(t)
	hook, ch := reloads()
	sc, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, Logger: quiet, OnReload: hook, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, sc.TLSConfig())
	first, err := dial(addr, clientTo(t, ca))
	if err != nil {
		t.Fatal(err)
	}
	run(t, sc)

	for i := range 2 {
		next := pair(t)(ca.Server())
		replace(t, f.ServerKey, next.KeyPEM)
		replace(t, f.ServerCert, next.CertPEM)
		waitReload(t, ch)
		got, err := dial(addr, clientTo(t, ca))
		if err != nil {
			t.Fatal(err)
		}
		if got.Cmp(next.Cert.SerialNumber) != 0 {
			t.Fatalf("reload %d: served serial %v, want the new %v (first %v)", i+1, got, next.Cert.SerialNumber, first)
		}
		if sc.Certificate().SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
			t.Errorf("Certificate() is not the new one")
		}
	}
	if n := sc.Reloads(); n != 2 {
		t.Errorf("Reloads() = %d, want 2", n)
	}
}

// TestServerReloadKeepsWorkingFiles: files that do not load are logged,
// counted and reported, and the certificate in use stays; fixed files
// load.
func TestServerReloadKeepsWorkingFiles(t *testing.T) {
	other := pair(t)(newCA(t, "other CA").Server())
	tests := []struct {
		name    string
		file    func(tlstest.Files) string
		data    []byte
		wantErr string
	}{
		{"certificate not PEM", func(f tlstest.Files) string { return f.ServerCert }, []byte("not a certificate\n"), "PEM"},
		{"certificate empty", func(f tlstest.Files) string { return f.ServerCert }, nil, "PEM"},
		{"key of another certificate", func(f tlstest.Files) string { return f.ServerKey }, other.KeyPEM, "does not match"},
		{"key not PEM", func(f tlstest.Files) string { return f.ServerKey }, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n"), "key"},
		{"client CA with no certificate", func(f tlstest.Files) string { return f.CA }, []byte("nothing\n"), "client CA file: no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ca := certs(t)
			hook, ch := reloads()
			sc, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CA, Logger: quiet, OnReload: hook, Debounce: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			cli := clientTo(t, ca)
			cp := pair(t)(ca.Client("c"))
			kp, err := tls.X509KeyPair(cp.CertPEM, cp.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cli.Certificates = []tls.Certificate{kp}
			addr := serve(t, sc.TLSConfig())
			want := sc.Certificate().SerialNumber
			run(t, sc)

			replace(t, tc.file(f), tc.data)
			if err := waitFailure(t, ch); !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("reload error %q, want it to say %q", err, tc.wantErr)
			}
			got, err := dial(addr, cli)
			if err != nil {
				t.Fatalf("after a failed reload: %v", err)
			}
			if got.Cmp(want) != 0 {
				t.Errorf("served serial %v, want the one in use before, %v", got, want)
			}
			if sc.Failures() == 0 || sc.Reloads() != 0 {
				t.Errorf("Failures() = %d, Reloads() = %d, want some and 0", sc.Failures(), sc.Reloads())
			}
			// An explicit Reload of the same broken files says why.
			if err := sc.Reload(); err == nil {
				t.Error("Reload of broken files: nil error")
			}
			<-ch

			// Good files again.
			next := pair(t)(ca.Server())
			replace(t, f.ServerKey, next.KeyPEM)
			replace(t, f.ServerCert, next.CertPEM)
			replace(t, f.CA, ca.CertPEM)
			waitReload(t, ch)
			for end := time.Now().Add(waitTime); sc.Certificate().SerialNumber.Cmp(next.Cert.SerialNumber) != 0; {
				// A reload of a half-renamed set may come first.
				if time.Now().After(end) {
					t.Fatal("the good files were not put in use")
				}
				waitReload(t, ch)
			}
			if got, err := dial(addr, cli); err != nil || got.Cmp(next.Cert.SerialNumber) != 0 {
				t.Errorf("after the fix: serial %v, %v; want %v", got, err, next.Cert.SerialNumber)
			}
		})
	}
}

// TestServerExplicitReload: Reload without Run; unchanged files are no
// reload.
func TestServerExplicitReload(t *testing.T) {
	f, ca := certs(t)
	hook, ch := reloads()
	sc, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, Logger: quiet, OnReload: hook})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Reload(); err != nil || len(ch) != 0 || sc.Reloads() != 0 {
		t.Fatalf("Reload of unchanged files: %v, %d reports, Reloads() %d; want nothing", err, len(ch), sc.Reloads())
	}
	next := pair(t)(ca.Server())
	replace(t, f.ServerKey, next.KeyPEM)
	replace(t, f.ServerCert, next.CertPEM)
	if err := sc.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil || sc.Reloads() != 1 {
		t.Fatalf("report %v, Reloads() %d; want nil and 1", err, sc.Reloads())
	}
	if got, err := dial(serve(t, sc.TLSConfig()), clientTo(t, ca)); err != nil || got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Errorf("serial %v, %v; want %v", got, err, next.Cert.SerialNumber)
	}
}

// TestServerReloadSecretVolume: a Kubernetes secret volume updates its
// files by pointing the "..data" symlink at a new directory; the files
// are symlinks through it.
func TestServerReloadSecretVolume(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "volume CA")
	write := func(name string, p tlstest.Pair) {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(os.WriteFile(filepath.Join(d, "tls.crt"), p.CertPEM, 0o644), os.WriteFile(filepath.Join(d, "tls.key"), p.KeyPEM, 0o600)); err != nil {
			t.Fatal(err)
		}
		// As the kubelet does: a new link renamed over ..data.
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("..2024_01_01", pair(t)(ca.Server()))
	for _, n := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	hook, ch := reloads()
	sc, err := NewServerConfig(ServerOptions{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Logger: quiet, OnReload: hook, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, sc.TLSConfig())
	run(t, sc)
	next := pair(t)(ca.Server())
	write("..2024_01_02", next)
	waitReload(t, ch)
	if got, err := dial(addr, clientTo(t, ca)); err != nil || got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Errorf("serial %v, %v; want the new %v", got, err, next.Cert.SerialNumber)
	}
}

// TestMutualTLS: with a client CA, a client without a certificate and one
// whose certificate another CA signed are refused; one signed by the
// client CA is served. A new client CA file takes effect on reload.
func TestMutualTLS(t *testing.T) {
	f, ca := certs(t)
	hook, ch := reloads()
	sc, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CA, Logger: quiet, OnReload: hook, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, sc.TLSConfig())
	stranger := newCA(t, "stranger CA")
	withCert := func(p tlstest.Pair) *tls.Config {
		cfg := clientTo(t, ca)
		kp, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		// Sent whatever CAs the server names (a Go client with
		// Certificates sends none that the server's CAs did not sign).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
		return cfg
	}
	ours := withCert(pair(t)(ca.Client("ours")))
	theirs := withCert(pair(t)(stranger.Client("theirs")))
	tests := []struct {
		name    string
		cfg     *tls.Config
		wantErr string // "" for served
	}{
		{"no certificate", clientTo(t, ca), "certificate required"},
		{"no certificate, TLS 1.2", func() *tls.Config { c := clientTo(t, ca); c.MaxVersion = tls.VersionTLS12; return c }(), "handshake failure"},
		{"certificate from the client CA", ours, ""},
		{"certificate from another CA", theirs, "unknown certificate authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dial(addr, tc.cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Error("served, want refused")
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("refused with %v, want %q", err, tc.wantErr)
			}
		})
	}

	// A port of the same files that asks for no client certificate (the
	// admin port's) serves a client without one, and still the files'
	// certificate.
	open := serve(t, sc.TLSConfigWithoutClientCerts("http/1.1"))
	if _, err := dial(open, clientTo(t, ca)); err != nil {
		t.Errorf("without client certificates: %v", err)
	}

	// The client CA is now the stranger: ours are refused, theirs served.
	run(t, sc)
	replace(t, f.CA, stranger.CertPEM)
	waitReload(t, ch)
	if _, err := dial(addr, theirs); err != nil {
		t.Errorf("after the CA reload, a client of the new CA: %v", err)
	}
	if _, err := dial(addr, ours); err == nil {
		t.Error("after the CA reload, a client of the old CA was served")
	}
}

func TestNewServerConfigErrors(t *testing.T) {
	f, ca := certs(t)
	other := pair(t)(ca.Server())
	mismatched := filepath.Join(f.Dir, "other-key.pem")
	if err := os.WriteFile(mismatched, other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    ServerOptions
		wantErr string
	}{
		{"no key", ServerOptions{CertFile: f.ServerCert}, "both a certificate file and a key file"},
		{"missing file", ServerOptions{CertFile: f.ServerCert + ".nope", KeyFile: f.ServerKey}, "server certificate: open " + f.ServerCert + ".nope"},
		{"key mismatch", ServerOptions{CertFile: f.ServerCert, KeyFile: mismatched}, "private key does not match public key"},
		{"client CA not PEM", ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.ServerKey}, "client CA file: no PEM certificate found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewServerConfig(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want it to say %q", err, tc.wantErr)
			}
		})
	}
}

// TestServerTLSConfigFor: one ServerConfig serves ports with different
// ALPN protocols, and a reload reaches them all.
func TestServerTLSConfigFor(t *testing.T) {
	f, ca := certs(t)
	sc, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CA, NextProtos: []string{"h2"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{
		"h2":       serve(t, sc.TLSConfig()),
		"http/1.1": serve(t, sc.TLSConfigFor("http/1.1")),
	}
	cp := pair(t)(ca.Client("c"))
	kp, err := tls.X509KeyPair(cp.CertPEM, cp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	check := func(want *big.Int) {
		t.Helper()
		for proto, addr := range ports {
			cfg := clientTo(t, ca)
			cfg.Certificates = []tls.Certificate{kp}
			cfg.NextProtos = []string{"h2", "http/1.1"}
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				t.Fatalf("%s port: %v", proto, err)
			}
			cs := c.ConnectionState()
			c.Close()
			if cs.NegotiatedProtocol != proto || cs.PeerCertificates[0].SerialNumber.Cmp(want) != 0 {
				t.Errorf("%s port: ALPN %q, serial %v; want %s and %v", proto, cs.NegotiatedProtocol, cs.PeerCertificates[0].SerialNumber, proto, want)
			}
		}
	}
	check(sc.Certificate().SerialNumber)
	next := pair(t)(ca.Server())
	replace(t, f.ServerKey, next.KeyPEM)
	replace(t, f.ServerCert, next.CertPEM)
	if err := sc.Reload(); err != nil {
		t.Fatal(err)
	}
	check(next.Cert.SerialNumber)
}
