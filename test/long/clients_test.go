//go:build long

package long

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	pb "github.com/infergate/infergate/oip/inferencepb"
)

// clients sends requests to one gateway and classifies what comes back.
type clients struct {
	restBase string
	hc       *http.Client
	conn     *grpc.ClientConn
	grpc     pb.GRPCInferenceServiceClient
	// timeout is how long a request may go unanswered before it counts as
	// lost: the gateway's deadline for it plus a grace period.
	timeout time.Duration
}

// rpcTrace follows one gRPC call's current attempt: whether the request
// message went out, and whether the server ended the stream with a status
// of its own (trailers).
type rpcTrace struct{ sent, trailer atomic.Bool }

type traceKey struct{}

// traceHandler is a grpc stats.Handler that fills the call's rpcTrace.
type traceHandler struct{}

func (traceHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (traceHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (traceHandler) HandleConn(context.Context, stats.ConnStats) {}
func (traceHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	tr, _ := ctx.Value(traceKey{}).(*rpcTrace)
	if tr == nil {
		return
	}
	switch s.(type) {
	case *stats.Begin:
		// A new attempt (grpc retries transparently a stream the server
		// never processed): what counts is the last one.
		tr.sent.Store(false)
		tr.trailer.Store(false)
	case *stats.OutPayload:
		tr.sent.Store(true)
	case *stats.InTrailer:
		tr.trailer.Store(true)
	}
}

// newClients returns clients for the gateway at restAddr and grpcAddr,
// keeping up to conns REST connections alive. maxConns, when positive,
// bounds the REST connections open at once: further requests wait for
// one, as behind a client's connection pool.
func newClients(t *testing.T, restAddr, grpcAddr string, conns, maxConns int, timeout time.Duration) *clients {
	t.Helper()
	tr := &http.Transport{
		MaxConnsPerHost:     maxConns,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	conn, err := grpc.NewClient("passthrough:///"+grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(traceHandler{}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	c := &clients{restBase: "http://" + restAddr, hc: &http.Client{Transport: tr}, conn: conn, grpc: pb.NewGRPCInferenceServiceClient(conn), timeout: timeout}
	t.Cleanup(c.close)
	return c
}

func (c *clients) close() {
	c.hc.CloseIdleConnections()
	c.conn.Close()
}

func (c *clients) do(k *reqKind) outcome {
	if k.proto == protoGRPC {
		return c.doGRPC(k)
	}
	return c.doREST(k)
}

// doREST sends a REST request and classifies the result with an
// httptrace: written or not, first answer byte or not.
func (c *clients) doREST(k *reqKind) outcome {
	var wrote, gotByte, reused atomic.Bool
	trace := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused.Store(i.Reused) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
		GotFirstResponseByte: func() { gotByte.Store(true) },
	}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(context.Background(), trace), c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.restBase+k.path, bytes.NewReader(k.body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for h, v := range k.header {
		req.Header.Set(h, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return restFailure(err, ctx.Err() != nil, wrote.Load(), gotByte.Load(), reused.Load(), c.timeout)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return outcome{class: lost, reason: fmt.Sprintf("answer body not complete within %s", c.timeout)}
		}
		return outcome{class: lost, reason: "answer body cut short: " + transportReason(err)}
	}
	return restAnswer(resp.StatusCode, resp.Header.Get("X-Model-Revision"), body)
}

// restFailure classifies a REST request that got no answer.
func restFailure(err error, timedOut, wrote, gotByte, reused bool, timeout time.Duration) outcome {
	conn := "new connection"
	if reused {
		conn = "reused keep-alive connection"
	}
	switch {
	case gotByte:
		return outcome{class: lost, reason: "answer cut short or malformed: " + transportReason(err)}
	case timedOut && wrote:
		return outcome{class: lost, reason: fmt.Sprintf("no answer within %s", timeout)}
	case timedOut:
		return outcome{class: notSent, reason: fmt.Sprintf("could not send within %s", timeout)}
	case wrote:
		return outcome{class: lost, reason: "connection broke after the request was written, before any answer (" + transportReason(err) + ", " + conn + ")"}
	}
	return outcome{class: notSent, reason: transportReason(err) + " (" + conn + ")"}
}

// transportReason names a transport error without addresses.
func transportReason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, syscall.EMFILE):
		return "too many open files (client)"
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil && strings.HasPrefix(err.Error(), "Post ") {
			err = inner
		}
	}
	return foldDigits(err.Error(), 100)
}

// restAnswer checks a complete REST answer.
func restAnswer(code int, revision string, body []byte) outcome {
	o := outcome{class: answered, status: strconv.Itoa(code), revision: revision}
	if code == http.StatusOK {
		if msg := checkRESTResponse(body); msg != "" {
			o.bad = "200 with " + msg
		}
		return o
	}
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || *e.Error == "" {
		o.bad = "error answer not in OIP form ({\"error\": \"...\"})"
		o.reason = foldDigits(string(body), 100)
		return o
	}
	o.reason = foldDigits(*e.Error, 100)
	return o
}

// checkRESTResponse returns what is wrong with an OIP REST infer
// response, "" when it is well-formed: outputs whose data fill their
// shapes.
func checkRESTResponse(body []byte) string {
	var r struct {
		Outputs []struct {
			Name     string          `json:"name"`
			Datatype string          `json:"datatype"`
			Shape    []int64         `json:"shape"`
			Data     json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "a body that is not an OIP response (" + foldDigits(err.Error(), 60) + ")"
	}
	if len(r.Outputs) == 0 {
		return "no outputs"
	}
	for _, o := range r.Outputs {
		if o.Name == "" || o.Datatype == "" {
			return "an output without name or datatype"
		}
		if o.Data == nil {
			continue // binary output: not asked for by these requests
		}
		n, ok := countJSONElements(o.Data)
		if !ok {
			return "an output whose data is not an array"
		}
		if n != product(o.Shape) {
			return fmt.Sprintf("an output whose data (%d elements) does not fill its shape %v", n, o.Shape)
		}
	}
	return ""
}

// countJSONElements counts the leaves of a flat or nested JSON array.
func countJSONElements(raw json.RawMessage) (int64, bool) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, false
	}
	arr, ok := v.([]any)
	if !ok {
		return 0, false
	}
	var n int64
	var walk func([]any)
	walk = func(a []any) {
		for _, e := range a {
			if sub, ok := e.([]any); ok {
				walk(sub)
			} else {
				n++
			}
		}
	}
	walk(arr)
	return n, true
}

func product(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// doGRPC sends a gRPC request with no deadline of its own (so the
// gateway applies the model's timeout) and gives up after c.timeout.
func (c *clients) doGRPC(k *reqKind) outcome {
	tr := &rpcTrace{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), traceKey{}, tr))
	defer cancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(c.timeout, func() { timedOut.Store(true); cancel() })
	defer timer.Stop()
	var hdr metadata.MD
	resp, err := c.grpc.ModelInfer(ctx, k.grpc, grpc.Header(&hdr))
	rev := ""
	if v := hdr.Get("x-model-revision"); len(v) > 0 {
		rev = v[0]
	}
	if err == nil {
		o := outcome{class: answered, status: "OK", revision: rev}
		if msg := checkGRPCResponse(resp); msg != "" {
			o.bad = "OK with " + msg
		}
		return o
	}
	st := status.Convert(err)
	switch {
	case tr.trailer.Load():
		return outcome{class: answered, status: st.Code().String(), reason: foldDigits(st.Message(), 100), revision: rev}
	case timedOut.Load() && tr.sent.Load():
		return outcome{class: lost, reason: fmt.Sprintf("no answer within %s", c.timeout)}
	case timedOut.Load():
		return outcome{class: notSent, reason: fmt.Sprintf("could not send within %s", c.timeout)}
	case tr.sent.Load():
		return outcome{class: lost, reason: "stream broke after the request was sent, with no status from the server (" + st.Code().String() + ": " + grpcTransportReason(st.Message()) + ")"}
	}
	return outcome{class: notSent, reason: st.Code().String() + ": " + grpcTransportReason(st.Message())}
}

// grpcTransportReason shortens a grpc client's transport error message.
func grpcTransportReason(msg string) string {
	for _, s := range []string{"connection refused", "connection reset", "too many open files", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return s
		}
	}
	return foldDigits(msg, 80)
}

// checkGRPCResponse returns what is wrong with a ModelInferResponse, ""
// when its outputs' contents fill their shapes.
func checkGRPCResponse(r *pb.ModelInferResponse) string {
	if len(r.GetOutputs()) == 0 {
		return "no outputs"
	}
	raw := r.GetRawOutputContents()
	for i, o := range r.GetOutputs() {
		want := product(o.GetShape())
		var n int64
		if len(raw) > 0 {
			if i >= len(raw) {
				return "fewer raw_output_contents than outputs"
			}
			size := map[string]int64{"FP32": 4, "FP64": 8, "INT64": 8, "INT32": 4, "UINT8": 1, "INT8": 1, "FP16": 2, "BOOL": 1}[o.GetDatatype()]
			if size == 0 {
				continue
			}
			n = int64(len(raw[i])) / size
		} else {
			c := o.GetContents()
			n = int64(len(c.GetFp32Contents()) + len(c.GetFp64Contents()) + len(c.GetInt64Contents()) + len(c.GetIntContents()) +
				len(c.GetUintContents()) + len(c.GetUint64Contents()) + len(c.GetBoolContents()) + len(c.GetBytesContents()))
		}
		if n != want {
			return fmt.Sprintf("output %q whose contents (%d elements) do not fill its shape %v", o.GetName(), n, o.GetShape())
		}
	}
	return ""
}

// foldDigits shortens s to n bytes and replaces runs of digits with N, so
// that reasons differing only by a port, an address or a count add up.
func foldDigits(s string, n int) string {
	var b strings.Builder
	inDigits := false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if !inDigits {
				b.WriteByte('N')
			}
			inDigits = true
			continue
		}
		inDigits = false
		if r == '\n' || r == '\t' {
			r = ' '
		}
		b.WriteRune(r)
		if b.Len() >= n {
			b.WriteString("...")
			break
		}
	}
	return b.String()
}
