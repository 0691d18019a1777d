package oip

import "testing"

func TestParseRESTPath(t *testing.T) {
	tests := []struct {
		name, path     string
		want           Endpoint
		model, version string
	}{
		{"server metadata", "/v2", EndpointServerMeta, "", ""},
		{"server metadata slash", "/v2/", EndpointServerMeta, "", ""},
		{"live", "/v2/health/live", EndpointServerLive, "", ""},
		{"ready", "/v2/health/ready", EndpointServerReady, "", ""},
		{"model metadata", "/v2/models/iris", EndpointModelMeta, "iris", ""},
		{"model metadata version", "/v2/models/iris/versions/3", EndpointModelMeta, "iris", "3"},
		{"model ready", "/v2/models/iris/ready", EndpointModelReady, "iris", ""},
		{"model ready version", "/v2/models/iris/versions/2/ready", EndpointModelReady, "iris", "2"},
		{"infer", "/v2/models/iris/infer", EndpointModelInfer, "iris", ""},
		{"infer version", "/v2/models/iris/versions/1/infer", EndpointModelInfer, "iris", "1"},
		{"unknown suffix", "/v2/models/iris/predict", EndpointUnknown, "", ""},
		{"empty model", "/v2/models//infer", EndpointUnknown, "", ""},
		{"empty version", "/v2/models/iris/versions//infer", EndpointUnknown, "", ""},
		{"trailing junk", "/v2/models/iris/infer/x", EndpointUnknown, "", ""},
		{"v1", "/v1/models/iris:predict", EndpointUnknown, "", ""},
		{"root", "/", EndpointUnknown, "", ""},
		{"health other", "/v2/health/other", EndpointUnknown, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseRESTPath([]byte(tc.path))
			if got.Endpoint != tc.want || string(got.Model) != tc.model || string(got.Version) != tc.version {
				t.Errorf("ParseRESTPath(%q) = {%v %q %q}, want {%v %q %q}", tc.path, got.Endpoint, got.Model, got.Version, tc.want, tc.model, tc.version)
			}
		})
	}
}

func TestParseRESTPathAllocs(t *testing.T) {
	path := []byte("/v2/models/iris/versions/1/infer")
	if n := testing.AllocsPerRun(100, func() { ParseRESTPath(path) }); n != 0 {
		t.Errorf("ParseRESTPath allocates %v times per call, want 0", n)
	}
}
