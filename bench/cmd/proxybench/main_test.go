package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePerfStat(t *testing.T) {
	in := `# started on Fri Nov 27 11:10:40 2026

1234,,raw_syscalls:sys_enter,5002345678,100.00,,
56,,context-switches,5002345678,100.00,,
400,,syscalls:sys_enter_read,5002345678,100.00,,
<not counted>,,syscalls:sys_enter_sendfile64,0,0.00,,
200,,syscalls:sys_exit_read,5002345678,100.00,,
`
	got, err := parsePerfStat(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"total": 1234, "context-switches": 56, "read": 400, "read (failed)": 200}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsePerfStat (-want +got):\n%s", diff)
	}
	if _, err := parsePerfStat(strings.NewReader("# nothing\n")); err == nil {
		t.Error("no counts must be an error")
	}
}

func TestParseStraceSummary(t *testing.T) {
	in := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 48.13    0.000681          17        39         3 futex
 24.45    0.000346          14        24           nanosleep
  1.13    0.000016           0        19         9 read
------ ----------- ----------- --------- --------- ------------------
100.00    0.001415           9        82        12 total
`
	got, err := parseStraceSummary(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"futex": 39, "futex (failed)": 3, "nanosleep": 24, "read": 19, "read (failed)": 9,
		"total": 82, "total (failed)": 12,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseStraceSummary (-want +got):\n%s", diff)
	}
}

func TestMedianAndParseInts(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 2, 3}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got, err := parseInts("16, 64"); err != nil || !cmp.Equal(got, []int{16, 64}) {
		t.Errorf("parseInts = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "x", "16,"} {
		if _, err := parseInts(bad); err == nil {
			t.Errorf("parseInts(%q) accepted", bad)
		}
	}
}

// The configs are checked by the tools themselves when they are installed.
func TestProxyConfigsAccepted(t *testing.T) {
	dir := t.TempDir()
	data := map[string]string{"Dir": dir, "Listen": "127.0.0.1:18080", "Upstream": "127.0.0.1:18000",
		"ListenGRPC": "127.0.0.1:18081", "UpstreamGRPC": "127.0.0.1:18001"}
	t.Run("nginx", func(t *testing.T) {
		bin := "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("nginx is not installed")
		}
		for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
			if err := os.MkdirAll(filepath.Join(dir, "nginx-tmp", d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		conf := filepath.Join(dir, "nginx.conf")
		if err := writeTemplate(conf, nginxConf, data); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-t", "-q", "-c", conf, "-p", dir, "-e", filepath.Join(dir, "err.log")).CombinedOutput()
		if err != nil {
			t.Errorf("nginx -t: %v\n%s", err, out)
		}
	})
	t.Run("haproxy", func(t *testing.T) {
		bin := "/usr/sbin/haproxy"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("haproxy is not installed")
		}
		conf := filepath.Join(dir, "haproxy.cfg")
		if err := writeTemplate(conf, haproxyConf, data); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-c", "-q", "-f", conf).CombinedOutput()
		if err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	})
}
