//go:build long

package long

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// server is one `infergate serve` process on loopback ports, with its
// config directory, data directory and log.
type server struct {
	t                 *testing.T
	cmd               *exec.Cmd
	pid               int
	rest, grpc, admin string
	configDir         string
	dataDir           string
	logPath           string
	exited            chan struct{}
	waitErr           error
	exitedAt          time.Time
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServer writes yaml as the only file of a config directory, runs
// `infergate serve -config DIR` with args and waits until the gateway is
// ready. The process is killed when the test ends, if it still runs; its
// log is printed if the test failed.
func startServer(t *testing.T, yaml string, args ...string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t: t, rest: freeAddr(t), grpc: freeAddr(t), admin: freeAddr(t),
		configDir: filepath.Join(dir, "config"), dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "serve.log"), exited: make(chan struct{}),
	}
	if err := os.MkdirAll(s.configDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeConfig(yaml)
	logF, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(binPath, append([]string{"serve",
		"-rest-addr", s.rest, "-grpc-addr", s.grpc, "-admin-addr", s.admin,
		"-data-dir", s.dataDir, "-config", s.configDir}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logF, logF
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.pid = s.cmd.Process.Pid
	go func() {
		s.waitErr = s.cmd.Wait()
		s.exitedAt = time.Now()
		logF.Close()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if !s.hasExited() {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("infergate serve log (last 80 lines of %s):\n%s", s.logPath, s.logTail(80))
		}
	})
	s.waitHTTP(t, "http://"+s.rest+"/v2/health/ready", 90*time.Second)
	return s
}

func (s *server) hasExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// writeConfig replaces the config directory's file, atomically (a
// rename), so that the watcher never reads half a file.
func (s *server) writeConfig(yaml string) {
	s.t.Helper()
	tmp := filepath.Join(s.configDir, ".models.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.configDir, "models.yaml")); err != nil {
		s.t.Fatal(err)
	}
}

// signal sends sig to the serve process.
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v to infergate serve: %v", sig, err)
	}
}

// log returns the serve process's log so far.
func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *server) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(s.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200, failing the test at limit.
func (s *server) waitHTTP(t *testing.T, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if s.hasExited() {
			t.Fatalf("infergate serve exited (%v) before %s answered 200", s.waitErr, url)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (last: %v)", url, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// modelRow is a row of GET /api/v1/models.
type modelRow struct {
	Name     string   `json:"name"`
	Revision string   `json:"revision"`
	Traffic  int64    `json:"traffic"`
	Tags     []string `json:"tags"`
	Desired  int      `json:"desired"`
	Running  int      `json:"running"`
	Ready    int      `json:"ready"`
	Restarts int      `json:"restarts"`
	Failed   bool     `json:"failed"`
	Reason   string   `json:"reason"`
}

// models reads the admin API's revisions of model.
func (s *server) models(model string) ([]modelRow, error) {
	resp, err := http.Get("http://" + s.admin + "/api/v1/models")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rows []modelRow
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		return nil, err
	}
	var out []modelRow
	for _, r := range rows {
		if r.Name == model {
			out = append(out, r)
		}
	}
	return out, nil
}

// readyServing is how many replicas of model's revisions with traffic are
// ready.
func (s *server) readyServing(model string) int {
	rows, err := s.models(model)
	if err != nil {
		return -1
	}
	n := 0
	for _, r := range rows {
		if r.Traffic > 0 {
			n += r.Ready
		}
	}
	return n
}

// waitReady waits until model has n ready replicas serving traffic.
func (s *server) waitReady(t *testing.T, model string, n int, limit time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := s.readyServing(model)
		if got >= n {
			return true
		}
		if time.Now().After(deadline) || s.hasExited() {
			rows, _ := s.models(model)
			t.Errorf("model %s: %d ready replicas after %s, want %d (revisions: %+v)", model, got, limit, n, rows)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replica is a runtime process of the serve process, as /proc shows it.
type replica struct {
	pid             int
	model, revision string
	index           int
	rest            string // the replica's OIP REST address
}

// logPathRE parses a replica's log path: DATA/revisions/REV/logs/MODEL-N.log.
var logPathRE = regexp.MustCompile(`/revisions/([^/]+)/logs/(.+)-(\d+)\.log$`)

// replicas lists the serve process's runtime replicas of model (any
// revision; "" for all) from /proc: children of the serve process, their
// revision and index from the log their stderr is, their REST address
// from the sockets they listen on.
func (s *server) replicas(model string) []replica {
	s.t.Helper()
	kids, err := children(s.pid)
	if err != nil {
		s.t.Fatalf("listing the replicas: %v", err)
	}
	listening := listeningPorts()
	var out []replica
	for _, pid := range kids {
		logPath, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", pid))
		if err != nil {
			continue // exited meanwhile
		}
		m := logPathRE.FindStringSubmatch(logPath)
		if m == nil || (model != "" && m[2] != model) {
			continue
		}
		r := replica{pid: pid, revision: m[1], model: m[2]}
		r.index, _ = strconv.Atoi(m[3])
		r.rest = restAddrOf(pid, logPath, listening)
		out = append(out, r)
	}
	return out
}

// children returns the pids whose parent is pid.
func children(pid int) ([]int, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil || len(dirs) == 0 {
		return nil, fmt.Errorf("no /proc: %v", err)
	}
	var kids []int
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

// listeningPorts maps the inodes of listening TCP sockets to their
// loopback addresses, from /proc/net/tcp.
func listeningPorts() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fs) < 10 || fs[3] != "0A" {
			continue
		}
		_, portHex, _ := strings.Cut(fs[1], ":")
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil {
			continue
		}
		out[fs[9]] = "127.0.0.1:" + strconv.FormatUint(port, 10)
	}
	return out
}

// restAddrOf returns the REST address of a replica: the one port it
// listens on, or, for the built-in model server (REST and gRPC), the rest=
// address of the "listening" line of its log.
func restAddrOf(pid int, logPath string, listening map[string]string) string {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var addrs []string
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if a, ok := listening[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")]; ok {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 1 {
		return addrs[0]
	}
	b, _ := os.ReadFile(logPath)
	if m := regexp.MustCompile(`rest=(127\.0\.0\.1:\d+)`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// kill sends sig to a replica.
func (r replica) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(r.pid, sig); err != nil {
		t.Errorf("signal %v to replica pid %d: %v", sig, r.pid, err)
	}
}

// procSample is the serve process's resource use at one moment.
type procSample struct {
	at         time.Duration
	rssMB      float64
	fds        int
	goroutines int
}

// sample reads the serve process's RSS and open files from /proc and its
// goroutines from /metrics (-1 when the admin port does not answer
// within 2s).
func (s *server) sample(since time.Time) procSample {
	p := s.sampleProc(since)
	p.goroutines = s.goroutines()
	return p
}

// sampleProc is sample without the goroutines (-1), which need the admin
// port: it reads /proc only, so it never waits.
func (s *server) sampleProc(since time.Time) procSample {
	return procSample{at: time.Since(since), rssMB: rssMB(s.pid), fds: openFDs(s.pid), goroutines: -1}
}

func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

func openFDs(pid int) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(fds)
}

var goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

func (s *server) goroutines() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.admin+"/metrics", nil)
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := goroutinesRE.FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// adminPost posts JSON to the admin API and returns the status and body.
func (s *server) adminPost(path string, body any) (int, string) {
	b, err := json.Marshal(body)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.admin+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// waitExit waits up to limit for the serve process to exit and reports
// whether it did.
func (s *server) waitExit(limit time.Duration) bool {
	select {
	case <-s.exited:
		return true
	case <-time.After(limit):
		return false
	}
}

// pause sleeps d unless the serve process exits first; it reports whether
// the process still runs. Cases use it to hold a phase for its length
// (the load keeps running meanwhile).
func (s *server) pause(d time.Duration) bool {
	select {
	case <-s.exited:
		return false
	case <-time.After(d):
		return true
	}
}

// irisModel is an InferenceService for a sample model directory (iris,
// iris-v2...) served by the built-in runtime, with min..max replicas, a
// timeout in seconds, and extra lines under spec.predictor (indented by
// four spaces). sample may also be an absolute path.
func irisModel(t *testing.T, name, sample string, min, max, timeout int, extra string) string {
	path := sample
	if !filepath.IsAbs(path) {
		path = filepath.Join(samplesDir(t), sample)
	}
	return fmt.Sprintf(`apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: %s
spec:
  predictor:
    minReplicas: %d
    maxReplicas: %d
    timeout: %d
%s    model:
      modelFormat: {name: onnx}
      storageUri: %q
`, name, min, max, timeout, extra, path)
}

// sockets sums up the serve process's TCP sockets, for a failure message:
// connections to each of its ports and out to others, by state.
func (s *server) sockets() string {
	states := map[string]string{"01": "established", "06": "time-wait", "08": "close-wait", "0A": "listen", "04": "fin-wait-1", "05": "fin-wait-2", "07": "close", "09": "last-ack", "0B": "closing", "02": "syn-sent", "03": "syn-recv"}
	type sock struct{ local, remote, state string }
	byInode := map[string]sock{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			byInode[f[9]] = sock{local: hexPort(f[1]), remote: hexPort(f[2]), state: states[f[3]]}
		}
	}
	names := map[string]string{}
	for _, a := range []struct{ n, addr string }{{"REST", s.rest}, {"gRPC", s.grpc}, {"admin", s.admin}} {
		_, p, _ := net.SplitHostPort(a.addr)
		names[p] = a.n
	}
	counts := map[string]int64{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", s.pid, fd.Name()))
		if err != nil {
			continue
		}
		inode, ok := strings.CutPrefix(l, "socket:[")
		if !ok {
			counts["not a socket"]++
			continue
		}
		so, ok := byInode[strings.TrimSuffix(inode, "]")]
		switch {
		case !ok:
			counts["socket not in /proc/net/tcp"]++
		case names[so.local] != "":
			counts[fmt.Sprintf("on the %s port, %s", names[so.local], so.state)]++
		default:
			counts[fmt.Sprintf("out to port %s, %s", so.remote, so.state)]++
		}
	}
	return formatMap(counts)
}

// hexPort returns the port of a /proc/net/tcp address (HEXIP:HEXPORT).
func hexPort(a string) string {
	_, h, _ := strings.Cut(a, ":")
	p, err := strconv.ParseUint(h, 16, 16)
	if err != nil {
		return "?"
	}
	return strconv.FormatUint(p, 10)
}
