package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/bench"
	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
)

// The targets, in the order of the tables.
const (
	tDirectREST        = "direct-rest"
	tGatewayREST       = "gateway-rest"
	tGatewaySplit      = "gateway-rest-split"
	tGatewayPipe       = "gateway-rest-pipelined"
	tNginx             = "nginx"
	tHAProxy           = "haproxy"
	tGatewayRESTToGRPC = "gateway-rest-to-grpc"
	tDirectGRPC        = "direct-grpc"
	tGatewayGRPC       = "gateway-grpc"
	tNginxGRPC         = "nginx-grpc"
	tHAProxyGRPC       = "haproxy-grpc"
	tGatewayGRPCToREST = "gateway-grpc-to-rest"
)

// targetSpec says what a target is before it is started: the protocol its
// clients speak and whether -targets includes it by default.
type targetSpec struct {
	key, label string
	grpc       bool // the client's protocol
	byDefault  bool
}

// targetSpecs are every target, in the order of the tables. The 90/10
// split is opt-in: it is the router's cost, not a proxy's, and the issue's
// tables do not hold it.
var targetSpecs = []targetSpec{
	{tDirectREST, "direct REST", false, true},
	{tGatewayREST, "gateway REST", false, true},
	{tGatewaySplit, "gateway REST 90/10 split", false, false},
	{tGatewayPipe, "gateway REST pipelined", false, true},
	{tNginx, "nginx", false, true},
	{tHAProxy, "haproxy", false, true},
	{tGatewayRESTToGRPC, "gateway REST -> gRPC runtime", false, true},
	{tDirectGRPC, "direct gRPC", true, true},
	{tGatewayGRPC, "gateway gRPC", true, true},
	{tNginxGRPC, "nginx grpc_pass", true, true},
	{tHAProxyGRPC, "haproxy proto h2", true, true},
	{tGatewayGRPCToREST, "gateway gRPC -> REST runtime", true, true},
}

func specOf(key string) (targetSpec, bool) {
	for _, s := range targetSpecs {
		if s.key == key {
			return s, true
		}
	}
	return targetSpec{}, false
}

func targetKeys(onlyDefault bool) []string {
	var out []string
	for _, s := range targetSpecs {
		if s.byDefault || !onlyDefault {
			out = append(out, s.key)
		}
	}
	return out
}

// target is one way to reach the runtime.
type target struct {
	key, label string
	grpc       bool
	proxy      *proc // nil when direct
	// gateway: the proxy is infergate's gateway, whose admin /metrics is
	// read around each window (allocations, GC cycles).
	gateway bool
	// addr and model are what an outside generator is pointed at.
	addr, model string

	// rest is the REST client of infergate's generator (one for every
	// concurrency: its pool grows as needed); grpcConns builds the gRPC
	// client of a concurrency (as many connections as h2load opens).
	rest      *bench.RESTTarget
	grpcByC   map[int]*bench.GRPCTarget
	grpcConns func(conc int) int
	timeout   time.Duration

	// h2loadBody is the file h2load posts (the length-prefixed request);
	// answerSize is the length-prefixed answer's size in bytes, and
	// h2loadOK says h2load's requests were checked to get it.
	h2loadBody string
	answerSize int64
	h2loadOK   bool
}

func (t *target) baseline() string {
	if t.grpc {
		return tDirectGRPC
	}
	return tDirectREST
}

// client returns infergate's generator for conc concurrent requests.
func (t *target) client(conc int) (bench.Target, error) {
	if !t.grpc {
		return t.rest, nil
	}
	n := t.grpcConns(conc)
	if gt := t.grpcByC[n]; gt != nil {
		return gt, nil
	}
	gt, err := bench.NewGRPCTarget(bench.GRPCOptions{Addr: t.addr, Request: bench.IrisRequestProto(t.model), Timeout: t.timeout, Conns: n})
	if err != nil {
		return nil, err
	}
	t.grpcByC[n] = gt
	return gt, nil
}

func (t *target) close() error {
	var errs []error
	if t.rest != nil {
		errs = append(errs, t.rest.Close())
	}
	for _, gt := range t.grpcByC {
		errs = append(errs, gt.Close())
	}
	return errors.Join(errs...)
}

var errUnexpectedBody = errors.New("the answer's body is not the runtime's")

// addREST adds a REST target whose every answer must be want, byte for
// byte; a nil want is learnt from the first answer, after checking that it
// holds the runtime's outputs (a translated answer is the gateway's own
// encoding of them).
func (d *driver) addREST(key string, p *proc, addr, model string, want []byte) error {
	spec, _ := specOf(key)
	if want == nil {
		var err error
		if want, err = learnRESTAnswer(addr, model, d.f.timeout); err != nil {
			return fmt.Errorf("%s: %w", spec.label, err)
		}
	}
	rt, err := bench.NewRESTTarget(bench.RESTOptions{
		Addr: addr, Model: model, Body: bench.IrisRequestJSON(), Timeout: d.f.timeout,
		Check: func(status int, body []byte) error {
			if status != 200 {
				return &bench.StatusError{Code: status}
			}
			if !bytes.Equal(body, want) {
				return errUnexpectedBody
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	d.targets = append(d.targets, &target{key: key, label: spec.label, proxy: p, gateway: p != nil && p == d.gateway,
		addr: addr, model: model, rest: rt, timeout: d.f.timeout})
	return nil
}

// learnRESTAnswer posts the iris request once and checks that the answer
// is an inference response with the runtime's outputs for model.
func learnRESTAnswer(addr, model string, timeout time.Duration) ([]byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/v2/models/" + model + "/infer")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBody(bench.IrisRequestJSON())
	if err := fasthttp.DoTimeout(req, resp, timeout); err != nil {
		return nil, fmt.Errorf("first request: %w", err)
	}
	body := bytes.Clone(resp.Body())
	if resp.StatusCode() != fasthttp.StatusOK {
		return nil, fmt.Errorf("first request: status %d: %.200s", resp.StatusCode(), body)
	}
	var got, want oip.InferResponse
	if err := oip.DecodeInferResponse(body, -1, &got); err != nil {
		return nil, fmt.Errorf("first request: the answer is not an inference response: %s", oip.Message(err))
	}
	if err := oip.DecodeInferResponse(bench.IrisResponseJSON(model), -1, &want); err != nil {
		return nil, err
	}
	if err := sameResponse(&got, &want); err != nil {
		return nil, fmt.Errorf("first request: %w: %.200s", err, body)
	}
	return body, nil
}

// sameResponse reports whether got has want's model name and exactly its
// outputs, whatever their encoding.
func sameResponse(got, want *oip.InferResponse) error {
	if got.ModelName != want.ModelName {
		return fmt.Errorf("the answer names model %q, not %q", got.ModelName, want.ModelName)
	}
	c := oip.CompareResponses(want, got)
	if len(c.Mismatched) > 0 || c.Outputs != len(want.Outputs) || c.EqualElements != c.Elements {
		return fmt.Errorf("the answer's outputs are not the runtime's (mismatched %v, %d of %d elements equal)",
			c.Mismatched, c.EqualElements, c.Elements)
	}
	return nil
}

// addGRPC adds a gRPC target for model after checking, with one decoded
// call, that the answer through it is the runtime's, and writes the file
// h2load posts.
func (d *driver) addGRPC(ctx context.Context, key string, p *proc, addr, model string) error {
	spec, _ := specOf(key)
	t := &target{key: key, label: spec.label, grpc: true, proxy: p, gateway: p != nil && p == d.gateway,
		addr: addr, model: model, grpcByC: map[int]*bench.GRPCTarget{}, grpcConns: d.grpcConns, timeout: d.f.timeout}
	d.targets = append(d.targets, t)
	gt, err := t.client(1)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := pb.NewGRPCInferenceServiceClient(gt.(*bench.GRPCTarget).Conn()).ModelInfer(cctx, bench.IrisRequestProto(model))
	if err != nil {
		return fmt.Errorf("%s: ModelInfer: %w", t.label, err)
	}
	want := bench.IrisResponseProto(model)
	if !proto.Equal(resp, want) {
		var g, w oip.InferResponse
		if err := oip.ResponseFromProto(resp, &g); err != nil {
			return fmt.Errorf("%s: ModelInfer answered %v: %s", t.label, resp, oip.Message(err))
		}
		if err := oip.ResponseFromProto(want, &w); err != nil {
			return err
		}
		if err := sameResponse(&g, &w); err != nil {
			return fmt.Errorf("%s: ModelInfer: %w: %v", t.label, err, resp)
		}
	}
	t.answerSize = int64(grpcPrefixLen + proto.Size(resp))
	body, err := grpcFrame(bench.IrisRequestProto(model))
	if err != nil {
		return err
	}
	t.h2loadBody = filepath.Join(d.dir, "h2load-"+key+".bin")
	return writeFile(t.h2loadBody, body)
}
