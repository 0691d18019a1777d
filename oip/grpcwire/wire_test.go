package grpcwire

import (
	"testing"
	"time"
)

func TestTimeoutRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{1, 999, time.Microsecond + 1, 250 * time.Millisecond, 2 * time.Second, 90 * time.Minute, 1000 * time.Hour} {
		s := EncodeTimeout(d)
		if len(s) > maxTimeoutDigits+1 {
			t.Fatalf("EncodeTimeout(%v) = %q: more than 8 digits", d, s)
		}
		got, err := DecodeTimeout(s)
		if err != nil {
			t.Fatalf("DecodeTimeout(%q): %v", s, err)
		}
		if got < d {
			t.Fatalf("EncodeTimeout(%v) = %q reads back as %v: less time than was left", d, s, got)
		}
	}
	var buf [16]byte
	if a := testing.AllocsPerRun(100, func() { _ = AppendTimeout(buf[:0], 250*time.Millisecond) }); a != 0 {
		t.Errorf("AppendTimeout into a buffer with room allocates %v times", a)
	}
	if EncodeTimeout(0) != "1n" || EncodeTimeout(-time.Second) != "1n" {
		t.Fatal("a spent deadline must still encode as a valid timeout")
	}
}

func TestDecodeTimeoutRefuses(t *testing.T) {
	for _, s := range []string{"", "S", "1", "1x", "123456789S", "-1S", "1.5S"} {
		if _, err := DecodeTimeout(s); err == nil {
			t.Errorf("DecodeTimeout(%q) accepted", s)
		}
	}
	if d, err := DecodeTimeout("99999999H"); err != nil || d <= 0 {
		t.Errorf("DecodeTimeout(99999999H) = %v, %v: want a large positive duration", d, err)
	}
}

func TestMessageEncoding(t *testing.T) {
	for msg, want := range map[string]string{
		"model \"iris\" not found": "model \"iris\" not found",
		"100% sure":                "100%25 sure",
		"line\nbreak":              "line%0Abreak",
		"café":                     "caf%C3%A9",
	} {
		if got := EncodeMessage(msg); got != want {
			t.Errorf("EncodeMessage(%q) = %q, want %q", msg, got, want)
		}
		if got := DecodeMessage(want); got != msg {
			t.Errorf("DecodeMessage(%q) = %q, want %q", want, got, msg)
		}
	}
	if got := DecodeMessage("bad %zz and %4"); got != "bad %zz and %4" {
		t.Errorf("a malformed escape must be kept: got %q", got)
	}
}

func TestPrefix(t *testing.T) {
	b := AppendPrefix(nil, 300, true)
	c, n, err := ParsePrefix(b)
	if err != nil || !c || n != 300 {
		t.Fatalf("ParsePrefix(AppendPrefix(300, true)) = %v %d %v", c, n, err)
	}
	if _, _, err := ParsePrefix([]byte{2, 0, 0, 0, 1}); err == nil {
		t.Fatal("an unknown flag must be refused")
	}
	if _, _, err := ParsePrefix([]byte{0, 0}); err == nil {
		t.Fatal("a short prefix must be refused")
	}
}
