package gateway

import (
	"testing"

	"github.com/infergate/infergate/router"
)

func TestCheckRawPath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/v2/models/iris/infer", true},
		{"/v2/models/iris/versions/2/infer", true},
		{"/v2/models/ir%69s/infer", true},
		{"/v2/models/iris.v2/infer", true},
		{"/v2/models/.hidden/infer", true},
		{"/v2/models/iris%2", true},
		{"/v2/models/iris%2F..%2Fdigits/infer", false},
		{"/v2/models/iris%2fdigits/infer", false},
		{"/v2/models/iris/../digits/infer", false},
		{"/v2/models/iris/%2e%2E/digits/infer", false},
		{"/v2/models/iris/./infer", false},
		{"/v2/models/iris/%2E/infer", false},
		{"/v2/models/..", false},
	}
	for _, tc := range tests {
		if err := checkRawPath([]byte(tc.path)); (err == nil) != tc.ok {
			t.Errorf("checkRawPath(%q) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}

func TestCheckNames(t *testing.T) {
	tests := []struct {
		model, pin string
		ok         bool
	}{
		{"iris", "", true},
		{"iris", "iris-00002", true},
		{"iris.v2", "2", true},
		{"iris/../digits", "", false},
		{"a/b", "", false},
		{"a..b", "", false},
		{"iris", "../digits", false},
		{"iris", "1/2", false},
	}
	for _, tc := range tests {
		err := checkNames(router.Request{Model: []byte(tc.model), Pin: []byte(tc.pin)})
		if (err == nil) != tc.ok {
			t.Errorf("checkNames(%q, %q) = %v, want ok %v", tc.model, tc.pin, err, tc.ok)
		}
	}
}

// TestPathChecksAllocateNothing: the checks run on every request.
func TestPathChecksAllocateNothing(t *testing.T) {
	raw := []byte("/v2/models/iris%20x/versions/2/infer")
	req := router.Request{Model: []byte("iris"), Pin: []byte("iris-00002")}
	if n := testing.AllocsPerRun(100, func() {
		_ = checkRawPath(raw)
		_ = checkNames(req)
	}); n > 0 {
		t.Errorf("path checks allocate %v times per request", n)
	}
}
