package auth

import (
	"crypto/sha256"
	"regexp"
	"strings"
	"testing"
	"time"
)

var tokenForm = regexp.MustCompile(`^igk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`)

func TestNewKey(t *testing.T) {
	exp := t0.Add(24 * time.Hour)
	tok, k, err := NewKey("team-a", "ci", exp)
	if err != nil {
		t.Fatal(err)
	}
	if !tokenForm.MatchString(tok) {
		t.Fatalf("token %q is not of the form igk_<16 hex>_<43 base64url>", tok)
	}
	id, secret, err := ParseKey(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id != k.ID || k.Tenant != "team-a" || k.Name != "ci" || !k.Expires.Equal(exp) || k.Created.IsZero() {
		t.Errorf("key = %+v, id %q", k, id)
	}
	if k.Hash != sha256.Sum256([]byte(secret)) {
		t.Error("Hash is not the SHA-256 of the secret's text")
	}
	if !k.Matches(secret) {
		t.Error("Matches(own secret) = false")
	}
	other := []byte(secret)
	other[0] ^= 1
	if k.Matches(string(other)) || k.Matches("") || k.Matches(secret+"A") {
		t.Error("Matches accepts another secret")
	}
	tok2, k2, _ := NewKey("team-a", "ci", time.Time{})
	if tok2 == tok || k2.ID == k.ID {
		t.Error("two keys are the same")
	}
	for _, bad := range []string{"", "Team", "-a", "a-", "a_b", strings.Repeat("a", 64)} {
		if _, _, err := NewKey(bad, "x", time.Time{}); err == nil {
			t.Errorf("NewKey(tenant %q) succeeded", bad)
		}
	}
}

func TestParseKeyMalformed(t *testing.T) {
	good, _, _ := NewKey("t", "x", time.Time{})
	mut := func(i int, c byte) string {
		b := []byte(good)
		b[i] = c
		return string(b)
	}
	tests := []struct{ name, tok string }{
		{"empty", ""},
		{"prefix only", "igk_"},
		{"wrong prefix", "igx" + good[3:]},
		{"upper prefix", "IGK" + good[3:]},
		{"short", good[:len(good)-1]},
		{"long", good + "A"},
		{"upper hex id", mut(4, 'A')},
		{"non-hex id", mut(5, 'g')},
		{"no separator", mut(20, '-')},
		{"padding in secret", mut(len(good)-1, '=')},
		{"plus in secret", mut(30, '+')},
		{"slash in secret", mut(30, '/')},
		{"space in secret", mut(30, ' ')},
		{"nul", mut(25, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, secret, err := ParseKey(tc.tok)
			if err == nil {
				t.Fatalf("ParseKey(%q) = %q, %q; want an error", tc.tok, id, secret)
			}
			if len(tc.tok) > 24 && strings.Contains(err.Error(), tc.tok[24:]) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"BeArEr \t abc  ", "abc", true},
		{"  Bearer abc", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"Bearer a b", "", false},
		{"Bearer a\x00b", "", false},
		{"Bearer a\x7fb", "", false},
		{"", "", false},
		{"abc", "", false},
		{"Bearex abc", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := BearerToken([]byte(tc.in))
			if string(got) != tc.want || ok != tc.ok {
				t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
			gotS, okS := BearerTokenString(tc.in)
			if gotS != string(got) || okS != ok {
				t.Errorf("BearerTokenString(%q) = %q, %v; BearerToken gives %q, %v", tc.in, gotS, okS, got, ok)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { BearerTokenString("Bearer abc") }); n != 0 {
		t.Errorf("BearerTokenString allocates %v times", n)
	}
}

func TestActionString(t *testing.T) {
	tests := []struct {
		a    Action
		want string
	}{
		{0, "none"},
		{ActionInfer, "infer"},
		{ActionInfer | ActionMetadata, "infer+metadata"},
		{ActionAdmin | ActionCommand, "admin+command"},
		{ActionMetrics | 1<<10, "metrics+0x400"},
	}
	for _, tc := range tests {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("%d.String() = %q, want %q", uint16(tc.a), got, tc.want)
		}
		if tc.a != 0 && tc.a&^allActions == 0 {
			if back, err := ParseAction(tc.want); err != nil || back != tc.a {
				t.Errorf("ParseAction(%q) = %v, %v", tc.want, back, err)
			}
		}
	}
	if a, err := ParseAction("infer, metadata"); err != nil || a != ActionInfer|ActionMetadata {
		t.Errorf("ParseAction(infer, metadata) = %v, %v", a, err)
	}
	for _, bad := range []string{"", ",", "write", "infer,x"} {
		if _, err := ParseAction(bad); err == nil {
			t.Errorf("ParseAction(%q) succeeded", bad)
		}
	}
}

// FuzzParseKey checks that the token parser never panics and accepts only
// tokens of the documented form.
func FuzzParseKey(f *testing.F) {
	good, _, _ := NewKey("t", "x", time.Time{})
	for _, s := range []string{good, "", "igk_", "igk__", good[:40], good + "x", strings.ToUpper(good), "igk_0123456789abcdef_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, secret, err := ParseKey(tok)
		if err != nil {
			if id != "" || secret != "" {
				t.Errorf("ParseKey(%q) failed but returned %q, %q", tok, id, secret)
			}
			return
		}
		if !tokenForm.MatchString(tok) || tok != KeyPrefix+id+"_"+secret {
			t.Errorf("ParseKey(%q) accepted a token not of the form", tok)
		}
	})
}
