package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveMTLS serves cfg on loopback and sends the serial number of each
// client certificate it verifies on the channel it returns.
func serveMTLS(t *testing.T, cfg *tls.Config) (string, chan *big.Int) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan *big.Int, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(waitTime))
				if tc.Handshake() != nil {
					return
				}
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					seen <- pc[0].SerialNumber
				}
				_, _ = tc.Write([]byte("ok"))
			}()
		}
	}()
	return ln.Addr().String(), seen
}

// TestClientConfig: the runtime side verifies servers with the CA file,
// against ServerName when set, presents its client certificate, and
// presents a new one after its files are replaced.
func TestClientConfig(t *testing.T) {
	f, ca := certs(t)
	srv, err := NewServerConfig(ServerOptions{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CA, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	addr, seen := serveMTLS(t, srv.TLSConfig())

	hook, ch := reloads()
	cc, err := NewClientConfig(ClientOptions{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey, ServerName: "localhost", Logger: quiet, OnReload: hook, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := cc.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "localhost" {
		t.Errorf("MinVersion %x, ServerName %q; want TLS 1.2 and localhost", cfg.MinVersion, cfg.ServerName)
	}
	first := readPEMSerial(t, f.ClientCert)
	if _, err := dial(addr, cfg); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got.Cmp(first) != 0 {
		t.Errorf("the server saw client serial %v, want %v", got, first)
	}

	run(t, cc)
	next := pair(t)(ca.Client("client"))
	replace(t, f.ClientKey, next.KeyPEM)
	replace(t, f.ClientCert, next.CertPEM)
	waitReload(t, ch)
	// A clone made before the reload presents the new certificate too.
	clone := cfg.Clone()
	for end := time.Now().Add(waitTime); ; {
		if _, err := dial(addr, clone); err != nil {
			t.Fatal(err)
		}
		got := <-seen
		if got.Cmp(next.Cert.SerialNumber) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the server still sees client serial %v, want %v", got, next.Cert.SerialNumber)
		}
		waitReload(t, ch) // the key was renamed first: a mismatch, then the pair
	}

	// A server name the certificate does not hold fails verification.
	wrong, err := NewClientConfig(ClientOptions{CAFile: f.CA, ServerName: "elsewhere.example", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, wrong.TLSConfig()); err == nil || !strings.Contains(err.Error(), "elsewhere.example") {
		t.Errorf("a wrong server name: %v, want a verification error naming it", err)
	}
	// Another CA does not verify the server.
	otherCA := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherCA, newCA(t, "other").CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	other, err := NewClientConfig(ClientOptions{CAFile: otherCA, ServerName: "127.0.0.1", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, other.TLSConfig()); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("another CA: %v, want unknown authority", err)
	}
}

func readPEMSerial(t *testing.T, path string) *big.Int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

func TestNewClientConfigErrors(t *testing.T) {
	f, _ := certs(t)
	tests := []struct {
		name    string
		opts    ClientOptions
		wantErr string
	}{
		{"cert without key", ClientOptions{CertFile: f.ClientCert}, "both a certificate file and a key file"},
		{"missing CA", ClientOptions{CAFile: f.CA + ".nope"}, "runtime CA file: open"},
		{"CA not PEM", ClientOptions{CAFile: f.ClientKey}, "no PEM certificate found"},
		{"key mismatch", ClientOptions{CertFile: f.ClientCert, KeyFile: f.ServerKey}, "client certificate: tls: private key does not match public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewClientConfig(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want it to say %q", err, tc.wantErr)
			}
		})
	}
	// No files at all: the system roots, nothing to reload.
	cc, err := NewClientConfig(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cc.TLSConfig().RootCAs != nil || cc.TLSConfig().GetClientCertificate != nil || cc.Reload() != nil {
		t.Error("a client config with no files has roots, a certificate or reloads")
	}
}
