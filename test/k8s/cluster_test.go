//go:build k8s

package k8s

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Bounds of the waits for the processes to come up. kube-apiserver gives
// no signal that it is ready other than its /readyz endpoint, and etcd
// none other than /health, so both are polled, at pollInterval, within
// these bounds; a process that exits meanwhile ends the wait at once.
const (
	etcdReadyTimeout      = 60 * time.Second
	apiserverReadyTimeout = 120 * time.Second
	pollInterval          = 100 * time.Millisecond
	stopGrace             = 10 * time.Second
	// startAttempts bounds the retries when a port picked free was taken
	// before the process bound it (see freePort).
	startAttempts = 3
)

// cluster is an etcd and a kube-apiserver on 127.0.0.1 that this package
// started. Stop ends both.
type cluster struct {
	dir       string // temporary directory: certificates, etcd's data, logs
	etcd      *proc
	apiserver *proc
	config    *rest.Config // cluster-admin (group system:masters) by client certificate
}

// proc is a process this package started and the file that holds its output.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // the exit status, once done is closed
}

// startCluster starts etcd and kube-apiserver from the binaries in assets,
// and returns once kube-apiserver's /readyz answers ok.
func startCluster(ctx context.Context, assets string) (_ *cluster, err error) {
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s not in KUBEBUILDER_ASSETS=%s (run scripts/k8s-binaries.sh): %w", bin, assets, err)
		}
	}
	dir, err := os.MkdirTemp("", "infergate-k8s-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	pki, err := writePKI(dir)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}

	var etcdURL string
	for attempt := 1; ; attempt++ {
		etcdURL, err = c.startEtcd(ctx, filepath.Join(assets, "etcd"), attempt)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == startAttempts {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err = c.startAPIServer(ctx, filepath.Join(assets, "kube-apiserver"), etcdURL, pki, attempt)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == startAttempts {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// errPortTaken says a process could not bind a port that freePort found free.
var errPortTaken = errors.New("port taken between picking and binding")

func (c *cluster) startEtcd(ctx context.Context, bin string, attempt int) (string, error) {
	// etcd accepts port 0 but does not say which port it got in a form
	// worth parsing, and it must advertise its own URLs, so ports are
	// picked here.
	clientPort, err := freePort()
	if err != nil {
		return "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	data := filepath.Join(c.dir, fmt.Sprintf("etcd-data-%d", attempt))
	p, err := startProc(bin, filepath.Join(c.dir, fmt.Sprintf("etcd-%d.log", attempt)),
		"--name=infergate-test",
		"--data-dir="+data,
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=infergate-test="+peerURL,
		"--unsafe-no-fsync", // a throwaway store: durability buys nothing here
		"--log-level=warn",
	)
	if err != nil {
		return "", err
	}
	c.etcd = p
	health := func(client *http.Client) (bool, error) {
		resp, err := client.Get(clientURL + "/health")
		if err != nil {
			return false, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)), nil
	}
	if err := waitReady(ctx, p, &http.Client{Timeout: time.Second}, etcdReadyTimeout, health); err != nil {
		p.stop()
		c.etcd = nil
		return "", err
	}
	return clientURL, nil
}

func (c *cluster) startAPIServer(ctx context.Context, bin, etcdURL string, pki *pkiFiles, attempt int) error {
	// --secure-port=0 turns HTTPS off rather than picking a port, so the
	// port is picked here.
	port, err := freePort()
	if err != nil {
		return err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(port)
	p, err := startProc(bin, filepath.Join(c.dir, fmt.Sprintf("kube-apiserver-%d.log", attempt)),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(c.dir, "apiserver-certs"),
		"--tls-cert-file="+pki.servingCert,
		"--tls-private-key-file="+pki.servingKey,
		"--client-ca-file="+pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saKey,
		"--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		// The default reconciler writes 127.0.0.1 into the kubernetes
		// Endpoints, which validation refuses as a loopback address, and
		// the server never becomes ready.
		"--endpoint-reconciler-type=none",
	)
	if err != nil {
		return err
	}
	c.apiserver = p
	c.config = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pki.caPEM,
			CertData: pki.clientCertPEM,
			KeyData:  pki.clientKeyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
	tlsConfig, err := rest.TLSConfigFor(c.config)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	ready := func(client *http.Client) (bool, error) {
		resp, err := client.Get(host + "/readyz")
		if err != nil {
			return false, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return false, fmt.Errorf("kube-apiserver refused the test's client certificate: %s: %s", resp.Status, body)
		}
		return resp.StatusCode == http.StatusOK, nil
	}
	if err := waitReady(ctx, p, client, apiserverReadyTimeout, ready); err != nil {
		p.stop()
		c.apiserver = nil
		return err
	}
	return nil
}

// Stop ends the processes this cluster started (kube-apiserver first,
// then etcd) and removes its directory.
func (c *cluster) Stop() {
	if c.apiserver != nil {
		c.apiserver.stop()
	}
	if c.etcd != nil {
		c.etcd.stop()
	}
	os.RemoveAll(c.dir)
}

// startProc starts bin in a process group of its own with its output in
// log. The kernel kills it if the thread that started it (and so, in
// practice, the test binary) dies before stop runs.
func startProc(bin, log string, args ...string) (*proc, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{name: filepath.Base(bin), cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the process, then SIGKILL if it has not exited
// within stopGrace, and waits for it. It signals only the process it
// started, by pid.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last lines of the process's output, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls check every pollInterval until it reports ready, the
// process exits, check fails, or timeout passes.
func waitReady(ctx context.Context, p *proc, client *http.Client, timeout time.Duration, check func(*http.Client) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, err := check(client)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", p.name, err, p.tail())
		}
		if ok {
			return nil
		}
		select {
		case <-p.done:
			out := p.tail()
			if strings.Contains(out, "address already in use") {
				return fmt.Errorf("%s exited: %v: %w", p.name, p.err, errPortTaken)
			}
			return fmt.Errorf("%s exited before it was ready: %v; its output (%s) ends:\n%s", p.name, p.err, p.log, out)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %w; its output (%s) ends:\n%s", p.name, timeout, ctx.Err(), p.log, p.tail())
		case <-tick.C:
		}
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago: the
// binaries must be told their ports (and etcd must advertise its own), so
// the port is found by binding port 0 and closing. Another process may
// take it in between; startCluster retries when a process then fails to
// bind (errPortTaken).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pkiFiles are the certificates and keys kube-apiserver runs with, and
// what the test's client presents.
type pkiFiles struct {
	caCert, servingCert, servingKey, saKey string // paths
	caPEM, clientCertPEM, clientKeyPEM     []byte
}

// writePKI makes a CA, kube-apiserver's serving certificate for
// 127.0.0.1 and localhost, a client certificate in group system:masters
// (cluster-admin under RBAC) and the service-account signing key, all
// valid for a day, and writes what kube-apiserver reads into dir.
func writePKI(dir string) (*pkiFiles, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "infergate-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	issue := func(serial int64, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = now.Add(-time.Hour)
		tmpl.NotAfter = now.Add(24 * time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
	}
	servingCert, servingKey, err := issue(2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	})
	if err != nil {
		return nil, err
	}
	clientCert, clientKey, err := issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "infergate-test", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	f := &pkiFiles{
		caCert:        filepath.Join(dir, "ca.crt"),
		servingCert:   filepath.Join(dir, "apiserver.crt"),
		servingKey:    filepath.Join(dir, "apiserver.key"),
		saKey:         filepath.Join(dir, "sa.key"),
		caPEM:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		clientCertPEM: clientCert,
		clientKeyPEM:  clientKey,
	}
	if _, err := tls.X509KeyPair(clientCert, clientKey); err != nil {
		return nil, err
	}
	for path, data := range map[string][]byte{
		f.caCert:      f.caPEM,
		f.servingCert: servingCert,
		f.servingKey:  servingKey,
		f.saKey:       pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return f, nil
}
