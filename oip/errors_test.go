package oip

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorText(t *testing.T) {
	cause := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", Errorf(KindNotFound, "model %q not found", "m"), `model "m" not found`},
		{"wrapped once", Errorf(KindInternal, "load: %w", cause), "load: boom"},
		{"struct with cause", &Error{Kind: KindUnavailable, Msg: "runtime a:1", Err: cause}, "runtime a:1: boom"},
		{"struct cause only", &Error{Kind: KindUnavailable, Err: cause}, "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
	if !errors.Is(Errorf(KindInternal, "x: %w", cause), cause) {
		t.Error("Errorf with %w does not wrap its cause")
	}
}

func TestStatusMapping(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantHTTP int
		wantGRPC codes.Code
	}{
		{"invalid", Errorf(KindInvalidArgument, "x"), http.StatusBadRequest, codes.InvalidArgument},
		{"not found", Errorf(KindNotFound, "x"), http.StatusNotFound, codes.NotFound},
		{"unavailable", Errorf(KindUnavailable, "x"), http.StatusServiceUnavailable, codes.Unavailable},
		{"deadline", Errorf(KindDeadlineExceeded, "x"), http.StatusGatewayTimeout, codes.DeadlineExceeded},
		{"exhausted", Errorf(KindResourceExhausted, "x"), http.StatusTooManyRequests, codes.ResourceExhausted},
		{"too large", Errorf(KindTooLarge, "x"), http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
		{"internal", Errorf(KindInternal, "x"), http.StatusInternalServerError, codes.Internal},
		{"unimplemented", Errorf(KindUnimplemented, "x"), http.StatusNotImplemented, codes.Unimplemented},
		{"unauthenticated", Errorf(KindUnauthenticated, "x"), http.StatusUnauthorized, codes.Unauthenticated},
		{"permission denied", Errorf(KindPermissionDenied, "x"), http.StatusForbidden, codes.PermissionDenied},
		// An upstream's refusal is the gateway's problem, not the client's.
		{"grpc unauthenticated from upstream", status.Error(codes.Unauthenticated, "x"), http.StatusInternalServerError, codes.Internal},
		{"grpc permission denied from upstream", status.Error(codes.PermissionDenied, "x"), http.StatusInternalServerError, codes.Internal},
		{"plain error", errors.New("x"), http.StatusInternalServerError, codes.Internal},
		{"context deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, codes.DeadlineExceeded},
		{"grpc status", status.Error(codes.NotFound, "nope"), http.StatusNotFound, codes.NotFound},
		{"outer kind wins", &Error{Kind: KindUnavailable, Msg: "r", Err: Errorf(KindInvalidArgument, "x")}, http.StatusServiceUnavailable, codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HTTPStatus(tc.err); got != tc.wantHTTP {
				t.Errorf("HTTPStatus = %d, want %d", got, tc.wantHTTP)
			}
			if got := GRPCCode(tc.err); got != tc.wantGRPC {
				t.Errorf("GRPCCode = %v, want %v", got, tc.wantGRPC)
			}
		})
	}
}

func TestAppendErrorJSON(t *testing.T) {
	got := string(AppendErrorJSON(nil, Errorf(KindInvalidArgument, "input \"x\": bad\n")))
	want := `{"error":"input \"x\": bad\n"}`
	if got != want {
		t.Errorf("AppendErrorJSON = %s, want %s", got, want)
	}
	if s := status.Convert(GRPCStatus(Errorf(KindNotFound, "gone"))); s.Code() != codes.NotFound || s.Message() != "gone" {
		t.Errorf("GRPCStatus = %v %q", s.Code(), s.Message())
	}
}

// TestKindRoundTrip checks that every kind survives a trip through its HTTP
// status and its gRPC code and back, so a kind added to one switch and
// forgotten in another fails here. The authentication kinds are the
// exception: from upstream they mean the runtime refused the gateway.
func TestKindRoundTrip(t *testing.T) {
	for k := KindInternal; k <= KindPermissionDenied; k++ {
		t.Run(k.String(), func(t *testing.T) {
			err := Errorf(k, "x")
			back := k
			if k == KindUnauthenticated || k == KindPermissionDenied {
				back = KindInternal
			}
			if got := KindFromHTTPStatus(HTTPStatus(err)); got != back {
				t.Errorf("KindFromHTTPStatus(HTTPStatus) = %v, want %v", got, back)
			}
			want := back
			if k == KindTooLarge {
				want = KindResourceExhausted // one gRPC code serves both
			}
			if got := KindOf(GRPCStatus(err)); got != want {
				t.Errorf("KindOf(GRPCStatus) = %v, want %v", got, want)
			}
			if strings.HasPrefix(k.String(), "Kind(") {
				t.Errorf("kind %d has no name", uint8(k))
			}
		})
	}
}
