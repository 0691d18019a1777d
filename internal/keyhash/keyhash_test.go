package keyhash

import (
	"hash/fnv"
	"testing"
)

// TestBytes pins Bytes to FNV-1a, which other processes and releases must
// reproduce, and checks that it does not allocate.
func TestBytes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64 // 0: as hash/fnv's New64a
	}{
		{name: "empty", in: "", want: 0xcbf29ce484222325},
		{name: "one byte", in: "a", want: 0xaf63dc4c8601ec8c},
		{name: "session id", in: "3f2a9c1e-7b4d-4e8a-9f01-23456789abcd"},
		{name: "binary", in: "\x00\xff\x10 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want == 0 {
				h := fnv.New64a()
				h.Write([]byte(tc.in))
				want = h.Sum64()
			}
			if got := Bytes([]byte(tc.in)); got != want {
				t.Errorf("Bytes(%q) = %#x, want %#x", tc.in, got, want)
			}
			if got := String(Offset, tc.in); got != want {
				t.Errorf("String(Offset, %q) = %#x, want %#x", tc.in, got, want)
			}
		})
	}
	b := []byte("3f2a9c1e-7b4d-4e8a-9f01-23456789abcd")
	if a := testing.AllocsPerRun(100, func() { _ = Bytes(b) }); a != 0 {
		t.Errorf("Bytes allocates %v times per call, want 0", a)
	}
}

// TestMix checks the finalizer against splitmix64's published first
// output for seed 0 (the state advanced once by the golden gamma).
func TestMix(t *testing.T) {
	if got, want := Mix(0x9e3779b97f4a7c15), uint64(0xe220a8397b1dcdaf); got != want {
		t.Fatalf("Mix(gamma) = %#x, want %#x", got, want)
	}
	if Mix(1) == Mix(2) {
		t.Fatal("Mix is not a bijection")
	}
}

func BenchmarkBytes(b *testing.B) {
	s := []byte("3f2a9c1e-7b4d-4e8a-9f01-23456789abcd")
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	var sink uint64
	for b.Loop() {
		sink += Bytes(s)
	}
	_ = sink
}
