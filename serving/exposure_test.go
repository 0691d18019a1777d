package serving

import (
	"net"
	"strings"
	"testing"
)

func TestCheckExposure(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 8081}
	unix := &net.UnixAddr{Name: "/run/infergate.sock", Net: "unix"}
	for _, tc := range []struct {
		name          string
		authed, allow bool
		lns           map[string]net.Addr
		want          string // "" for no error, else a part of it
	}{
		{"loopback", false, false, map[string]net.Addr{"REST": loop, "gRPC": loop6, "admin": unix}, ""},
		{"127.0.0.2", false, false, map[string]net.Addr{"REST": &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}, ""},
		{"v4-mapped loopback", false, false, map[string]net.Addr{"REST": &net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1")}}, ""},
		{"all interfaces", false, false, map[string]net.Addr{"REST": loop, "gRPC": &net.TCPAddr{IP: net.IPv6unspecified, Port: 8081}}, "gRPC port listens on [::]:8081"},
		{"unspecified v4", false, false, map[string]net.Addr{"REST": &net.TCPAddr{IP: net.IPv4zero, Port: 8080}}, "REST port"},
		{"no IP", false, false, map[string]net.Addr{"admin": &net.TCPAddr{Port: 8090}}, "read /metrics"},
		{"a LAN address", false, false, map[string]net.Addr{"REST": &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8080}}, FlagExposeUnauthenticated},
		{"authenticated", true, false, map[string]net.Addr{"REST": &net.TCPAddr{IP: net.IPv4zero}}, ""},
		{"allowed", false, true, map[string]net.Addr{"REST": &net.TCPAddr{IP: net.IPv4zero}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkExposure(tc.authed, tc.allow, tc.lns)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestPayloadLogSinkConfined: a declaration whose payload log is a file
// outside the payload logs' directory is refused before anything runs.
func TestPayloadLogSinkConfined(t *testing.T) {
	for sink, ok := range map[string]bool{"/home/user/.bashrc": false, "file:../infergate.db": false, "file:iris.jsonl": true, "http://127.0.0.1:9/e": true} {
		m := parse(t, `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  annotations: {infergate.io/payload-log: "`+sink+`", infergate.io/endpoints: "http://127.0.0.1:9"}
spec:
  predictor:
    model: {modelFormat: {name: onnx}}
`)
		_, err := checkRevision(m[0], false, nil)
		if (err == nil) != ok {
			t.Errorf("sink %q: %v", sink, err)
		}
	}
}
