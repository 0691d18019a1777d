package modelserver

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/infergate/infergate/oip"
	pb "github.com/infergate/infergate/oip/inferencepb"
	"github.com/infergate/infergate/oip/rest"
)

// This file serves Triton's model repository extension over REST and gRPC:
//
//	POST /v2/repository/index                 {"ready": bool} optional
//	POST /v2/repository/models/{m}/load       {"parameters": {...}} optional
//	POST /v2/repository/models/{m}/unload     {"parameters": {...}} optional
//
// and RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload. Index
// answers a JSON array of ModelIndex; load and unload answer 200 with an
// empty body once done. Triton's named-repository forms
// (/v2/repository/{r}/..., repository_name) are unimplemented: this server
// has one repository.

var prefixRepository = []byte("/v2/repository/")

const maxRepositoryBody = 1 << 20

// handleRepository serves a request whose path starts with /v2/repository/.
func (s *Server) handleRepository(ctx *fasthttp.RequestCtx) {
	op, repo, model, ok := parseRepositoryPath(string(ctx.Path()))
	if !ok {
		rest.WriteError(ctx, oip.Errorf(oip.KindNotFound, "no repository endpoint at %s %q", ctx.Method(), ctx.Path()))
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		rest.WriteError(ctx, oip.Errorf(oip.KindNotFound, "%s %q: use POST", ctx.Method(), ctx.Path()))
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	if err := s.repositoryAPI(repo); err != nil {
		rest.WriteError(ctx, err)
		return
	}
	var body struct {
		Ready      bool                       `json:"ready"`
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if b := bytes.TrimSpace(ctx.Request.Body()); len(b) > 0 {
		if len(b) > maxRepositoryBody {
			rest.WriteError(ctx, oip.Errorf(oip.KindTooLarge, "repository request body of %d bytes is over %d", len(b), maxRepositoryBody))
			return
		}
		if err := json.Unmarshal(b, &body); err != nil {
			rest.WriteError(ctx, oip.Errorf(oip.KindInvalidArgument, "repository request body: %w", err))
			return
		}
	}
	var err error
	switch op {
	case "index":
		rest.WriteJSON(ctx, s.Index(body.Ready))
		return
	case "load":
		if err = checkLoadParameters(body.Parameters); err == nil {
			// fasthttp gives no context that ends when the client goes: a
			// load runs to its end, as Triton's does.
			err = s.LoadModel(context.Background(), model)
		}
	case "unload":
		err = s.UnloadModel(context.Background(), model)
	}
	if err != nil {
		rest.WriteError(ctx, err)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
}

// parseRepositoryPath parses /v2/repository[/{repo}]/index and
// /v2/repository[/{repo}]/models/{model}/{load|unload}.
func parseRepositoryPath(path string) (op, repo, model string, ok bool) {
	segs := strings.Split(strings.TrimPrefix(path, string(prefixRepository)), "/")
	if len(segs) == 2 || len(segs) == 4 {
		repo, segs = segs[0], segs[1:]
		if repo == "" {
			return "", "", "", false
		}
	}
	switch {
	case len(segs) == 1 && segs[0] == "index":
		return "index", repo, "", true
	case len(segs) == 3 && segs[0] == "models" && segs[1] != "" && (segs[2] == "load" || segs[2] == "unload"):
		return segs[2], repo, segs[1], true
	}
	return "", "", "", false
}

// repositoryAPI says whether the repository extension answers a request
// naming the repository repo.
func (s *Server) repositoryAPI(repo string) error {
	if s.opts.DisableRepositoryAPI {
		return oip.Errorf(oip.KindUnimplemented, "the model repository extension is disabled on this server")
	}
	if repo != "" {
		return oip.Errorf(oip.KindUnimplemented, "repository %q: naming a repository is not supported; this server has one, leave the name empty", repo)
	}
	return nil
}

// checkLoadParameters rejects the load parameters Triton defines and this
// server cannot honour (a config override, model files in the request);
// silently ignoring them would load something other than what was asked.
// Other parameters are ignored.
func checkLoadParameters[V any](params map[string]V) error {
	for k := range params {
		if k == "config" || strings.HasPrefix(k, "file:") {
			return oip.Errorf(oip.KindUnimplemented, "load parameter %q is not supported: models load only from the repository directory", k)
		}
	}
	return nil
}

// grpcRepositoryAPI checks a gRPC load or unload request. A KServe client's
// RepositoryModelLoadRequest{model_name = 1} arrives here with its model
// name in repository_name (Triton's field 1) and model_name empty: say so,
// rather than that repositories cannot be named.
func (s *Server) grpcRepositoryAPI(repo, model string) error {
	if repo != "" && model == "" {
		return oip.Errorf(oip.KindInvalidArgument, "model_name is empty and repository_name is %q: this server speaks Triton's repository messages (model_name is field 2), not KServe's", repo)
	}
	return s.repositoryAPI(repo)
}

func (g grpcService) RepositoryIndex(_ context.Context, r *pb.RepositoryIndexRequest) (*pb.RepositoryIndexResponse, error) {
	if err := g.s.repositoryAPI(r.GetRepositoryName()); err != nil {
		return nil, oip.GRPCStatus(err)
	}
	idx := g.s.Index(r.GetReady())
	resp := &pb.RepositoryIndexResponse{Models: make([]*pb.RepositoryIndexResponse_ModelIndex, len(idx))}
	for i, m := range idx {
		resp.Models[i] = &pb.RepositoryIndexResponse_ModelIndex{Name: m.Name, Version: m.Version, State: m.State, Reason: m.Reason}
	}
	return resp, nil
}

func (g grpcService) RepositoryModelLoad(ctx context.Context, r *pb.RepositoryModelLoadRequest) (*pb.RepositoryModelLoadResponse, error) {
	if err := g.s.grpcRepositoryAPI(r.GetRepositoryName(), r.GetModelName()); err != nil {
		return nil, oip.GRPCStatus(err)
	}
	if err := checkLoadParameters(r.GetParameters()); err != nil {
		return nil, oip.GRPCStatus(err)
	}
	if err := g.s.LoadModel(ctx, r.GetModelName()); err != nil {
		return nil, oip.GRPCStatus(err)
	}
	return &pb.RepositoryModelLoadResponse{}, nil
}

func (g grpcService) RepositoryModelUnload(ctx context.Context, r *pb.RepositoryModelUnloadRequest) (*pb.RepositoryModelUnloadResponse, error) {
	if err := g.s.grpcRepositoryAPI(r.GetRepositoryName(), r.GetModelName()); err != nil {
		return nil, oip.GRPCStatus(err)
	}
	if err := g.s.UnloadModel(ctx, r.GetModelName()); err != nil {
		return nil, oip.GRPCStatus(err)
	}
	return &pb.RepositoryModelUnloadResponse{}, nil
}
