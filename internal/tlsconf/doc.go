// Package tlsconf builds the *tls.Config values infergate serves and dials
// with, from PEM files that it reloads when they change on disk, so that a
// renewed certificate takes effect without a restart.
//
// ServerConfig is the front doors' (REST, gRPC, admin): a certificate and
// key, and optionally a client CA bundle that turns on mutual TLS (a
// client must present a certificate the bundle verifies). Every handshake
// takes the certificate and client CAs loaded last (GetConfigForClient),
// so one *tls.Config, given once to tls.NewListener, serves every reload;
// TLSConfigFor gives ports of other ALPN protocols the same files.
//
// ClientConfig is the runtimes' side: the CA bundle that verifies runtimes
// (the system roots when none is given), a server name override, and
// optionally a client certificate for mutual TLS, which is reloaded; the
// CA bundle is read once.
//
// Both speak TLS 1.2 and 1.3 only, with Go's default cipher suites and
// curves; the caller chooses ALPN (NextProtos: "h2" for gRPC, "http/1.1"
// for REST and admin).
//
// Reloads: Run watches the files' directories with fsnotify (not the files
// themselves, so that a file renamed over the old one and a Kubernetes
// secret volume's symlink swap are both seen) and reloads, after a short
// quiet period, when one of them, or an entry named "..*", changes;
// Reload does the same on demand (a SIGHUP, say). A reload that reads the
// same bytes as the files in use changes nothing and reports nothing. A
// set of files that does not load (unreadable, not PEM, a key that does
// not match the certificate, a CA file with no certificate) is logged at
// error level and the files in use stay; the same broken bytes are not
// reported again by Run. OnReload hears of every reload and failure.
//
// It never registers metrics: Reloads, Failures and Certificate (whose
// NotAfter is the expiry) are plain accessors for the caller's collectors,
// say infergate_tls_reloads_total, infergate_tls_reload_failures_total and
// infergate_tls_certificate_expiry_timestamp_seconds. It logs only
// reloads and their failures, and imports nothing of infergate's.
// Certificates for tests are made by its sub-package tlstest.
package tlsconf
