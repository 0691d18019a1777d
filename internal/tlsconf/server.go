package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServerOptions configures a ServerConfig. Zero fields take the
// documented defaults.
type ServerOptions struct {
	// CertFile is the PEM certificate chain to serve, leaf first.
	// Required.
	CertFile string
	// KeyFile is the PEM private key of CertFile's leaf. Required.
	KeyFile string
	// ClientCAFile, when set, is a PEM bundle of the CAs that sign client
	// certificates: every client must present a certificate that one of
	// them verifies (tls.RequireAndVerifyClientCert). Empty: no client
	// certificate is asked for.
	ClientCAFile string
	// NextProtos are the ALPN protocols TLSConfig offers, in order of
	// preference: {"h2"} for a gRPC port, {"http/1.1"} for REST and admin
	// ports. Nil offers none. TLSConfigFor offers others with the same
	// files.
	NextProtos []string
	// Logger receives a line per reload and per failed reload (default
	// slog.Default()).
	Logger *slog.Logger
	// OnReload, when set, is called after every reload that put new files
	// in use (with nil) or failed (with the error), from the goroutine that
	// reloaded (Run's or Reload's caller). It must not block for long.
	OnReload func(error)
	// Debounce is how long Run waits after a change for more before it
	// reloads (default DefaultDebounce).
	Debounce time.Duration
}

// ServerConfig is a TLS server configuration whose certificate and client
// CAs are reloaded from their files. It is safe for concurrent use.
type ServerConfig struct {
	files  *files
	protos []string // ServerOptions.NextProtos
	base   *tls.Config
	cur    atomic.Pointer[serverState]
}

// serverState is what one load of the files made.
type serverState struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil: no client certificate asked for
	// configs holds the *tls.Config a handshake gets, one per ALPN list
	// (keyed by the list joined with ","), made on first use.
	configs sync.Map
}

// config returns the state's configuration for ALPN protos, asking for
// a client certificate when the state has client CAs and clientAuth.
func (st *serverState) config(key string, protos []string, clientAuth bool) *tls.Config {
	if cfg, ok := st.configs.Load(key); ok {
		return cfg.(*tls.Config)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   protos,
		Certificates: []tls.Certificate{*st.cert},
	}
	if st.clientCAs != nil && clientAuth {
		cfg.ClientCAs = st.clientCAs
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	got, _ := st.configs.LoadOrStore(key, cfg)
	return got.(*tls.Config)
}

// NewServerConfig loads the files of opts and returns a ServerConfig that
// serves them; it fails if they do not load. It starts no goroutine: Run
// watches the files.
func NewServerConfig(opts ServerOptions) (*ServerConfig, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tlsconf: a server needs both a certificate file and a key file")
	}
	c := &ServerConfig{protos: slices.Clone(opts.NextProtos)}
	paths := []string{opts.CertFile, opts.KeyFile}
	if opts.ClientCAFile != "" {
		paths = append(paths, opts.ClientCAFile)
	}
	apply := func(data [][]byte) error {
		st, err := newServerState(data)
		if err != nil {
			return err
		}
		c.cur.Store(st)
		return nil
	}
	c.files = newFiles("server certificate", paths, apply, opts.Logger, opts.OnReload, opts.Debounce)
	if err := c.files.load(); err != nil {
		return nil, err
	}
	c.base = c.TLSConfigFor(c.protos...)
	return c, nil
}

// newServerState parses the certificate, key and, if given, client CA
// bundle.
func newServerState(data [][]byte) (*serverState, error) {
	cert, err := tls.X509KeyPair(data[0], data[1])
	if err != nil {
		// X509KeyPair's words say which part is wrong: "failed to find any
		// PEM data in certificate input", "private key does not match
		// public key", ...
		return nil, err
	}
	if cert.Leaf == nil { // GODEBUG x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	st := &serverState{cert: &cert}
	if len(data) > 2 {
		pool, err := certPool(data[2])
		if err != nil {
			return nil, errors.New("client CA file: " + err.Error())
		}
		st.clientCAs = pool
	}
	return st, nil
}

// certPool parses a PEM CA bundle that must hold at least one certificate.
func certPool(pem []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}

// TLSConfigFor returns a configuration to serve with that offers ALPN
// nextProtos instead of ServerOptions.NextProtos, so that one
// ServerConfig, watching one set of files, serves ports of different
// protocols: TLSConfigFor("h2") for gRPC, TLSConfigFor("http/1.1") for
// REST and admin. Each call returns a new *tls.Config: call it once per
// listener. Callers must not modify it.
func (c *ServerConfig) TLSConfigFor(nextProtos ...string) *tls.Config {
	return c.tlsConfig(true, nextProtos)
}

// TLSConfigWithoutClientCerts is TLSConfigFor for a port that asks for
// no client certificate even when ServerOptions.ClientCAFile is set (a
// port whose callers show keys instead): the same files, reloaded alike.
func (c *ServerConfig) TLSConfigWithoutClientCerts(nextProtos ...string) *tls.Config {
	return c.tlsConfig(false, nextProtos)
}

func (c *ServerConfig) tlsConfig(clientAuth bool, nextProtos []string) *tls.Config {
	protos := slices.Clone(nextProtos)
	key := strings.Join(protos, ",")
	if !clientAuth {
		key = "no client certs;" + key
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		// Every handshake takes the state loaded last. GetCertificate is
		// for callers that look at this config alone (net/http's ServeTLS
		// requires a certificate source).
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.cur.Load().config(key, protos, clientAuth), nil
		},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load().cert, nil
		},
	}
}

// TLSConfig returns the configuration to serve with, offering
// ServerOptions.NextProtos, the same each call: give it to
// tls.NewListener (or a server's TLSConfig) once, and every handshake
// takes the files loaded last. Callers must not modify it.
func (c *ServerConfig) TLSConfig() *tls.Config { return c.base }

// Certificate returns the leaf certificate in use (its NotAfter is when
// it expires, its SerialNumber tells one from the next).
func (c *ServerConfig) Certificate() *x509.Certificate { return c.cur.Load().cert.Leaf }

// Reload reads the files again now and puts them in use if they changed
// and load; if they do not load, the ones in use stay and the error says
// why. Files that have not changed are no reload (nil, and no OnReload).
func (c *ServerConfig) Reload() error { return c.files.reload(false) }

// Run watches the files' directories and reloads the files when they
// change, until ctx ends; it returns nil then, or an error if the watch
// cannot start (or its event stream ends). It reloads once as soon as it
// watches, for changes made since NewServerConfig.
func (c *ServerConfig) Run(ctx context.Context) error { return c.files.run(ctx) }

// Watching returns a channel closed once Run watches the files: changes
// made after it is closed are seen.
func (c *ServerConfig) Watching() <-chan struct{} { return c.files.watching }

// Reloads returns how many reloads put new files in use (the first load
// not counted).
func (c *ServerConfig) Reloads() uint64 { return c.files.reloads.Load() }

// Failures returns how many reloads failed.
func (c *ServerConfig) Failures() uint64 { return c.files.failures.Load() }
