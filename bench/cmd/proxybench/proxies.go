package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/bench/internal/procs"
)

// nginxConf is the nginx comparison: 2 workers, keep-alive to the
// upstream, nothing logged per request, every path under the temp dir.
// REST is proxied as HTTP/1.1 on Listen; gRPC on ListenGRPC (plaintext
// HTTP/2) with grpc_pass, to the runtime's gRPC port. keepalive_requests
// at the http level also bounds the requests of a client's HTTP/2
// connection (http2_max_requests before 1.19.7).
var nginxConf = template.Must(template.New("nginx").Parse(`# Written by proxybench.
worker_processes 2;
daemon off;
master_process on;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/nginx-error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path {{.Dir}}/nginx-tmp/body;
    proxy_temp_path {{.Dir}}/nginx-tmp/proxy;
    fastcgi_temp_path {{.Dir}}/nginx-tmp/fastcgi;
    uwsgi_temp_path {{.Dir}}/nginx-tmp/uwsgi;
    scgi_temp_path {{.Dir}}/nginx-tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    upstream runtime {
        server {{.Upstream}};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen {{.Listen}};
        location / {
            proxy_pass http://runtime;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    upstream runtime_grpc {
        server {{.UpstreamGRPC}};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen {{.ListenGRPC}} http2;
        location / {
            grpc_pass grpc://runtime_grpc;
        }
    }
}
`))

// haproxyConf is the haproxy comparison: 2 threads, connections to the
// upstream reused across clients. gRPC goes through a second frontend and
// backend speaking plaintext HTTP/2 (proto h2) on both sides.
var haproxyConf = template.Must(template.New("haproxy").Parse(`# Written by proxybench.
global
    nbthread 2
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    timeout http-request 30s

frontend bench
    bind {{.Listen}}
    default_backend runtime

backend runtime
    server rt {{.Upstream}}

frontend bench_grpc
    bind {{.ListenGRPC}} proto h2
    default_backend runtime_grpc

backend runtime_grpc
    server rtg {{.UpstreamGRPC}} proto h2
`))

// gatewayConf routes "iris" to the upstream's REST port and "iris-grpc" to
// its gRPC port.
var gatewayConf = template.Must(template.New("gateway").Parse(`# Written by proxybench.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{.RESTModel}}
  annotations:
    infergate.io/endpoints: "http://{{.UpstreamREST}}"
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{.GRPCModel}}
  annotations:
    infergate.io/endpoints: "grpc://{{.UpstreamGRPC}}"
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      protocolVersion: grpc-v2
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{.PipeModel}}
  annotations:
    infergate.io/endpoints: "http://{{.UpstreamREST}}"
    infergate.io/pipeline: "true"
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{.SplitModel}}
  annotations:
    infergate.io/endpoints: "http://{{.UpstreamREST}}"
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
`))

// splitConf is splitModel's second revision: a spec that differs from
// the first (an explicit default annotation) with 10% of the traffic.
var splitConf = template.Must(template.New("split").Parse(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{.SplitModel}}
  annotations:
    infergate.io/endpoints: "http://{{.UpstreamREST}}"
    infergate.io/pipeline: "false"
spec:
  predictor:
    canaryTrafficPercent: 10
    model:
      modelFormat: {name: onnx}
`))

// canarySplit applies splitModel's second revision through the gateway's
// admin API (what infergate apply does), so that its traffic splits
// 90/10 across two revisions, and waits until the split is routed.
func canarySplit(ctx context.Context, admin, upREST string) error {
	var y strings.Builder
	if err := splitConf.Execute(&y, map[string]string{"SplitModel": splitModel, "UpstreamREST": upREST}); err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{"files": []map[string]string{{"source": "proxybench split", "yaml": y.String()}}})
	if err != nil {
		return err
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + admin + "/api/v1/apply")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return fmt.Errorf("applying the 90/10 split: %w", err)
	}
	if resp.StatusCode() != fasthttp.StatusOK || !strings.Contains(string(resp.Body()), `"revision": "`+splitModel+`-00002"`) {
		return fmt.Errorf("applying the 90/10 split: %d %s", resp.StatusCode(), resp.Body())
	}
	return nil
}

func writeTemplate(path string, t *template.Template, data any) error {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// proxyAddrs are where a started proxy listens.
type proxyAddrs struct {
	rest, grpc, admin string
}

func startNginx(ctx context.Context, bin, dir, upstream, upstreamGRPC string) (*proc, proxyAddrs, error) {
	addrs, err := procs.FreeAddrs(2)
	if err != nil {
		return nil, proxyAddrs{}, err
	}
	listen := addrs[0]
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "nginx-tmp", d), 0o755); err != nil {
			return nil, proxyAddrs{}, err
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	err = writeTemplate(conf, nginxConf, map[string]string{"Dir": dir, "Listen": listen, "Upstream": upstream,
		"ListenGRPC": addrs[1], "UpstreamGRPC": upstreamGRPC})
	if err != nil {
		return nil, proxyAddrs{}, err
	}
	// -e: the error log before the config is read, which would otherwise
	// be /var/log/nginx/error.log.
	p, err := startProc("nginx", filepath.Join(dir, "nginx.out"), true, bin,
		"-c", conf, "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"))
	if err != nil {
		return nil, proxyAddrs{}, err
	}
	return p, proxyAddrs{rest: listen, grpc: addrs[1]}, waitREST(ctx, p, listen, "/v2/health/ready")
}

func startHAProxy(ctx context.Context, bin, dir, upstream, upstreamGRPC string) (*proc, proxyAddrs, error) {
	addrs, err := procs.FreeAddrs(2)
	if err != nil {
		return nil, proxyAddrs{}, err
	}
	listen := addrs[0]
	conf := filepath.Join(dir, "haproxy.cfg")
	err = writeTemplate(conf, haproxyConf, map[string]string{"Listen": listen, "Upstream": upstream,
		"ListenGRPC": addrs[1], "UpstreamGRPC": upstreamGRPC})
	if err != nil {
		return nil, proxyAddrs{}, err
	}
	// -db: stay in the foreground whatever the config says.
	p, err := startProc("haproxy", filepath.Join(dir, "haproxy.out"), false, bin, "-f", conf, "-db")
	if err != nil {
		return nil, proxyAddrs{}, err
	}
	return p, proxyAddrs{rest: listen, grpc: addrs[1]}, waitREST(ctx, p, listen, "/v2/health/ready")
}

func startGateway(ctx context.Context, bin, dir, upREST, upGRPC string, env []string) (*proc, proxyAddrs, error) {
	addrs, err := procs.FreeAddrs(3)
	if err != nil {
		return nil, proxyAddrs{}, err
	}
	a := proxyAddrs{rest: addrs[0], grpc: addrs[1], admin: addrs[2]}
	cfgDir := filepath.Join(dir, "gw")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, a, err
	}
	err = writeTemplate(filepath.Join(cfgDir, "models.yaml"), gatewayConf, map[string]string{
		"RESTModel": restModel, "GRPCModel": grpcModel, "PipeModel": pipeModel, "SplitModel": splitModel, "UpstreamREST": upREST, "UpstreamGRPC": upGRPC,
	})
	if err != nil {
		return nil, a, err
	}
	p, err := startProcEnv("gateway", filepath.Join(dir, "gateway.log"), false, env, bin, "gateway",
		"-config", cfgDir, "-data-dir", filepath.Join(dir, "gw-data"),
		"-rest-addr", a.rest, "-grpc-addr", a.grpc, "-admin-addr", a.admin, "-log-level", "warn")
	if err != nil {
		return nil, a, err
	}
	// Ready means every routed model has a ready replica: both routes.
	return p, a, waitREST(ctx, p, a.rest, "/v2/health/ready")
}

// waitREST polls GET path at addr until it answers 200, the process exits,
// or 30s pass.
func waitREST(ctx context.Context, p *proc, addr, path string) error {
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited while starting (%v)%s", p.name, p.Err(), p.logTail())
		}
		code, _, err := fasthttp.GetTimeout(nil, "http://"+addr+path, time.Second)
		if err == nil && code == fasthttp.StatusOK {
			return nil
		}
		last = fmt.Sprintf("status %d, error %v", code, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer %s within 30s (last: %s)%s", p.name, path, last, p.logTail())
}

// toolVersion returns the first line a tool prints about its version.
func toolVersion(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
