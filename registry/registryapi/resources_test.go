package registryapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/infergate/infergate/registry"
)

const models = "/api/v1/registry/models"

type modelPage struct {
	Items         []registry.RegisteredModel `json:"items"`
	NextPageToken string                     `json:"nextPageToken"`
}

type versionPage struct {
	Items         []registry.ModelVersion `json:"items"`
	NextPageToken string                  `json:"nextPageToken"`
}

func TestModels(t *testing.T) {
	e := newEnv(t, envOptions{})

	var m registry.RegisteredModel
	r := e.ok(http.StatusCreated, &m, "POST", models, registry.ModelCreate{Name: "iris", Description: "flowers", Labels: map[string]string{"team": "a"}}, "X-Infergate-Actor: alice")
	if got := r.header.Get("Location"); got != models+"/iris" {
		t.Errorf("Location %q", got)
	}
	if m.Owner != "alice" || m.State != registry.StateLive {
		t.Errorf("created %+v: want owner alice (the actor), LIVE", m)
	}
	if got, want := r.header.Get("ETag"), strconv.Quote(m.ETag); got != want {
		t.Errorf("ETag %s, want %s", got, want)
	}
	e.ok(http.StatusCreated, nil, "POST", models, registry.ModelCreate{Name: "digits", Labels: map[string]string{"team": "b"}})
	e.ok(http.StatusCreated, nil, "POST", models, registry.ModelCreate{Name: "iris-v2", Labels: map[string]string{"team": "a", "tier": "gold"}})

	var got registry.RegisteredModel
	e.ok(http.StatusOK, &got, "GET", models+"/iris", nil)
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("GET differs from POST's answer (-want +got):\n%s", diff)
	}

	names := func(p modelPage) []string {
		var out []string
		for _, m := range p.Items {
			out = append(out, m.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"all", "", []string{"iris", "digits", "iris-v2"}},
		{"desc", "?order=desc", []string{"iris-v2", "digits", "iris"}},
		{"name prefix", "?name=iris", []string{"iris", "iris-v2"}},
		{"label", "?label=team=a", []string{"iris", "iris-v2"}},
		{"labels, all must match", "?label=team=a&label=tier=gold", []string{"iris-v2"}},
		{"state", "?state=ARCHIVED", nil},
		{"state in lower case", "?state=live", []string{"iris", "digits", "iris-v2"}},
	} {
		t.Run("list/"+tc.name, func(t *testing.T) {
			var p modelPage
			e.ok(http.StatusOK, &p, "GET", models+tc.query, nil)
			if diff := cmp.Diff(tc.want, names(p)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("list/pages", func(t *testing.T) {
		var all []string
		tok := ""
		for i := 0; i < 5; i++ {
			var p modelPage
			e.ok(http.StatusOK, &p, "GET", models+"?pageSize=2&pageToken="+url.QueryEscape(tok), nil)
			all = append(all, names(p)...)
			if tok = p.NextPageToken; tok == "" {
				break
			}
		}
		if diff := cmp.Diff([]string{"iris", "digits", "iris-v2"}, all); diff != "" {
			t.Errorf("pages (-want +got):\n%s", diff)
		}
	})

	t.Run("empty list is [] not null", func(t *testing.T) {
		r := e.ok(http.StatusOK, nil, "GET", models+"?state=ARCHIVED", nil)
		if !strings.Contains(string(r.body), `"items": []`) {
			t.Errorf("body %s", r.body)
		}
	})

	t.Run("patch with If-Match", func(t *testing.T) {
		var cur registry.RegisteredModel
		r := e.ok(http.StatusOK, &cur, "GET", models+"/iris", nil)
		etag := r.header.Get("ETag")
		var upd registry.RegisteredModel
		r = e.ok(http.StatusOK, &upd, "PATCH", models+"/iris", `{"description": "Fisher's iris"}`, "If-Match: "+etag)
		if upd.Description != "Fisher's iris" || upd.ETag == cur.ETag {
			t.Errorf("patched %+v", upd)
		}
		if r.header.Get("ETag") == etag {
			t.Errorf("the ETag did not change")
		}
		// The ETag read before the change is stale now.
		msg := e.fails(http.StatusPreconditionFailed, "FAILED_PRECONDITION", "PATCH", models+"/iris", `{"owner": "bob"}`, "If-Match: "+etag)
		mentions(t, msg, "iris")
		e.fails(http.StatusPreconditionFailed, "FAILED_PRECONDITION", "PATCH", models+"/iris", `{"owner": "bob"}`, "If-Match: W/"+r.header.Get("ETag"))
		// Unquoted is taken, as people type it; no If-Match updates
		// whatever the ETag.
		e.ok(http.StatusOK, nil, "PATCH", models+"/iris", `{"owner": "bob"}`, "If-Match: "+upd.ETag)
		e.ok(http.StatusOK, nil, "PATCH", models+"/iris", `{"labels": {}}`)
	})

	t.Run("archive", func(t *testing.T) {
		e.ok(http.StatusCreated, nil, "POST", models, registry.ModelCreate{Name: "old"})
		e.fails(http.StatusPreconditionFailed, "FAILED_PRECONDITION", "POST", models+"/old/archive", "{}", `If-Match: "999"`)
		var a registry.RegisteredModel
		e.ok(http.StatusOK, &a, "POST", models+"/old/archive", "", `If-Match: "1"`, "Content-Type: application/json")
		if a.State != registry.StateArchived {
			t.Errorf("archived: %+v", a)
		}
		var p modelPage
		e.ok(http.StatusOK, &p, "GET", models+"?state=ARCHIVED", nil)
		if diff := cmp.Diff([]string{"old"}, names(p)); diff != "" {
			t.Errorf("archived list (-want +got):\n%s", diff)
		}
	})
}

func TestModelErrors(t *testing.T) {
	e := newEnv(t, envOptions{api: Options{MaxBodyBytes: 200}})
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "iris"}`)
	for _, tc := range []struct {
		name, method, path string
		body               any
		hdr                []string
		status             int
		code               string
		mentions           []string
	}{
		{"duplicate", "POST", models, `{"name": "iris"}`, nil, 409, "ALREADY_EXISTS", []string{"iris"}},
		{"bad name", "POST", models, `{"name": "Iris!"}`, nil, 400, "INVALID_ARGUMENT", []string{"Iris!"}},
		{"unknown field", "POST", models, `{"name": "x", "colour": "red"}`, nil, 400, "INVALID_ARGUMENT", []string{`"colour"`}},
		{"malformed JSON", "POST", models, `{"name": "x",, }`, nil, 400, "INVALID_ARGUMENT", []string{"at byte 14"}},
		{"cut-off JSON", "POST", models, `{"name": "x"`, nil, 400, "INVALID_ARGUMENT", []string{"ends early"}},
		{"wrong type", "POST", models, `{"name": "x", "labels": ["a"]}`, nil, 400, "INVALID_ARGUMENT", []string{"labels", "at byte"}},
		{"two objects", "POST", models, `{"name": "x"} {"name": "y"}`, nil, 400, "INVALID_ARGUMENT", []string{"data after"}},
		{"empty body", "POST", models, "", nil, 400, "INVALID_ARGUMENT", []string{"empty"}},
		{"body too large", "POST", models, `{"name": "x", "description": "` + strings.Repeat("a", 300) + `"}`, nil, 413, "TOO_LARGE", []string{"200 bytes"}},
		{"not JSON", "PATCH", models + "/iris", `description=x`, []string{"Content-Type: application/x-www-form-urlencoded"}, 415, "UNSUPPORTED_MEDIA_TYPE", []string{"application/json"}},
		{"missing", "GET", models + "/nope", nil, nil, 404, "NOT_FOUND", []string{"nope"}},
		{"patch missing", "PATCH", models + "/nope", `{}`, nil, 404, "NOT_FOUND", []string{"nope"}},
		{"unknown query parameter", "GET", models + "?colour=red", nil, nil, 400, "INVALID_ARGUMENT", []string{`"colour"`, "pageSize"}},
		{"bad pageSize", "GET", models + "?pageSize=many", nil, nil, 400, "INVALID_ARGUMENT", []string{"pageSize"}},
		{"pageSize too large", "GET", models + "?pageSize=5000", nil, nil, 400, "INVALID_ARGUMENT", []string{"5000"}},
		{"bad pageToken", "GET", models + "?pageToken=xyz", nil, nil, 400, "INVALID_ARGUMENT", []string{"pageToken"}},
		{"bad label", "GET", models + "?label=team", nil, nil, 400, "INVALID_ARGUMENT", []string{"label=key=value"}},
		{"bad order", "GET", models + "?order=up", nil, nil, 400, "INVALID_ARGUMENT", []string{"up"}},
		{"status is for versions", "GET", models + "?status=READY", nil, nil, 400, "INVALID_ARGUMENT", []string{"status"}},
		{"two If-Match", "PATCH", models + "/iris", `{}`, []string{`If-Match: "1", "2"`}, 400, "INVALID_ARGUMENT", []string{"one ETag"}},
		{"method", "DELETE", models, nil, nil, 405, "METHOD_NOT_ALLOWED", []string{"GET, POST"}},
		{"no route", "GET", "/api/v1/registry/nothing", nil, nil, 404, "NOT_FOUND", []string{"/api/v1/registry/nothing"}},
		{"no route under a model", "GET", models + "/iris/nothing", nil, nil, 404, "NOT_FOUND", []string{"nothing"}},
		{"no events route", "GET", "/api/v1/events/nothing", nil, nil, 404, "NOT_FOUND", []string{"nothing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := e.fails(tc.status, tc.code, tc.method, tc.path, tc.body, tc.hdr...)
			mentions(t, msg, tc.mentions...)
		})
	}
	t.Run("405 has Allow", func(t *testing.T) {
		r := e.do("DELETE", models, nil)
		if got := r.header.Get("Allow"); got != "GET, POST" {
			t.Errorf("Allow %q", got)
		}
	})
}

func TestVersions(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.ok(http.StatusCreated, nil, "POST", models, `{"name": "iris"}`)
	vs := models + "/iris/versions"

	var v1 registry.ModelVersion
	r := e.ok(http.StatusCreated, &v1, "POST", vs, `{"description": "first", "labels": {"stage": "dev"}, "metrics": {"accuracy": 0.9}, "params": {"lr": "0.1"},
		"customProperties": {"framework": {"stringValue": "sklearn"}, "epochs": {"intValue": "10"}}}`, "X-Infergate-Actor: alice")
	if v1.Version != 1 || v1.Status != registry.StatusPending || v1.Author != "alice" {
		t.Errorf("created %+v", v1)
	}
	if got := r.header.Get("Location"); got != vs+"/1" {
		t.Errorf("Location %q", got)
	}
	if got := v1.CustomProperties["epochs"]; got.Kind() != registry.KindInt || got.Int() != 10 {
		t.Errorf("custom property epochs %v", got)
	}
	// An empty body registers a version with the defaults.
	var v2 registry.ModelVersion
	e.ok(http.StatusCreated, &v2, "POST", vs, "")
	if v2.Version != 2 || v2.Author != "127.0.0.1" {
		t.Errorf("second version %+v: want number 2, author the client address", v2)
	}

	e.fails(http.StatusConflict, "CONFLICT", "POST", vs+"/1/ready", "{}")
	if _, err := e.reg.AddArtifact(context.Background(), "iris", 1, registry.ArtifactUpload{Name: "model.onnx"}, strings.NewReader("w1")); err != nil {
		t.Fatal(err)
	}
	var ready registry.ModelVersion
	e.ok(http.StatusOK, &ready, "POST", vs+"/1/ready", "{}")
	if ready.Status != registry.StatusReady || !strings.HasPrefix(ready.Digest, "sha256:") {
		t.Errorf("ready: %+v", ready)
	}
	// Metrics are frozen once READY.
	e.fails(http.StatusConflict, "CONFLICT", "PATCH", vs+"/1", `{"metrics": {"accuracy": 1}}`)

	var failed registry.ModelVersion
	e.ok(http.StatusOK, &failed, "POST", vs+"/2/failed", `{"message": "training diverged"}`)
	if failed.Status != registry.StatusFailed || failed.StatusMessage != "training diverged" {
		t.Errorf("failed: %+v", failed)
	}

	var p versionPage
	e.ok(http.StatusOK, &p, "GET", vs+"?status=ready", nil)
	if len(p.Items) != 1 || p.Items[0].Version != 1 {
		t.Errorf("READY versions: %+v", p.Items)
	}
	e.ok(http.StatusOK, &p, "GET", vs+"?order=desc&label=stage=dev", nil)
	if len(p.Items) != 1 || p.Items[0].Version != 1 {
		t.Errorf("labelled versions: %+v", p.Items)
	}

	t.Run("patch with If-Match", func(t *testing.T) {
		var cur registry.ModelVersion
		r := e.ok(http.StatusOK, &cur, "GET", vs+"/1", nil)
		var upd registry.ModelVersion
		e.ok(http.StatusOK, &upd, "PATCH", vs+"/1", `{"description": "the first"}`, "If-Match: "+r.header.Get("ETag"))
		if upd.Description != "the first" {
			t.Errorf("patched %+v", upd)
		}
		e.fails(http.StatusPreconditionFailed, "FAILED_PRECONDITION", "PATCH", vs+"/1", `{"description": "stale"}`, "If-Match: "+r.header.Get("ETag"))
	})

	t.Run("archive refused while an alias uses it", func(t *testing.T) {
		e.ok(http.StatusOK, nil, "PUT", models+"/iris/aliases/prod", `{"version": 1}`)
		msg := e.fails(http.StatusConflict, "CONFLICT", "POST", vs+"/1/archive", "{}")
		mentions(t, msg, "prod")
		e.ok(http.StatusNoContent, nil, "DELETE", models+"/iris/aliases/prod", nil)
		var cur registry.ModelVersion
		r := e.ok(http.StatusOK, &cur, "GET", vs+"/1", nil)
		e.fails(http.StatusPreconditionFailed, "FAILED_PRECONDITION", "POST", vs+"/1/archive", "{}", `If-Match: "0"`)
		var a registry.ModelVersion
		e.ok(http.StatusOK, &a, "POST", vs+"/1/archive", "{}", "If-Match: "+r.header.Get("ETag"))
		if a.State != registry.StateArchived {
			t.Errorf("archived: %+v", a)
		}
	})

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		mentions                 []string
	}{
		{"model missing", "POST", models + "/nope/versions", "{}", 404, "NOT_FOUND", []string{"nope"}},
		{"version missing", "GET", vs + "/9", "", 404, "NOT_FOUND", []string{"9"}},
		{"version not a number", "GET", vs + "/one", "", 400, "INVALID_ARGUMENT", []string{`"one"`}},
		{"version zero", "GET", vs + "/0", "", 400, "INVALID_ARGUMENT", []string{`"0"`}},
		{"bad custom property", "POST", vs, `{"customProperties": {"x": {"colourValue": 1}}}`, 400, "INVALID_ARGUMENT", []string{"colourValue", "stringValue"}},
		{"unknown field", "POST", vs, `{"verison": 3}`, 400, "INVALID_ARGUMENT", []string{`"verison"`}},
		{"ready body with a field", "POST", vs + "/2/ready", `{"force": true}`, 400, "INVALID_ARGUMENT", []string{`"force"`}},
		{"ready a failed version", "POST", vs + "/2/ready", "{}", 409, "CONFLICT", []string{"FAILED"}},
		{"status filter", "GET", vs + "?status=GOOD", "", 400, "INVALID_ARGUMENT", []string{"GOOD"}},
		{"name is for models", "GET", vs + "?name=x", "", 400, "INVALID_ARGUMENT", []string{`"name"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			mentions(t, e.fails(tc.status, tc.code, tc.method, tc.path, body), tc.mentions...)
		})
	}
}

func TestAliasesAndResolve(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	if _, err := e.reg.CreateModel(ctx, registry.ModelCreate{Name: "iris"}); err != nil {
		t.Fatal(err)
	}
	v1 := e.readyVersion("iris", "w1")
	e.readyVersion("iris", "w2")
	if _, err := e.reg.CreateVersion(ctx, "iris", registry.VersionCreate{}); err != nil { // 3: PENDING
		t.Fatal(err)
	}
	al := models + "/iris/aliases"

	var a registry.Alias
	e.ok(http.StatusOK, &a, "PUT", al+"/prod", `{"version": 1, "reason": "first release"}`, "X-Infergate-Actor: alice")
	if a.Version != 1 || a.Actor != "alice" {
		t.Errorf("set: %+v", a)
	}
	e.ok(http.StatusOK, &a, "PUT", al+"/prod", `{"version": 2, "reason": "better"}`, "X-Infergate-Actor: bob")
	e.ok(http.StatusOK, &a, "GET", al+"/prod", nil)
	if a.Version != 2 {
		t.Errorf("get: %+v", a)
	}
	var list struct{ Items []registry.Alias }
	e.ok(http.StatusOK, &list, "GET", al, nil)
	if len(list.Items) != 1 || list.Items[0].Name != "prod" {
		t.Errorf("list: %+v", list.Items)
	}

	var v registry.ModelVersion
	for _, tc := range []struct{ ref, want string }{
		{"registry://iris@prod", "2"},
		{"registry://iris", "2"},
		{"registry://iris/1", "1"},
		{"iris@" + v1.Digest, "1"},
	} {
		e.ok(http.StatusOK, &v, "GET", "/api/v1/registry/resolve?ref="+url.QueryEscape(tc.ref), nil)
		if strconv.FormatInt(v.Version, 10) != tc.want {
			t.Errorf("resolve %s: version %d, want %s", tc.ref, v.Version, tc.want)
		}
	}

	e.ok(http.StatusNoContent, nil, "DELETE", al+"/prod?reason=withdrawn", nil, "X-Infergate-Actor: carol")
	var hist struct{ Items []registry.AliasChange }
	e.ok(http.StatusOK, &hist, "GET", al+"/prod/history", nil)
	type move struct {
		From, To      int64
		Actor, Reason string
	}
	var got []move
	for _, c := range hist.Items {
		got = append(got, move{c.From, c.To, c.Actor, c.Reason})
	}
	want := []move{{2, 0, "carol", "withdrawn"}, {1, 2, "bob", "better"}, {0, 1, "alice", "first release"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history, newest first (-want +got):\n%s", diff)
	}
	e.ok(http.StatusOK, &hist, "GET", al+"/prod/history?limit=1", nil)
	if len(hist.Items) != 1 {
		t.Errorf("history limit=1: %d items", len(hist.Items))
	}
	e.ok(http.StatusOK, nil, "PUT", al+"/candidate", `{"version": 1}`)
	e.ok(http.StatusNoContent, nil, "DELETE", al+"/candidate", `{"reason": "done"}`)

	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code               string
		mentions           []string
	}{
		{"missing version", "PUT", al + "/prod", `{"version": 9}`, 404, "NOT_FOUND", []string{"9"}},
		{"pending version", "PUT", al + "/prod", `{"version": 3}`, 409, "CONFLICT", []string{"PENDING"}},
		{"no version", "PUT", al + "/prod", `{"reason": "x"}`, 400, "INVALID_ARGUMENT", []string{"version"}},
		{"reserved", "PUT", al + "/latest", `{"version": 1}`, 400, "INVALID_ARGUMENT", []string{"latest"}},
		{"bad alias name", "PUT", al + "/Prod!", `{"version": 1}`, 400, "INVALID_ARGUMENT", []string{"Prod!"}},
		{"missing model", "GET", models + "/nope/aliases", nil, 404, "NOT_FOUND", []string{"nope"}},
		{"missing alias", "GET", al + "/staging", nil, 404, "NOT_FOUND", []string{"staging"}},
		{"delete missing alias", "DELETE", al + "/staging", nil, 404, "NOT_FOUND", []string{"staging"}},
		{"history of an alias never set", "GET", al + "/staging/history", nil, 404, "NOT_FOUND", []string{"staging"}},
		{"reason twice", "DELETE", al + "/prod?reason=a", `{"reason": "b"}`, 400, "INVALID_ARGUMENT", []string{"reason"}},
		{"resolve without ref", "GET", "/api/v1/registry/resolve", nil, 400, "INVALID_ARGUMENT", []string{"ref"}},
		{"resolve bad ref", "GET", "/api/v1/registry/resolve?ref=http://x", nil, 400, "INVALID_ARGUMENT", []string{"http://x"}},
		{"resolve missing alias", "GET", "/api/v1/registry/resolve?ref=registry://iris@prod", nil, 404, "NOT_FOUND", []string{"prod"}},
		{"resolve pending", "GET", "/api/v1/registry/resolve?ref=registry://iris/3", nil, 409, "CONFLICT", []string{"iris/3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mentions(t, e.fails(tc.status, tc.code, tc.method, tc.path, tc.body), tc.mentions...)
		})
	}
}

// TestGuard checks that every change, and no read, goes through the guard.
func TestGuard(t *testing.T) {
	var guarded []string
	e := newEnv(t, envOptions{api: Options{Guard: func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			guarded = append(guarded, r.Method)
			if r.Header.Get("X-Let-In") == "" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				w.Write([]byte(`{"error": "refused by the guard"}`))
				return
			}
			h(w, r)
		}
	}}})
	if _, err := e.reg.CreateModel(context.Background(), registry.ModelCreate{Name: "iris"}); err != nil {
		t.Fatal(err)
	}
	e.readyVersion("iris", "w")
	v := models + "/iris/versions/1"
	for _, c := range []struct{ method, path string }{
		{"POST", models}, {"PATCH", models + "/iris"}, {"POST", models + "/iris/archive"},
		{"POST", models + "/iris/versions"}, {"PATCH", v}, {"POST", v + "/ready"}, {"POST", v + "/failed"}, {"POST", v + "/archive"},
		{"PUT", v + "/artifacts/x.bin"}, {"PUT", models + "/iris/aliases/prod"}, {"DELETE", models + "/iris/aliases/prod"},
	} {
		if r := e.do(c.method, c.path, "{}"); r.status != http.StatusForbidden {
			t.Errorf("%s %s: status %d without the guard's leave; body %s", c.method, c.path, r.status, r.body)
		}
	}
	n := len(guarded)
	for _, p := range []string{models, models + "/iris", models + "/iris/versions", v, v + "/artifacts", v + "/artifacts/model.onnx",
		models + "/iris/aliases", "/api/v1/registry/resolve?ref=iris", "/api/v1/events"} {
		if r := e.do("GET", p, nil); r.status != http.StatusOK {
			t.Errorf("GET %s: status %d; body %s", p, r.status, r.body)
		}
	}
	if len(guarded) != n {
		t.Errorf("reads went through the guard: %v", guarded[n:])
	}
	e.ok(http.StatusOK, nil, "PUT", models+"/iris/aliases/prod", `{"version": 1}`, "X-Let-In: yes")
}

func TestStatusOfEveryCode(t *testing.T) {
	for code, name := range codeNames {
		status, got := statusOf(&registry.Error{Code: code, Msg: "x"})
		if got != name || status < 400 {
			t.Errorf("code %v: %d %s", code, status, got)
		}
	}
	if s, c := statusOf(errors.New("plain")); s != 500 || c != "INTERNAL" {
		t.Errorf("a plain error: %d %s", s, c)
	}
	if s, c := statusOf(&registry.Error{Code: registry.CodeInvalidArgument, Err: &http.MaxBytesError{Limit: 1}}); s != 413 || c != "TOO_LARGE" {
		t.Errorf("a body over its bound: %d %s", s, c)
	}
}
