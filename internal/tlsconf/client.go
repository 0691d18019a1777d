package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// ClientOptions configures a ClientConfig. Zero fields take the
// documented defaults.
type ClientOptions struct {
	// CAFile is a PEM bundle of the CAs that verify servers' certificates.
	// Empty: the system's roots. It is read once.
	CAFile string
	// CertFile and KeyFile, both or neither, are the PEM certificate chain
	// and key presented to servers that ask for one (mutual TLS). They
	// are reloaded as a ServerConfig's are.
	CertFile, KeyFile string
	// ServerName, when set, is the name every server's certificate is
	// verified against, whatever address is dialled. Empty: each client
	// verifies the host it dials (the runtimes' clients fill it in per
	// address).
	ServerName string
	// Logger, OnReload and Debounce are as in ServerOptions, for the
	// client certificate.
	Logger   *slog.Logger
	OnReload func(error)
	Debounce time.Duration
}

// ClientConfig is a TLS client configuration whose client certificate,
// if any, is reloaded from its files. It is safe for concurrent use.
type ClientConfig struct {
	files *files
	base  *tls.Config
	cert  atomic.Pointer[tls.Certificate]
}

// NewClientConfig loads the files of opts and returns a ClientConfig; it
// fails if they do not load. It starts no goroutine: Run watches the
// client certificate's files.
func NewClientConfig(opts ClientOptions) (*ClientConfig, error) {
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("tlsconf: a client certificate needs both a certificate file and a key file")
	}
	c := &ClientConfig{base: &tls.Config{MinVersion: tls.VersionTLS12, ServerName: opts.ServerName}}
	if opts.CAFile != "" {
		b, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: runtime CA file: %w", err)
		}
		pool, err := certPool(b)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: runtime CA file %s: %w", opts.CAFile, err)
		}
		c.base.RootCAs = pool
	}
	var paths []string
	if opts.CertFile != "" {
		paths = []string{opts.CertFile, opts.KeyFile}
		// Asked for at each handshake, so that a reload reaches the
		// connections dialled after it.
		c.base.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.cert.Load(), nil
		}
	}
	apply := func(data [][]byte) error {
		cert, err := tls.X509KeyPair(data[0], data[1])
		if err != nil {
			return err
		}
		c.cert.Store(&cert)
		return nil
	}
	c.files = newFiles("client certificate", paths, apply, opts.Logger, opts.OnReload, opts.Debounce)
	if len(paths) > 0 {
		if err := c.files.load(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// TLSConfig returns the configuration to dial with, the same each call.
// Callers must not modify it: Clone it to set ServerName or NextProtos.
// Clones share the reloaded client certificate.
func (c *ClientConfig) TLSConfig() *tls.Config { return c.base }

// Reload reads the client certificate's files again now (see
// ServerConfig.Reload). Without a client certificate it does nothing.
func (c *ClientConfig) Reload() error {
	if len(c.files.paths) == 0 {
		return nil
	}
	return c.files.reload(false)
}

// Run watches the client certificate's files until ctx ends (see
// ServerConfig.Run); without a client certificate it only waits for ctx.
func (c *ClientConfig) Run(ctx context.Context) error { return c.files.run(ctx) }

// Watching returns a channel closed once Run watches the files.
func (c *ClientConfig) Watching() <-chan struct{} { return c.files.watching }

// Reloads returns how many reloads put a new client certificate in use.
func (c *ClientConfig) Reloads() uint64 { return c.files.reloads.Load() }

// Failures returns how many reloads failed.
func (c *ClientConfig) Failures() uint64 { return c.files.failures.Load() }
