package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/auth"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// es256 is a signing key with its public JWK.
type es256 struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newES256(t *testing.T, kid string) es256 {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return es256{kid, k}
}

func (k es256) sign(t *testing.T, claims map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), k.kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAccessJWT: JWT bearer tokens at both front doors: a good one is
// served under its tenant's grants; a wrong audience, an expired token
// and one signed by a key the JWKS does not hold are 401 and
// UNAUTHENTICATED.
func TestAccessJWT(t *testing.T) {
	good, stranger := newES256(t, "k1"), newES256(t, "k2")
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &good.priv.PublicKey, KeyID: good.kid, Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jwks, b, 0o600); err != nil {
		t.Fatal(err)
	}
	authn, err := auth.New(auth.Options{JWT: &auth.JWTOptions{JWKS: jwks, Issuer: "https://idp.test", Audience: "infergate"}})
	if err != nil {
		t.Fatal(err)
	}
	rt := newCredentialRuntime(t)
	s := serve(t, Options{Auth: authn, Routes: []Route{{Model: "iris", Pool: readyPool(t, "iris", rt.client(t))}}}, nil)
	if err := s.g.UpdateAccess(auth.Snapshot{
		Tenants: []auth.Tenant{{Name: "search"}},
		Grants:  []auth.Grant{{ID: 1, Tenant: "search", Actions: auth.ActionInfer, Models: []string{"iris"}}},
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(over map[string]any) map[string]any {
		c := map[string]any{"iss": "https://idp.test", "aud": "infergate", "sub": "alice", "tenant": "search",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range over {
			c[k] = v
		}
		return c
	}
	grpcc := grpcClient(t, s.grpc)
	for _, tc := range []struct {
		name, token, wantMsg string
		ok                   bool
	}{
		{"good", good.sign(t, claims(nil)), "", true},
		{"wrong audience", good.sign(t, claims(map[string]any{"aud": "someone-else"})), "aud", false},
		{"expired", good.sign(t, claims(map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()})), "expired", false},
		{"unknown signing key", stranger.sign(t, claims(nil)), "k2", false},
		{"unknown tenant", good.sign(t, claims(map[string]any{"tenant": "nobody"})), "nobody", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := restCall(t, s.rest, "/v2/models/iris/infer", "Bearer "+tc.token)
			if tc.ok != (resp.StatusCode == 200) || (!tc.ok && resp.StatusCode != 401) {
				t.Fatalf("REST: %d %s", resp.StatusCode, body)
			}
			if !strings.Contains(body, tc.wantMsg) || strings.Contains(body, tc.token) {
				t.Errorf("REST body %s: want %q and never the token", body, tc.wantMsg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
			_, err := grpcc.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "iris", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
				Name: "x", Datatype: "FP32", Shape: []int64{1, 1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}})
			want := codes.OK
			if !tc.ok {
				want = codes.Unauthenticated
			}
			if status.Code(err) != want {
				t.Errorf("gRPC: %v, want %v", err, want)
			}
		})
	}
}
