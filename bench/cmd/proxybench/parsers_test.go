package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/bench"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// The testdata files are real outputs of Debian's wrk 4.1.0 and h2load
// (nghttp2 1.52.0) against the trivial runtime (proxybench -upstream).

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseWrk(t *testing.T) {
	c16 := readTestdata(t, "wrk-c16.txt")
	for _, tc := range []struct {
		name, in string
		want     wrkResult
		wantErr  string
	}{
		{name: "c16", in: c16, want: wrkResult{Requests: 106568, Elapsed: 2 * time.Second, RPS: 53262.85,
			P50: 202 * time.Microsecond, P99: 2150 * time.Microsecond}},
		{name: "c64", in: readTestdata(t, "wrk-c64.txt"), want: wrkResult{Requests: 192076, Elapsed: 2 * time.Second, RPS: 95963.68,
			P50: 406 * time.Microsecond, P99: 3830 * time.Microsecond}},
		{name: "not 2xx", in: readTestdata(t, "wrk-non2xx.txt"), want: wrkResult{Requests: 87111, Elapsed: time.Second, RPS: 87070.69,
			P50: 122 * time.Microsecond, P99: 3300 * time.Microsecond, Non2xx: 87111}},
		{name: "no answer", in: readTestdata(t, "wrk-no-answer.txt"), want: wrkResult{Elapsed: 2 * time.Second}},
		{name: "socket errors", in: strings.Replace(c16, "Requests/sec:", "  Socket errors: connect 0, read 2, write 1, timeout 5\nRequests/sec:", 1),
			want: wrkResult{Requests: 106568, Elapsed: 2 * time.Second, RPS: 53262.85,
				P50: 202 * time.Microsecond, P99: 2150 * time.Microsecond, SocketErrors: 8}},
		{name: "connection refused", in: readTestdata(t, "wrk-refused.txt"), wantErr: "no \"requests in\""},
		{name: "without --latency", in: "  10 requests in 1.00s, 1.00KB read\nRequests/sec:     10.00\n", wantErr: "no latency distribution"},
		{name: "bad count", in: "  x requests in 1.00s, 1.00KB read\n", wantErr: "invalid syntax"},
		{name: "bad time", in: "     50%  12.00parsecs\n", wantErr: "bad time"},
		{name: "bad socket errors", in: "  Socket errors: connect 0, read\n", wantErr: "cannot read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseWrk: error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseWrk (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"202.00us": 202 * time.Microsecond, "2.15ms": 2150 * time.Microsecond, "1.50s": 1500 * time.Millisecond,
		"1.00m": time.Minute, "2.00h": 2 * time.Hour, "0.00us": 0,
	} {
		if got, err := parseWrkDuration(in); err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "12", "ms", "-1.00s", "1.0.0s", "infs"} {
		if _, err := parseWrkDuration(bad); err == nil {
			t.Errorf("parseWrkDuration(%q) accepted", bad)
		}
	}
}

func TestWholeSecondsAndLua(t *testing.T) {
	for in, want := range map[time.Duration]int{0: 1, 200 * time.Millisecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, 3 * time.Second: 3} {
		if got := wholeSeconds(in); got != want {
			t.Errorf("wholeSeconds(%v) = %d, want %d", in, got, want)
		}
	}
	lua := wrkLua([]byte(`{"a":"b\"c"}`))
	if !strings.Contains(lua, `wrk.body = "{\"a\":\"b\\\"c\"}"`) || !strings.Contains(lua, `wrk.method = "POST"`) {
		t.Errorf("wrkLua:\n%s", lua)
	}
}

func TestParseH2load(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     h2loadResult
		wantErr  string
	}{
		{name: "1 connection, 16 streams", in: readTestdata(t, "h2load-c1m16.txt"),
			want: h2loadResult{Requests: 95551, Succeeded: 95551, RPS: 47775.50, DataBytes: 9514335}},
		{name: "4 connections, 16 streams", in: readTestdata(t, "h2load-c4m16.txt"),
			want: h2loadResult{Requests: 200278, Succeeded: 200278, RPS: 100139.00, DataBytes: 20247534}},
		// A gRPC error: HTTP 200, trailers only, no message.
		{name: "unimplemented method", in: readTestdata(t, "h2load-unimplemented.txt"),
			want: h2loadResult{Requests: 73799, Succeeded: 73799, RPS: 73799.00}},
		{name: "200 requests", in: readTestdata(t, "h2load-n200.txt"),
			want: h2loadResult{Requests: 200, Succeeded: 200, RPS: 56132.47, DataBytes: 13400}},
		{name: "connection refused", in: readTestdata(t, "h2load-refused.txt"), want: h2loadResult{}},
		{name: "failures", in: "finished in 1.00s, 10.00 req/s, 1B/s\nrequests: 12 total, 12 started, 12 done, 10 succeeded, 2 failed, 1 errored, 0 timeout\ntraffic: 1B (1) total, 0B (0) headers (space savings 0.00%), 0B (0) data\n",
			want: h2loadResult{Requests: 12, Succeeded: 10, Failed: 2, Errored: 1, RPS: 10}},
		{name: "nothing", in: "starting benchmark...\n", wantErr: "lacks"},
		{name: "bad requests line", in: "requests: 12 total, 3\n", wantErr: "cannot read"},
		{name: "bad rate", in: "finished in 1.00s, x req/s, 1B/s\n", wantErr: "invalid syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseH2load(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseH2load: error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseH2load (-want +got):\n%s", diff)
			}
		})
	}
	if got := (h2loadResult{Failed: 2, Timeout: 3}).errorCount(); got != 3 {
		t.Errorf("errorCount = %d, want 3", got)
	}
}

func TestParseH2loadLog(t *testing.T) {
	var h bench.Histogram
	n, bad, err := parseH2loadLog(strings.NewReader(readTestdata(t, "h2load-log.tsv")), &h)
	if err != nil {
		t.Fatal(err)
	}
	if n != 22 || bad != 2 || h.Count() != 20 {
		t.Errorf("parseH2loadLog: %d lines, %d not 200, %d recorded; want 22, 2, 20", n, bad, h.Count())
	}
	if h.Min() != 247*time.Microsecond || h.Max() != 514*time.Microsecond {
		t.Errorf("latencies from %v to %v, want 247us to 514us", h.Min(), h.Max())
	}
	for _, bad := range []string{"1\t200\n", "1\t200\tx\n", "1\t200\t-5\n"} {
		if _, _, err := parseH2loadLog(strings.NewReader(bad), &h); err == nil {
			t.Errorf("parseH2loadLog(%q) accepted", bad)
		}
	}
}

func TestGRPCFrame(t *testing.T) {
	req := bench.IrisRequestProto(grpcModel)
	b, err := grpcFrame(req)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != len(b)-5 {
		t.Fatalf("prefix % x does not give the message's length %d", b[:5], len(b)-5)
	}
	var got pb.ModelInferRequest
	if err := proto.Unmarshal(b[5:], &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, req) {
		t.Errorf("the framed message is %v, want %v", &got, req)
	}
	// What the h2load run of the testdata posted, encoded by hand.
	if len(b) != 60 {
		t.Errorf("framed request is %d bytes, want 60", len(b))
	}
}

func TestH2loadArgs(t *testing.T) {
	d := &driver{f: flags{h2loadThreads: 1, grpcStreamsPerConn: 16, window: 3 * time.Second, winWarmup: 200 * time.Millisecond}}
	tg := &target{addr: "127.0.0.1:1", h2loadBody: "/tmp/body"}
	for _, tc := range []struct {
		conc, n int
		want    string
	}{
		{16, 0, "-t 1 -c 1 -m 16 -D 3000ms --warm-up-time 200ms --log-file L"},
		{64, 0, "-t 1 -c 4 -m 16 -D 3000ms --warm-up-time 200ms --log-file L"},
		{4, 0, "-t 1 -c 1 -m 4 -D 3000ms --warm-up-time 200ms --log-file L"},
		{24, 0, "-t 1 -c 2 -m 12 -D 3000ms --warm-up-time 200ms --log-file L"},
		{16, 200, "-t 1 -c 1 -m 16 -n 200"},
	} {
		log := "L"
		if tc.n > 0 {
			log = ""
		}
		got := strings.Join(d.h2loadArgs(tg, tc.conc, tc.n, log), " ")
		want := tc.want + " -H content-type: application/grpc -H te: trailers -d /tmp/body http://127.0.0.1:1/inference.GRPCInferenceService/ModelInfer"
		if got != want {
			t.Errorf("h2loadArgs(%d, %d):\n got %s\nwant %s", tc.conc, tc.n, got, want)
		}
	}
}

func TestParseGoCounters(t *testing.T) {
	in := `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1e-05
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 42
# TYPE go_memstats_mallocs_total counter
go_memstats_mallocs_total 1.234567e+06
go_memstats_frees_total 1.2e+06
`
	got, err := parseGoCounters(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := (goCounters{ok: true, mallocs: 1234567, gcCycles: 42}); got != want {
		t.Errorf("parseGoCounters = %+v, want %+v", got, want)
	}
	if _, err := parseGoCounters(strings.NewReader("go_gc_duration_seconds_count 1\n")); err == nil {
		t.Error("no go_memstats_mallocs_total must be an error")
	}
	if _, err := parseGoCounters(strings.NewReader("go_memstats_mallocs_total x\ngo_gc_duration_seconds_count 1\n")); err == nil {
		t.Error("a bad value must be an error")
	}
}

func TestStatusField(t *testing.T) {
	status := "Name:\tgateway\nVmRSS:\t   53444 kB\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"
	for _, tc := range []struct {
		name string
		want int64
		ok   bool
	}{{"VmRSS:", 53444, true}, {"voluntary_ctxt_switches:", 120, true}, {"nonvoluntary_ctxt_switches:", 7, true}, {"Name:", 0, false}, {"VmHWM:", 0, false}} {
		got, ok := statusField([]byte(status), tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("statusField(%q) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	// This process's own figures read the same way.
	if kb, err := rssKB(os.Getpid()); err != nil || kb <= 0 {
		t.Errorf("rssKB(self) = %d, %v", kb, err)
	}
	if n := wakeups([]int{os.Getpid()}); n <= 0 {
		t.Errorf("wakeups(self) = %d, want some", n)
	}
}
