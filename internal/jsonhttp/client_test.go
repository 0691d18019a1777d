package jsonhttp

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBaseURL(t *testing.T) {
	for admin, want := range map[string]string{
		"127.0.0.1:9090":          "http://127.0.0.1:9090",
		"http://127.0.0.1:9090":   "http://127.0.0.1:9090",
		"https://127.0.0.1:9090/": "https://127.0.0.1:9090",
		"localhost:1":             "http://localhost:1",
	} {
		if got, err := BaseURL(admin); err != nil || got != want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q", admin, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://x", "http://x/path", "http://", "http://x?q=1", "http://%zz"} {
		if got, err := BaseURL(bad); err == nil || !strings.Contains(err.Error(), "want HOST:PORT") {
			t.Errorf("BaseURL(%q) = %q, %v; want an error naming what to give", bad, got, err)
		}
	}
}

// echo answers what the request asks for in its path.
func echo(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			WriteJSON(w, http.StatusOK, map[string]string{"body": string(b), "type": r.Header.Get("Content-Type")})
		case "/none":
			w.WriteHeader(http.StatusNoContent)
		case "/coded":
			WriteJSON(w, http.StatusConflict, ErrorBody{Error: "it exists", Code: "ALREADY_EXISTS"})
		case "/plain":
			http.Error(w, "a proxy said no\nat length", http.StatusBadGateway)
		case "/empty":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/notjson":
			w.Write([]byte("<html>"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDo(t *testing.T) {
	srv := echo(t)
	call := func(method, path string, in, out any) error {
		t.Helper()
		req, err := NewRequest(t.Context(), method, srv.URL+path, in)
		if err != nil {
			t.Fatal(err)
		}
		return Do(srv.Client(), req, 1<<20, out)
	}

	var got map[string]string
	if err := call("POST", "/echo", map[string]int{"a": 1}, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"body": `{"a":1}`, "type": "application/json"}, got); diff != "" {
		t.Errorf("a JSON body (-want +got):\n%s", diff)
	}
	got = nil
	if err := call("GET", "/echo", nil, &got); err != nil || got["body"] != "" || got["type"] != "" {
		t.Errorf("no body: %v, %v", got, err)
	}
	if err := call("DELETE", "/none", nil, &got); err != nil {
		t.Errorf("204: %v", err)
	}
	if err := call("GET", "/echo", nil, nil); err != nil {
		t.Errorf("out nil: %v", err)
	}

	tests := []struct {
		path    string
		want    AnswerError
		wantMsg string
	}{
		{"/coded", AnswerError{Status: 409, StatusText: "409 Conflict", Code: "ALREADY_EXISTS", Message: "it exists",
			Body: []byte("{\n  \"error\": \"it exists\",\n  \"code\": \"ALREADY_EXISTS\"\n}\n")}, "it exists"},
		{"/plain", AnswerError{Status: 502, StatusText: "502 Bad Gateway", Body: []byte("a proxy said no\nat length\n")}, "502 Bad Gateway: a proxy said no"},
		{"/empty", AnswerError{Status: 503, StatusText: "503 Service Unavailable", Body: []byte{}}, "503 Service Unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			err := call("GET", tc.path, nil, &got)
			var ae *AnswerError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v, want an *AnswerError", err)
			}
			if diff := cmp.Diff(tc.want, *ae); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if ae.Error() != tc.wantMsg {
				t.Errorf("message %q, want %q", ae.Error(), tc.wantMsg)
			}
		})
	}

	err := call("GET", "/notjson?x=1", nil, &got)
	if err == nil || !strings.Contains(err.Error(), "GET /notjson?x=1: the answer is not JSON") || !errors.As(err, new(*json.SyntaxError)) {
		t.Errorf("a 200 that is not JSON: %v", err)
	}
}

func TestNewRequestRefusesWhatIsNotJSON(t *testing.T) {
	if _, err := NewRequest(t.Context(), "POST", "http://127.0.0.1:1/", func() {}); err == nil {
		t.Error("a func body: no error")
	}
}
