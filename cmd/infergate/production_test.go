package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/internal/tlsconf/tlstest"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// TestProduction is the README's Production section end to end, with the
// real binary: the first admin key made on the store, tenants and keys
// through the admin API over TLS, model requests over REST and gRPC with
// mutual TLS checked against keys and grants, an infer key and an admin
// key without the command grant refused a command, a key revoked and a
// certificate replaced without a restart.
func TestProduction(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	certs, ca, err := tlstest.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cli := func(key string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+certs.CA, envKey+"="+key)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			return stderr.String(), err
		}
		return strings.TrimSpace(stdout.String()), nil
	}
	must := func(key string, args ...string) string {
		t.Helper()
		out, err := cli(key, args...)
		if err != nil {
			t.Fatalf("infergate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// The bootstrap, on the store itself.
	must("", "tenants", "create", "ops", "-data-dir", data)
	must("", "tenants", "grant", "ops", "-actions", "admin,command", "-data-dir", data)
	adminKey := must("", "keys", "create", "-tenant", "ops", "-name", "bootstrap", "-data-dir", data)

	cfg := filepath.Join(dir, "models")
	writeFiles(t, cfg, map[string]string{"fake.yaml": fakeModel("fake", "1", 200, "")})
	p := startInfergate(t, "serve", "-config", cfg, "-data-dir", data, "-auth",
		"-tls-cert", certs.ServerCert, "-tls-key", certs.ServerKey, "-tls-client-ca", certs.CA)
	admin := "https://" + p.admin

	// Tenants and keys through the admin API, which needs the admin key.
	if out, err := cli("", "tenants", "create", "app", "-admin", admin); err == nil || !strings.Contains(out, "credentials") {
		t.Fatalf("tenants create without a key: %v %s", err, out)
	}
	must(adminKey, "tenants", "create", "app", "-admin", admin)
	must(adminKey, "tenants", "grant", "app", "-actions", "infer,metadata", "-models", "fake", "-admin", admin)
	appKey := must(adminKey, "keys", "create", "-tenant", "app", "-admin", admin)
	// A deployer: admin, not command.
	must(adminKey, "tenants", "create", "deployer", "-admin", admin)
	must(adminKey, "tenants", "grant", "deployer", "-actions", "admin", "-admin", admin)
	deployerKey := must(adminKey, "keys", "create", "-tenant", "deployer", "-admin", admin)
	if out, err := cli(deployerKey, "tenants", "grant", "deployer", "-actions", "command", "-admin", admin); err == nil || !strings.Contains(out, "not granted command") {
		t.Errorf("a deployer granting itself command: %v %s", err, out)
	}
	appID := strings.Split(appKey, "_")[1]

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	clientPair, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientPair}}
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: time.Minute}
	infer := func(key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "https://"+p.rest+"/v2/models/fake/infer", strings.NewReader(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := infer(""); code != 401 {
		t.Errorf("REST without a key: %d %s", code, body)
	}
	if code, body := infer(adminKey); code != 403 {
		t.Errorf("REST with the ops key (no infer grant): %d %s", code, body)
	}
	if code, body := infer(appKey); code != 200 {
		t.Fatalf("REST with the app key: %d %s", code, body)
	}
	// No client certificate, no connection.
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := noCert.Get("https://" + p.rest + "/v2/health/live"); err == nil {
		resp.Body.Close()
		t.Error("a client without a certificate was served")
	}

	// gRPC over TLS, the key in metadata.
	conn, err := grpc.NewClient("passthrough:///"+p.grpc, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gc := pb.NewGRPCInferenceServiceClient(conn)
	grpcInfer := func(key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if key != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
		}
		_, err := gc.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "fake", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}})
		return err
	}
	if err := grpcInfer(""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC without a key: %v", err)
	}
	if err := grpcInfer(appKey); err != nil {
		t.Errorf("gRPC with the app key: %v", err)
	}

	// A command needs the command grant: an infer key and an admin key
	// without it are refused, and nothing is applied.
	cmdModel := filepath.Join(dir, "evil.yaml")
	if err := os.WriteFile(cmdModel, []byte(strings.Replace(fakeModel("evil", "1", 200, ""), "fake", "evil", 0)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(appKey, "apply", "-f", cmdModel, "-admin", admin); err == nil || !strings.Contains(out, "not granted admin") {
		t.Errorf("apply with an infer key: %v %s", err, out)
	}
	if out, err := cli(deployerKey, "apply", "-f", cmdModel, "-admin", admin); err == nil || !strings.Contains(out, "not granted command") {
		t.Errorf("apply of a command with an admin key: %v %s", err, out)
	}
	if code, _ := infer(appKey); code != 200 {
		t.Errorf("the fake model stopped answering")
	}

	// Revocation takes effect without a restart.
	must(adminKey, "keys", "revoke", appID, "-admin", admin)
	if code, body := infer(appKey); code != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("REST with a revoked key: %d %s", code, body)
	}

	// A new certificate on disk is served without a restart.
	before := servedSerial(t, p.rest, clientTLS)
	next, err := ca.Server()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlstest.Replace(certs.ServerKey, next.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if err := tlstest.Replace(certs.ServerCert, next.CertPEM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for servedSerial(t, p.rest, clientTLS) == before {
		if time.Now().After(deadline) {
			t.Fatal("the replaced certificate was not served within 30s")
		}
		// The process tells no one but its log; the handshake is what
		// counts. The watcher waits 100ms for the files to settle.
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := httpc.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(metrics), `infergate_tls_reloads_total{files="server"} `) ||
		strings.Contains(string(metrics), `infergate_tls_reloads_total{files="server"} 0`) {
		t.Errorf("no reload counted:\n%s", grepLines(metrics, "infergate_tls_"))
	}
}

// servedSerial is the serial number of the certificate a TLS server at
// addr shows.
func servedSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestCommandsNeedTheLocalKey: with no authentication configured, the
// admin API still takes a declaration that runs a program
// (infergate.io/command) or a pipeline run only with a key granted
// command: the local key, which the CLI reads from the data directory
// and a request forgery or another user's process cannot. Changes that
// run nothing need no key from loopback, as before.
func TestCommandsNeedTheLocalKey(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "models")
	writeFiles(t, cfg, map[string]string{"fake.yaml": fakeModel("fake", "1", 200, "")})
	p := startInfergate(t, "serve", "-config", cfg)
	cmdModel := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(cmdModel, []byte(fakeModel("other", "1", 200, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	// A forged request: JSON, no Origin, from loopback, but no key.
	body, _ := json.Marshal(map[string]any{"files": []map[string]string{{"source": "forged", "yaml": fakeModel("evil", "1", 200, "")}}})
	resp, err := http.Post("http://"+p.admin+"/api/v1/apply", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "admin.key") {
		t.Errorf("a command without a key: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Post("http://"+p.admin+"/api/v1/runs", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a pipeline run without a key: %d", resp.StatusCode)
	}
	// The CLI with the local key may.
	if out, err := p.cli("apply", "-f", cmdModel, "-admin", p.admin).CombinedOutput(); err != nil {
		t.Fatalf("infergate apply with the local key: %v\n%s", err, out)
	}
	// A change that runs nothing needs no key.
	resp, err = http.Post("http://"+p.admin+"/api/v1/rollouts/fake/pause", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusConflict {
		t.Errorf("a rollout action without a key: %d", resp.StatusCode)
	}
}

// TestLoopbackAdmin: the local key goes only to admin addresses on this
// machine.
func TestLoopbackAdmin(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8090": true, "localhost:8090": true, "[::1]:8090": true, "https://127.0.0.1:8090": true,
		"http://localhost:8090/": true, "10.0.0.5:8090": false, "https://admin.example:8090": false,
		"infergate.internal:8090": false, "[::ffff:127.0.0.1]:8090": true,
	} {
		if got := loopbackAdmin(addr); got != want {
			t.Errorf("loopbackAdmin(%q) = %v, want %v", addr, got, want)
		}
	}
}
