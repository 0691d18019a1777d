package runtimes

import (
	"hash/fnv"
	"testing"
)

// TestHashKey pins HashKey to FNV-1a, which other processes and releases
// must reproduce, and checks that it does not allocate.
func TestHashKey(t *testing.T) {
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
			if got := HashKey([]byte(tc.in)); got != want {
				t.Errorf("HashKey(%q) = %#x, want %#x", tc.in, got, want)
			}
		})
	}
	b := []byte("3f2a9c1e-7b4d-4e8a-9f01-23456789abcd")
	if a := testing.AllocsPerRun(100, func() { _ = HashKey(b) }); a != 0 {
		t.Errorf("HashKey allocates %v times per call, want 0", a)
	}
}

func BenchmarkHashKey(b *testing.B) {
	s := []byte("3f2a9c1e-7b4d-4e8a-9f01-23456789abcd")
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	var sink uint64
	for b.Loop() {
		sink += HashKey(s)
	}
	_ = sink
}
