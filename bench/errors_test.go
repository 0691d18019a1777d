package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorKind(t *testing.T) {
	long := strings.Repeat("é", 150)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"status with message", statusError(404, []byte(`{"error":"model \"nope\" not found"}`)), `HTTP 404: model "nope" not found`},
		{"status without JSON body", statusError(502, []byte("<html>bad gateway</html>")), "HTTP 502"},
		{"status with a long message", statusError(400, []byte(`{"error":"`+long+`"}`)), "HTTP 400: " + strings.Repeat("é", 100) + "..."},
		{"wrapped status", fmt.Errorf("x: %w", &StatusError{Code: 503}), "HTTP 503"},
		{"gRPC status", status.Error(codes.NotFound, `model "nope" not found`), `gRPC NotFound: model "nope" not found`},
		{"fasthttp timeout", fasthttp.ErrTimeout, "timeout"},
		{"context deadline", context.DeadlineExceeded, "timeout"},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection refused"},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, "connection reset"},
		{"closed", fasthttp.ErrConnectionClosed, "connection closed"},
		{"eof", io.EOF, "connection closed"},
		{"other dial error", &net.OpError{Op: "dial", Err: errors.New("no route")}, "dial: no route"},
		{"anything else", errors.New("odd"), "odd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ErrorKind(tc.err); got != tc.want {
				t.Errorf("ErrorKind = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestErrorTallyIsBounded(t *testing.T) {
	var tally errorTally
	for i := range 3 * maxErrorKinds {
		tally.add(fmt.Sprintf("kind %d", i), 1)
	}
	tally.add("kind 0", 5)
	if len(tally) != maxErrorKinds+1 {
		t.Errorf("%d kinds kept, want %d and %q", len(tally), maxErrorKinds, otherErrors)
	}
	got := tally.sorted()
	if got[0].Kind != otherErrors || got[0].Count != 2*maxErrorKinds || got[1].Kind != "kind 0" || got[1].Count != 6 {
		t.Errorf("sorted: %+v %+v", got[0], got[1])
	}
}
