package tracing

import (
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

func TestParseTraceParent(t *testing.T) {
	valid := "00-" + testTraceID + "-" + testSpanID + "-01"
	tests := []struct {
		name      string
		in        string
		wantFlags trace.TraceFlags
		wantErr   error // nil: valid
	}{
		{name: "version 00 sampled", in: valid, wantFlags: FlagSampled},
		{name: "version 00 not sampled", in: "00-" + testTraceID + "-" + testSpanID + "-00"},
		{name: "random flag kept", in: "00-" + testTraceID + "-" + testSpanID + "-03", wantFlags: FlagSampled | FlagRandom},
		{name: "unknown flags ignored", in: "00-" + testTraceID + "-" + testSpanID + "-09", wantFlags: FlagSampled},
		{name: "surrounding spaces and tabs", in: " \t" + valid + "\t ", wantFlags: FlagSampled},
		{name: "later version, same length", in: "cc-" + testTraceID + "-" + testSpanID + "-01", wantFlags: FlagSampled},
		{name: "later version, more fields", in: "cc-" + testTraceID + "-" + testSpanID + "-01-what-the-future-will-be-like", wantFlags: FlagSampled},
		{name: "later version keeps only sampled", in: "01-" + testTraceID + "-" + testSpanID + "-03", wantFlags: FlagSampled},

		{name: "empty", in: "", wantErr: errShort},
		{name: "short", in: valid[:54], wantErr: errShort},
		{name: "version ff", in: "ff-" + testTraceID + "-" + testSpanID + "-01", wantErr: errVersion},
		{name: "upper-case version", in: "0A-" + testTraceID + "-" + testSpanID + "-01", wantErr: errVersion},
		{name: "version not hex", in: "0g-" + testTraceID + "-" + testSpanID + "-01", wantErr: errVersion},
		{name: "version 00 with more", in: valid + "-what-the-future-will-be-like", wantErr: errV00Length},
		{name: "version 00 one more char", in: valid + "0", wantErr: errV00Length},
		{name: "later version, no dash after flags", in: "cc-" + testTraceID + "-" + testSpanID + "-01.what", wantErr: errFuture},
		{name: "underscore delimiters", in: "00_" + testTraceID + "_" + testSpanID + "_01", wantErr: errDelimiter},
		{name: "upper-case trace-id", in: "00-" + strings.ToUpper(testTraceID) + "-" + testSpanID + "-01", wantErr: errTraceID},
		{name: "trace-id not hex", in: "00-" + "4bf92f3577b34da6a3ce929d0e0e473z" + "-" + testSpanID + "-01", wantErr: errTraceID},
		{name: "zero trace-id", in: "00-" + strings.Repeat("0", 32) + "-" + testSpanID + "-01", wantErr: errZeroTraceID},
		{name: "upper-case parent-id", in: "00-" + testTraceID + "-" + strings.ToUpper(testSpanID) + "-01", wantErr: errSpanID},
		{name: "zero parent-id", in: "00-" + testTraceID + "-" + strings.Repeat("0", 16) + "-01", wantErr: errZeroSpanID},
		{name: "flags not hex", in: "00-" + testTraceID + "-" + testSpanID + "-0x", wantErr: errFlags},
		{name: "upper-case flags", in: "00-" + testTraceID + "-" + testSpanID + "-0A", wantErr: errFlags},
		{name: "short trace-id, long parent-id", in: "00-" + testTraceID[:31] + "-" + testSpanID + "0-01", wantErr: errDelimiter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, parse := range []struct {
				name string
				fn   func(string) (TraceParent, error)
			}{
				{"bytes", func(s string) (TraceParent, error) { return ParseTraceParent([]byte(s)) }},
				{"string", ParseTraceParentString},
			} {
				tp, err := parse.fn(tc.in)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrInvalidTraceParent) {
						t.Errorf("%s: error %v, want %v", parse.name, err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", parse.name, err)
				}
				if got := tp.TraceID.String(); got != testTraceID {
					t.Errorf("%s: trace id %s, want %s", parse.name, got, testTraceID)
				}
				if got := tp.SpanID.String(); got != testSpanID {
					t.Errorf("%s: span id %s, want %s", parse.name, got, testSpanID)
				}
				if tp.Flags != tc.wantFlags {
					t.Errorf("%s: flags %02x, want %02x", parse.name, tp.Flags, tc.wantFlags)
				}
			}
		})
	}
}

func TestTraceParentFormat(t *testing.T) {
	tp, err := ParseTraceParentString("cc-" + testTraceID + "-" + testSpanID + "-01-future")
	if err != nil {
		t.Fatal(err)
	}
	want := "00-" + testTraceID + "-" + testSpanID + "-01"
	if got := tp.String(); got != want {
		t.Errorf("String() = %q, want %q (a later version is written as 00)", got, want)
	}
	child := tp.Child(trace.SpanID{0, 0, 0, 0, 0, 0, 0, 7})
	if got, want := child.String(), "00-"+testTraceID+"-0000000000000007-01"; got != want {
		t.Errorf("Child: %q, want %q", got, want)
	}
	tp.Flags = 0xff
	if got := tp.String(); !strings.HasSuffix(got, "-03") {
		t.Errorf("flags 0xff written as %q, want unknown bits cleared (-03)", got)
	}
}

func TestNewIDsAreValid(t *testing.T) {
	for range 100 {
		if !NewTraceID().IsValid() || !NewSpanID().IsValid() {
			t.Fatal("zero id")
		}
	}
}

func TestTraceParentAllocatesNothing(t *testing.T) {
	v := []byte("00-" + testTraceID + "-" + testSpanID + "-01")
	s := string(v)
	var buf [TraceParentLen]byte
	allocs := testing.AllocsPerRun(100, func() {
		tp, err := ParseTraceParent(v)
		if err != nil {
			panic(err)
		}
		if _, err := ParseTraceParentString(s); err != nil {
			panic(err)
		}
		if _, err := ParseTraceParent(v[:40]); err == nil {
			panic("short traceparent parsed")
		}
		_ = tp.AppendTo(buf[:0])
	})
	if allocs != 0 {
		t.Errorf("parse and format allocate %v times, want 0", allocs)
	}
}

func FuzzParseTraceParent(f *testing.F) {
	f.Add("00-" + testTraceID + "-" + testSpanID + "-01")
	f.Add("cc-" + testTraceID + "-" + testSpanID + "-01-what-the-future-will-be-like")
	f.Add("ff-" + testTraceID + "-" + testSpanID + "-01")
	f.Add(" 00-" + testTraceID + "-" + testSpanID + "-00\t")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		tp, err := ParseTraceParent([]byte(in))
		tp2, err2 := ParseTraceParentString(in)
		if (err == nil) != (err2 == nil) || tp != tp2 {
			t.Fatalf("bytes and string parses differ: %v %v / %v %v", tp, err, tp2, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidTraceParent) {
				t.Fatalf("error %v does not wrap ErrInvalidTraceParent", err)
			}
			return
		}
		if !tp.TraceID.IsValid() || !tp.SpanID.IsValid() {
			t.Fatalf("%q parsed to a zero id", in)
		}
		out := tp.String()
		if len(out) != TraceParentLen || strings.ToLower(out) != out {
			t.Fatalf("%q written as %q", in, out)
		}
		back, err := ParseTraceParentString(out)
		if err != nil || back != tp {
			t.Fatalf("%q -> %q -> %v, %v; want %v", in, out, back, err, tp)
		}
	})
}

func BenchmarkParseTraceParent(b *testing.B) {
	v := []byte("00-" + testTraceID + "-" + testSpanID + "-01")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTraceParent(v); err != nil {
			b.Fatal(err)
		}
	}
}
