// Package tlstest makes certificates for tests and local trials: a CA,
// server certificates for loopback (127.0.0.1, ::1 and localhost) and
// client certificates, as PEM, in memory or written to a directory. Keys
// are ECDSA P-256 and certificates are valid from an hour ago for a day;
// serial numbers are random, so that a test can tell one certificate from
// the next.
//
// It is for tests and demos only: nothing here is meant to protect
// anything.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that issues certificates.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key *ecdsa.PrivateKey
	// CertPEM is Cert as PEM, the content of a CA file.
	CertPEM []byte
}

// Pair is an issued certificate and its key, as PEM.
type Pair struct {
	// Cert is the parsed certificate.
	Cert *x509.Certificate
	// CertPEM and KeyPEM are the contents of a certificate file and a key
	// file (PKCS #8).
	CertPEM, KeyPEM []byte
}

// LoopbackHosts are the names a server certificate covers by default.
var LoopbackHosts = []string{"127.0.0.1", "::1", "localhost"}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA returns a new CA whose certificate has the common name cn.
func NewCA(cn string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Server issues a server certificate for hosts (IP addresses or DNS
// names; LoopbackHosts when none are given).
func (ca *CA) Server(hosts ...string) (Pair, error) {
	if len(hosts) == 0 {
		hosts = LoopbackHosts
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl)
}

// Client issues a client certificate with the common name cn.
func (ca *CA) Client(cn string) (Pair, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *CA) issue(tmpl *x509.Certificate) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	sn, err := serial()
	if err != nil {
		return Pair{}, err
	}
	now := time.Now()
	tmpl.SerialNumber = sn
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Pair{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Pair{}, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}

// Files are the paths WriteDir wrote.
type Files struct {
	Dir        string
	CA         string // ca.pem
	ServerCert string // server.pem, for LoopbackHosts
	ServerKey  string // server-key.pem
	ClientCert string // client.pem, common name "client"
	ClientKey  string // client-key.pem
}

// WriteDir makes a CA ("infergate test CA"), a server certificate for
// LoopbackHosts and a client certificate, writes them into dir (which must
// exist) with the names Files documents, keys readable by the owner only,
// and returns the paths and the CA, which can issue more.
func WriteDir(dir string) (Files, *CA, error) {
	ca, err := NewCA("infergate test CA")
	if err != nil {
		return Files{}, nil, err
	}
	srv, err := ca.Server()
	if err != nil {
		return Files{}, nil, err
	}
	cli, err := ca.Client("client")
	if err != nil {
		return Files{}, nil, err
	}
	f := Files{
		Dir:        dir,
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	err = errors.Join(
		os.WriteFile(f.CA, ca.CertPEM, 0o644),
		os.WriteFile(f.ServerCert, srv.CertPEM, 0o644),
		os.WriteFile(f.ServerKey, srv.KeyPEM, 0o600),
		os.WriteFile(f.ClientCert, cli.CertPEM, 0o644),
		os.WriteFile(f.ClientKey, cli.KeyPEM, 0o600),
	)
	if err != nil {
		return Files{}, nil, err
	}
	return f, ca, nil
}

// Replace writes data to path the way certificate tools do, so that a
// reader never sees half a file: into a temporary file in the same
// directory, then renamed over path.
func Replace(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("tlstest: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return nil
}
