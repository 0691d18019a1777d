package jsonhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// answer is an answer read whole.
type answer struct {
	Status int
	Allow  string
	Body   string
}

func get(t *testing.T, srv *httptest.Server, method, path string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK && ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return answer{Status: resp.StatusCode, Allow: resp.Header.Get("Allow"), Body: string(b)}
}

var errTeapot = errors.New("short and stout")

// testAPI is an API of two routes, /api/x (GET, POST) and /api/x/{id}
// (DELETE), mounted at /api/x and /api/x/.
func testAPI(t *testing.T, log *slog.Logger, codes bool) *httptest.Server {
	t.Helper()
	status := func(err error) (int, string) {
		if s, c, ok := StatusOf(err); ok {
			if !codes {
				c = ""
			}
			return s, c
		}
		if errors.Is(err, errTeapot) {
			return http.StatusTeapot, "TEAPOT"
		}
		return http.StatusInternalServerError, "INTERNAL"
	}
	ew := ErrorWriter{Status: status, Logger: log, API: "test API"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/x", ew.Handle(func(w http.ResponseWriter, r *http.Request) error {
		WriteJSON(w, http.StatusOK, map[string]int{"n": 1})
		return nil
	}))
	mux.HandleFunc("POST /api/x", ew.Handle(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", "kept")
		return errTeapot
	}))
	mux.HandleFunc("DELETE /api/x/{id}", ew.Handle(func(w http.ResponseWriter, r *http.Request) error {
		return errors.New("the disk is on fire")
	}))
	patterns := []string{"/api/x", "/api/x/"}
	noRoute := ew.Handle(NoRoute(mux, patterns, "test", "/api/x[/{id}]"))
	for _, p := range patterns {
		mux.HandleFunc(p, noRoute)
	}
	srv := httptest.NewServer(mux) // 127.0.0.1, port 0
	t.Cleanup(srv.Close)
	return srv
}

func TestErrorWriterAndNoRoute(t *testing.T) {
	var logged bytes.Buffer
	srv := testAPI(t, slog.New(slog.NewTextHandler(&logged, nil)), true)
	tests := []struct {
		name, method, path string
		want               answer
	}{
		{"success", "GET", "/api/x", answer{200, "", "{\n  \"n\": 1\n}\n"}},
		{"an error with its headers kept", "POST", "/api/x", answer{418, "kept", "{\n  \"error\": \"short and stout\",\n  \"code\": \"TEAPOT\"\n}\n"}},
		{"a 5xx", "DELETE", "/api/x/1", answer{500, "", "{\n  \"error\": \"the disk is on fire\",\n  \"code\": \"INTERNAL\"\n}\n"}},
		{"another method of a route", "PUT", "/api/x", answer{405, "GET, POST",
			"{\n  \"error\": \"PUT /api/x: the method is not allowed; use GET, POST\",\n  \"code\": \"METHOD_NOT_ALLOWED\"\n}\n"}},
		{"a wildcard route's other method", "GET", "/api/x/7", answer{405, "DELETE",
			"{\n  \"error\": \"GET /api/x/7: the method is not allowed; use DELETE\",\n  \"code\": \"METHOD_NOT_ALLOWED\"\n}\n"}},
		{"no route", "GET", "/api/x/7/y", answer{404, "",
			"{\n  \"error\": \"no test API at GET /api/x/7/y; see /api/x[/{id}]\",\n  \"code\": \"NOT_FOUND\"\n}\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, get(t, srv, tc.method, tc.path)); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", tc.method, tc.path, diff)
			}
		})
	}
	if got := logged.String(); strings.Count(got, "test API: request failed") != 1 || !strings.Contains(got, "the disk is on fire") {
		t.Errorf("log: want the one 5xx, got %q", got)
	}
}

func TestErrorWriterWithoutCodes(t *testing.T) {
	srv := testAPI(t, nil, false) // a nil Logger discards
	got := get(t, srv, "GET", "/api/nothing/../x/1/2")
	want := answer{404, "", "{\n  \"error\": \"no test API at GET /api/x/1/2; see /api/x[/{id}]\"\n}\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDecode(t *testing.T) {
	type obj struct {
		A int `json:"a"`
	}
	const max = 32
	tests := []struct {
		name       string
		body       string
		want       obj
		wantErr    func(error) bool
		wantOffset int64 // 0: not checked
	}{
		{name: "one object", body: `{"a": 3}`, want: obj{3}, wantOffset: 8},
		{name: "white space after it", body: " {\"a\": 3}\n\t ", want: obj{3}},
		{name: "empty", body: ``, wantErr: func(err error) bool { return err == io.EOF }},
		{name: "unknown field", body: `{"b": 1}`, wantErr: func(err error) bool { return strings.Contains(err.Error(), `unknown field "b"`) }},
		{name: "wrong type", body: `{"a": "x"}`, wantErr: func(err error) bool { return errors.As(err, new(*json.UnmarshalTypeError)) }},
		{name: "malformed", body: `{"a": }`, wantErr: func(err error) bool { return errors.As(err, new(*json.SyntaxError)) }},
		{name: "cut off", body: `{"a": 1`, wantErr: func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{name: "a second value", body: `{"a": 1} {}`, wantOffset: 10, wantErr: func(err error) bool {
			var te *TrailingError
			return errors.As(err, &te) && te.Err == nil && err.Error() == "data after the request object"
		}},
		{name: "garbage after it", body: `{"a": 1} ]`, wantErr: func(err error) bool {
			var te *TrailingError
			return errors.As(err, &te) && errors.As(err, new(*json.SyntaxError))
		}},
		{name: "too large", body: `{"a": 1` + strings.Repeat(" ", max) + `}`, wantErr: func(err error) bool {
			var tooBig *http.MaxBytesError
			return errors.As(err, &tooBig) && tooBig.Limit == max
		}},
		{name: "too large after the value", body: `{"a": 1}` + strings.Repeat(" ", max), wantErr: func(err error) bool {
			return errors.As(err, new(*TrailingError)) && errors.As(err, new(*http.MaxBytesError))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			var got obj
			offset, err := Decode(httptest.NewRecorder(), r, max, &got)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Decode(%q): %v", tc.body, err)
				}
				if got != tc.want || (tc.wantOffset != 0 && offset != tc.wantOffset) {
					t.Errorf("Decode(%q) = %+v at %d, want %+v at %d", tc.body, got, offset, tc.want, tc.wantOffset)
				}
				return
			}
			if err == nil || !tc.wantErr(err) {
				t.Fatalf("Decode(%q): error %#v (%v) is not the one wanted", tc.body, err, err)
			}
			if tc.wantOffset != 0 && offset != tc.wantOffset {
				t.Errorf("Decode(%q): offset %d, want %d", tc.body, offset, tc.wantOffset)
			}
		})
	}
}

// FuzzDecode: whatever the body, Decode returns a value or an error,
// never panics, and never reads past its bound.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a": 1}`, `{} {}`, `[`, `{"a": 1}]`, ``, `"x"`, `{"a": 1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		var v struct {
			A float64 `json:"a"`
		}
		offset, err := Decode(httptest.NewRecorder(), r, 64, &v)
		if offset < 0 || offset > 64 || offset > int64(len(body)) {
			t.Fatalf("body %q: offset %d", body, offset)
		}
		if err != nil && err.Error() == "" {
			t.Fatalf("body %q: an empty message", body)
		}
	})
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json":                true,
		"application/json; charset=utf-8": true,
		"Application/JSON":                true,
		"application/merge-patch+json":    true,
		"":                                false,
		"text/plain":                      false,
		"application/json; =":             false,
	} {
		if got := IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestActor(t *testing.T) {
	tests := []struct {
		name, header, remote, want string
	}{
		{"the header", " dana ", "127.0.0.1:5000", "dana"},
		{"the client's host", "", "127.0.0.1:5000", "127.0.0.1"},
		{"an IPv6 client", "", "[::1]:5000", "::1"},
		{"an address without a port", "", "pipe", "pipe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			r.RemoteAddr = tc.remote
			if tc.header != "" {
				r.Header.Set(ActorHeader, tc.header)
			}
			if got := Actor(r); got != tc.want {
				t.Errorf("Actor = %q, want %q", got, tc.want)
			}
		})
	}
}
