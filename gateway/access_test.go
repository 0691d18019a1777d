package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/auth"
	"github.com/infergate/infergate/gateway/quota"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/runtimes"
)

// credentialRuntime is a REST runtime that remembers whether a request
// reached it carrying an Authorization header.
type credentialRuntime struct {
	ln       *fasthttputil.InmemoryListener
	calls    atomic.Int64
	leaked   atomic.Int64
	released chan struct{} // when set, infer waits for it (a held runtime)
}

func newCredentialRuntime(t testing.TB) *credentialRuntime {
	f := &credentialRuntime{ln: fasthttputil.NewInmemoryListener()}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.Peek("Authorization")) > 0 {
			f.leaked.Add(1)
		}
		if strings.HasSuffix(string(ctx.Path()), "/infer") {
			f.calls.Add(1)
			if f.released != nil {
				<-f.released
			}
			ctx.SetContentType("application/json")
			ctx.SetBodyString(fakeResponse)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"name":"m","platform":"fake","inputs":[{"name":"x","datatype":"FP32","shape":[-1,1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1,1]}]}`)
	}}
	go srv.Serve(f.ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { f.ln.Close() })
	return f
}

func (f *credentialRuntime) client(t testing.TB) runtimes.Client {
	c, err := runtimes.NewRESTClient(runtimes.RESTOptions{Addr: "127.0.0.1:1", Dial: func(string) (net.Conn, error) { return f.ln.Dial() }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tenantsFixture is a snapshot with tenant "search" allowed to infer on
// iris (by name) and read metadata of models labelled team=search, tenant
// "other" allowed nothing, and their keys.
type tenantsFixture struct {
	snap                auth.Snapshot
	searchKey, otherKey string
	searchID            string
	authn               *auth.Authenticator
}

func newTenants(t testing.TB) *tenantsFixture {
	t.Helper()
	f := &tenantsFixture{}
	var sk, ok auth.Key
	var err error
	if f.searchKey, sk, err = auth.NewKey("search", "ci", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if f.otherKey, ok, err = auth.NewKey("other", "ci", time.Time{}); err != nil {
		t.Fatal(err)
	}
	f.searchID = sk.ID
	f.snap = auth.Snapshot{
		Tenants: []auth.Tenant{{Name: "search"}, {Name: "other"}},
		Keys:    []auth.Key{sk, ok},
		Grants: []auth.Grant{
			{ID: 1, Tenant: "search", Actions: auth.ActionInfer, Models: []string{"iris"}},
			{ID: 2, Tenant: "search", Actions: auth.ActionMetadata, Selector: map[string]string{"team": "search"}},
		},
	}
	if f.authn, err = auth.New(auth.Options{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// restInfer posts an inference request with the given Authorization
// (none when empty) and returns the answer and its body.
func restCall(t *testing.T, addr, path, authorization string) (*http.Response, string) {
	t.Helper()
	method, body := http.MethodGet, ""
	if strings.HasSuffix(path, "/infer") {
		method, body = http.MethodPost, `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`
	}
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestAccessREST: every denial path of the REST front door, and that the
// caller's credential never reaches the runtime.
func TestAccessREST(t *testing.T) {
	rt := newCredentialRuntime(t)
	ten := newTenants(t)
	s := serve(t, Options{Auth: ten.authn, Routes: []Route{
		{Model: "iris", Pool: readyPool(t, "iris", rt.client(t)), Labels: map[string]string{"team": "search"}},
		{Model: "digits", Pool: readyPool(t, "digits", rt.client(t))},
	}}, nil)
	if err := s.g.UpdateAccess(ten.snap); err != nil {
		t.Fatal(err)
	}
	bearer := func(k string) string { return "Bearer " + k }
	for _, tc := range []struct {
		name, path, authorization string
		want                      int
		wantMsg                   string
	}{
		{"no credential", "/v2/models/iris/infer", "", 401, "credential"},
		{"no credential, unknown model", "/v2/models/nosuch/infer", "", 401, ""},
		{"not bearer", "/v2/models/iris/infer", "Basic dXNlcjpwYXNz", 401, ""},
		{"unknown key", "/v2/models/iris/infer", bearer("igk_0123456789abcdef_" + strings.Repeat("A", 43)), 401, "igk_0123456789abcdef"},
		{"wrong secret", "/v2/models/iris/infer", bearer("igk_" + ten.searchID + "_" + strings.Repeat("B", 43)), 401, ""},
		{"not granted this model", "/v2/models/digits/infer", bearer(ten.searchKey), 403, "digits"},
		{"not granted anything", "/v2/models/iris/infer", bearer(ten.otherKey), 403, "other"},
		{"granted", "/v2/models/iris/infer", bearer(ten.searchKey), 200, ""},
		{"metadata by label", "/v2/models/iris", bearer(ten.searchKey), 200, ""},
		{"metadata not granted", "/v2/models/digits", bearer(ten.searchKey), 403, ""},
		{"unknown model, authenticated", "/v2/models/nosuch/infer", bearer(ten.searchKey), 404, ""},
		{"health needs none", "/v2/health/ready", "", 200, ""},
		{"server metadata needs none", "/v2", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := restCall(t, s.rest, tc.path, tc.authorization)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("a 401 without WWW-Authenticate")
			}
			if tc.want >= 400 && !strings.Contains(body, `"error"`) {
				t.Errorf("not an OIP error: %s", body)
			}
			if !strings.Contains(body, tc.wantMsg) {
				t.Errorf("body %s does not say %q", body, tc.wantMsg)
			}
			for _, secret := range []string{ten.searchKey, ten.otherKey, strings.Repeat("B", 43)} {
				if strings.Contains(body, secret) || strings.Contains(body, secret[len(secret)-43:]) {
					t.Errorf("the answer carries a secret: %s", body)
				}
			}
		})
	}
	if n := rt.leaked.Load(); n != 0 {
		t.Errorf("%d requests reached the runtime with the caller's Authorization header", n)
	}
	// A revoked key is refused from the next request on.
	snap := ten.snap
	snap.Keys = append([]auth.Key(nil), snap.Keys...)
	snap.Keys[0].Revoked = time.Now()
	if err := s.g.UpdateAccess(snap); err != nil {
		t.Fatal(err)
	}
	if resp, body := restCall(t, s.rest, "/v2/models/iris/infer", bearer(ten.searchKey)); resp.StatusCode != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("revoked key: %d %s", resp.StatusCode, body)
	}
}

// TestAccessGRPC: the same denials over gRPC, with the credential in the
// authorization metadata.
func TestAccessGRPC(t *testing.T) { forEachGRPCServer(t, testAccessGRPC) }

func testAccessGRPC(t *testing.T, server string) {
	rt := newCredentialRuntime(t)
	ten := newTenants(t)
	s := serve(t, Options{GRPCServer: server, Auth: ten.authn, Routes: []Route{
		{Model: "iris", Pool: readyPool(t, "iris", rt.client(t)), Labels: map[string]string{"team": "search"}},
		{Model: "digits", Pool: readyPool(t, "digits", rt.client(t))},
	}}, nil)
	if err := s.g.UpdateAccess(ten.snap); err != nil {
		t.Fatal(err)
	}
	c := grpcClient(t, s.grpc)
	infer := &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}}
	for _, tc := range []struct {
		name, model, authorization string
		metadataCall               bool
		want                       codes.Code
	}{
		{"no credential", "iris", "", false, codes.Unauthenticated},
		{"unknown key", "iris", "Bearer igk_0123456789abcdef_" + strings.Repeat("A", 43), false, codes.Unauthenticated},
		{"not granted this model", "digits", "Bearer " + ten.searchKey, false, codes.PermissionDenied},
		{"not granted anything", "iris", "Bearer " + ten.otherKey, false, codes.PermissionDenied},
		{"granted", "iris", "Bearer " + ten.searchKey, false, codes.OK},
		{"metadata, no credential", "iris", "", true, codes.Unauthenticated},
		{"metadata not granted", "digits", "Bearer " + ten.searchKey, true, codes.PermissionDenied},
		{"metadata by label", "iris", "Bearer " + ten.searchKey, true, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if tc.authorization != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tc.authorization)
			}
			var err error
			if tc.metadataCall {
				_, err = c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: tc.model})
			} else {
				req := infer
				req.ModelName = tc.model
				_, err = c.ModelInfer(ctx, req)
			}
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code %v, want %v (%v)", got, tc.want, err)
			}
			if err != nil && strings.Contains(err.Error(), ten.searchKey[len(ten.searchKey)-43:]) {
				t.Errorf("the status carries a secret: %v", err)
			}
		})
	}
	if n := rt.leaked.Load(); n != 0 {
		t.Errorf("%d requests reached the runtime with an Authorization header", n)
	}
}

// TestQuotaREST: a tenant over its rate gets 429 with Retry-After, over
// REST and gRPC, while another tenant is unaffected.
func TestQuotaREST(t *testing.T) {
	rt := newCredentialRuntime(t)
	ten := newTenants(t)
	s := serve(t, Options{Auth: ten.authn, Routes: []Route{
		{Model: "iris", Pool: readyPool(t, "iris", rt.client(t)), Labels: map[string]string{"team": "search"}},
	}}, nil)
	snap := ten.snap
	snap.Tenants = []auth.Tenant{{Name: "search", RatePerSecond: 0.001, Burst: 1}, {Name: "other"}}
	snap.Grants = append(snap.Grants, auth.Grant{ID: 3, Tenant: "other", Actions: auth.ActionInfer, Models: []string{"*"}})
	if err := s.g.UpdateAccess(snap); err != nil {
		t.Fatal(err)
	}
	if resp, body := restCall(t, s.rest, "/v2/models/iris/infer", "Bearer "+ten.searchKey); resp.StatusCode != 200 {
		t.Fatalf("first request: %d %s", resp.StatusCode, body)
	}
	resp, body := restCall(t, s.rest, "/v2/models/iris/infer", "Bearer "+ten.searchKey)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "rate limit") {
		t.Fatalf("over the rate: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, body := restCall(t, s.rest, "/v2/models/iris/infer", "Bearer "+ten.otherKey); resp.StatusCode != 200 {
		t.Fatalf("another tenant: %d %s", resp.StatusCode, body)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+ten.searchKey)
	var trailer metadata.MD
	_, err := grpcClient(t, s.grpc).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "iris", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("gRPC over the rate: %v", err)
	}
	if v := trailer.Get("retry-after"); len(v) != 1 || v[0] == "" || v[0] == "0" {
		t.Errorf("gRPC retry-after trailer %q", v)
	}
}

// BenchmarkRESTPassThroughAuth is the pass-through with and without an
// API key to check: their difference is authentication and authorization
// with a cached key.
func BenchmarkRESTPassThroughAuth(b *testing.B) {
	b.Run("off", func(b *testing.B) { benchmarkRESTAuth(b, false) })
	b.Run("key", func(b *testing.B) { benchmarkRESTAuth(b, true) })
}

func benchmarkRESTAuth(b *testing.B, on bool) {
	rt := newFakeRuntime(b, "a")
	ten := newTenants(b)
	authn := ten.authn
	if !on {
		authn = nil
	}
	g, err := New(Options{Auth: authn, Routes: []Route{{Model: "iris", Pool: readyPool(b, "iris", rt.client(b))}}, Registerer: nil})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.UpdateAccess(ten.snap); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`)
	authz := []byte("Bearer " + ten.searchKey)
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v2/models/iris/infer")
		ctx.Request.Header.SetBytesV("Authorization", authz)
		ctx.Request.SetBody(body)
		g.HandleREST(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// TestFairShareUnderFlood: with a revision saturated (room for one
// request) and one tenant's 20 requests waiting, another tenant's request
// is answered after at most one more of the flooding tenant's, not after
// all of them as in arrival order. Counted in answers, not time.
func TestFairShareUnderFlood(t *testing.T) {
	rt := newCredentialRuntime(t)
	rt.released = make(chan struct{})
	ten := newTenants(t)
	fq, err := quota.NewFairQueue(quota.FairQueueOptions{Model: "iris", Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, Options{Auth: ten.authn, Routes: []Route{
		{Model: "iris", Pool: readyPool(t, "iris", rt.client(t)), Fair: fq},
	}}, nil)
	snap := ten.snap
	snap.Grants = append(snap.Grants, auth.Grant{ID: 3, Tenant: "other", Actions: auth.ActionInfer, Models: []string{"*"}})
	if err := s.g.UpdateAccess(snap); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 32)
	send := func(who, key string) {
		go func() {
			resp, body := restCallNoFatal(s.rest, "/v2/models/iris/infer", "Bearer "+key)
			if resp != 200 {
				who += " failed: " + body
			}
			done <- who
		}()
	}
	defer close(rt.released) // whatever the test's end, let the runtime answer
	send("flood", ten.otherKey)
	eventually(t, "the first request at the runtime", func() bool { return rt.calls.Load() == 1 })
	for range 19 {
		send("flood", ten.otherKey)
	}
	eventually(t, "19 requests waiting", func() bool { return fq.Waiting() == 19 })
	send("light", ten.searchKey)
	eventually(t, "20 requests waiting", func() bool { return fq.Waiting() == 20 })
	for answered := 1; ; answered++ {
		rt.released <- struct{}{}
		who := <-done
		if who == "light" {
			// The one in flight when it came, and at most one more.
			if answered > 3 {
				t.Fatalf("the light tenant's request was answered %dth, after %d of the flood", answered, answered-1)
			}
			return
		}
		if who != "flood" {
			t.Fatal(who)
		}
		if answered > 21 {
			t.Fatal("the light tenant's request was never answered")
		}
	}
}

// restCallNoFatal is restCall for goroutines other than the test's.
func restCallNoFatal(addr, path, authorization string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]}`))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestModelQuota: a model's own bound applies to every caller, with or
// without authentication.
func TestModelQuota(t *testing.T) {
	rt := newCredentialRuntime(t)
	s := serve(t, Options{Routes: []Route{
		{Model: "iris", Pool: readyPool(t, "iris", rt.client(t)), Limit: quota.Limit{RatePerSecond: 0.001, Burst: 1}},
		{Model: "digits", Pool: readyPool(t, "digits", rt.client(t))},
	}}, nil)
	if resp, body := restCall(t, s.rest, "/v2/models/iris/infer", ""); resp.StatusCode != 200 {
		t.Fatalf("first: %d %s", resp.StatusCode, body)
	}
	resp, body := restCall(t, s.rest, "/v2/models/iris/infer", "")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "iris") {
		t.Fatalf("over the model's rate: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, body := restCall(t, s.rest, "/v2/models/digits/infer", ""); resp.StatusCode != 200 {
		t.Fatalf("another model: %d %s", resp.StatusCode, body)
	}
}

// TestFairShareHonoursPriority: among one tenant's waiting requests, a
// higher OIP priority (1) goes before the default, over REST and gRPC.
func TestFairShareHonoursPriority(t *testing.T) {
	rt := newCredentialRuntime(t)
	rt.released = make(chan struct{})
	fq, err := quota.NewFairQueue(quota.FairQueueOptions{Model: "iris", Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, Options{Routes: []Route{{Model: "iris", Pool: readyPool(t, "iris", rt.client(t)), Fair: fq}}}, nil)
	defer close(rt.released)
	done := make(chan string, 8)
	post := func(who, params string) {
		go func() {
			body := `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]}]` + params + `}`
			resp, err := http.Post("http://"+s.rest+"/v2/models/iris/infer", "application/json", strings.NewReader(body))
			if err != nil {
				done <- who + " failed: " + err.Error()
				return
			}
			resp.Body.Close()
			done <- who
		}()
	}
	gc := grpcClient(t, s.grpc)
	grpcInfer := func(who string, prio int64) {
		go func() {
			req := &pb.ModelInferRequest{ModelName: "iris", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
				Name: "x", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}}
			if prio > 0 {
				req.Parameters = map[string]*pb.InferParameter{"priority": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: prio}}}
			}
			if _, err := gc.ModelInfer(context.Background(), req); err != nil {
				who += " failed: " + err.Error()
			}
			done <- who
		}()
	}
	post("first", "")
	eventually(t, "the first request at the runtime", func() bool { return rt.calls.Load() == 1 })
	post("rest-default", "")
	eventually(t, "one waiting", func() bool { return fq.Waiting() == 1 })
	grpcInfer("grpc-default", 0)
	eventually(t, "two waiting", func() bool { return fq.Waiting() == 2 })
	post("rest-urgent", `,"parameters":{"priority":1}`)
	eventually(t, "three waiting", func() bool { return fq.Waiting() == 3 })
	grpcInfer("grpc-urgent", 1)
	eventually(t, "four waiting", func() bool { return fq.Waiting() == 4 })
	var order []string
	for range 5 {
		rt.released <- struct{}{}
		order = append(order, <-done)
	}
	if want := "first rest-urgent grpc-urgent rest-default grpc-default"; strings.Join(order, " ") != want {
		t.Errorf("answered in the order %v, want %s", order, want)
	}
}

// TestUnauthenticatedBodyTakesNoRoom: with authentication on, a request
// without a credential is answered 401 from its headers, before its body
// is read or room is taken for it, so unknown callers cannot fill the
// in-flight byte bound.
func TestUnauthenticatedBodyTakesNoRoom(t *testing.T) {
	rt := newCredentialRuntime(t)
	ten := newTenants(t)
	s := serve(t, Options{Auth: ten.authn, MaxInFlightBytes: 64 << 20, Routes: []Route{
		{Model: "iris", Pool: readyPool(t, "iris", rt.client(t))},
	}}, nil)
	if err := s.g.UpdateAccess(ten.snap); err != nil {
		t.Fatal(err)
	}
	// Headers announcing a 64 MiB body, and its first 8 KiB (what fasthttp
	// reads with the headers): the answer must not wait for the rest.
	c := dial(t, s.rest)
	if _, err := c.Write([]byte("POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n" + strings.Repeat(" ", 8<<10))); err != nil {
		t.Fatal(err)
	}
	resp := readResponse(t, c)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401 before the body", resp.StatusCode)
	}
	if got := metricValue(t, s.reg, "infergate_gateway_in_flight_request_bytes"); got != 0 {
		t.Errorf("%v bytes in flight for a caller refused", got)
	}
}
