# infergate: make run starts the gateway on its embedded default; make test runs the tests.
GO        ?= go
BIN       := bin/infergate
TOOLS     := $(CURDIR)/bin/tools
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: all build run test test-postgres test-race test-long fuzz fuzz-ci bench bench-generator bench-batching bench-coldstart bench-registry proto models vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/infergate

run: build
	./$(BIN) serve

# The unit and integration tests, the fuzz seed corpora and the import-direction
# check. Bounded to run well under 15 minutes on 2 cores.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 12m ./...

# The store's test suites against a real PostgreSQL (make test runs them
# on SQLite only): scripts/with-postgres starts a throwaway server from
# Debian's postgresql package on a loopback port in a temporary directory,
# names its empty database in INFERGATE_TEST_POSTGRES, and stops and
# removes it afterwards. POSTGRES_PKGS lists the packages whose tests use it.
POSTGRES_PKGS ?= ./registry/... ./controlplane/... ./pipelines/...
test-postgres:
	./scripts/with-postgres $(GO) test -count=1 -timeout 12m $(POSTGRES_PKGS)

# The tests under the race detector, the binaries they start included
# (slower than make test; not part of it).
test-race:
	$(GO) test -race -count=1 -timeout 30m ./...

# The long robustness suite (test/long, build tag long): the real
# infergate serve on loopback with real runtime processes, under replica
# kills, hangs, garbage, reloads, SIGTERM, floods and a soak at 70% of
# measured capacity; every case asserts that no request is lost. Not part
# of make test. LONG_SOAK sets the soak (LONG_SOAK=1m to try it out);
# the summary table goes to LONG_SUMMARY; LONG_TIMEOUT must exceed the
# soak by half an hour. About 8.5 minutes plus the soak.
LONG_SOAK    ?= 20m
LONG_SUMMARY ?= $(CURDIR)/bin/test-long-summary.md
LONG_TIMEOUT ?= 60m
test-long:
	@mkdir -p $(dir $(LONG_SUMMARY))
	LONG_SOAK=$(LONG_SOAK) LONG_SUMMARY=$(LONG_SUMMARY) \
		$(GO) test -tags long -count=1 -v -timeout $(LONG_TIMEOUT) -run '^TestLong$$' ./test/long
	INFERGATE_TEST_IMAGE=1 $(GO) test -count=1 -run '^TestImageBinary$$' ./cmd/infergate

# The tests against a real Kubernetes API server (test/k8s, build tag
# k8s): kube-apiserver and etcd on 127.0.0.1, started by the tests and
# stopped after them. scripts/k8s-binaries.sh builds both from the Go
# module proxy the first time (about 12 minutes and 2.7 GB of memory on
# 2 cores) into ~/.cache/infergate/k8s/<version>/ (XDG_CACHE_HOME or
# INFERGATE_K8S_CACHE move it) and reuses them after that; they are tools,
# not dependencies, and never enter go.mod. Not part of make test.
.PHONY: test-k8s
test-k8s:
	@assets="$$(./scripts/k8s-binaries.sh)" && echo "KUBEBUILDER_ASSETS=$$assets" && \
		KUBEBUILDER_ASSETS="$$assets" $(GO) test -tags k8s -count=1 -timeout 15m ./test/k8s/...

# Fuzzing of every fuzz target in the tree (every decoder and config
# parser: each func FuzzXxx in a _test.go file, found anew at each run);
# not part of make test, which runs only their seed corpora. FUZZTIME per
# target. fuzz-ci is the same with 5s per target, for CI.
FUZZTIME ?= 60s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
		pkg=./$$(dirname $${f#./}); \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "$(GO) test $$pkg -run '^\$$' -fuzz '^$$fn\$$' -fuzztime $(FUZZTIME)"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) || { \
				echo "$$fn: once more (a found crasher is in testdata/fuzz and fails again; the engine's own 'context deadline exceeded' on a loaded machine does not)"; \
				$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); }; \
		done; \
	done

fuzz-ci:
	$(MAKE) fuzz FUZZTIME=5s

# End-to-end comparisons on loopback (see bench/README.md), bounded in
# time: the load generator's own cost and its one-core rate against wrk,
# then the gateway against nginx and haproxy.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./oip/... ./router/... ./gateway/... ./runtimes/... ./auth/...
	./scripts/bench.sh

# Only the one-core rate of `infergate bench` against wrk.
bench-generator: build
	./scripts/bench.sh generator

# Only the batcher's table: a simulated GPU-like model with and without
# dynamic batching, closed loop at concurrency 1, 8, 64 and 256.
bench-batching: build
	./scripts/bench.sh batching

# Only the cold-start table: iris (ONNX) and a simulated model, 20 times
# each from zero replicas and back under load through infergate serve; the
# first request's latency split into the runtime's start-to-ready time and
# the gateway's share, and failed requests (about five minutes).
bench-coldstart: build
	./scripts/bench.sh coldstart

# The registry's benchmarks (registry/bench_test.go: resolve, list and
# version registration on 100 models x 100 versions, each with its p50
# and p99) on SQLite, then on a throwaway PostgreSQL through
# scripts/with-postgres when PostgreSQL's server is installed (Debian's
# postgresql package; PG_BINDIR as there), then both side by side. The
# outputs stay in bin/bench-registry-{sqlite,postgres}.txt. About a minute
# and a half on 2 cores.
BENCH_REGISTRY_TIME ?= 2000x
BENCH_REGISTRY      = $(GO) test -run '^$$' -benchtime $(BENCH_REGISTRY_TIME) -benchmem ./registry/
bench-registry:
	@mkdir -p bin
	@echo "== registry benchmarks on SQLite"
	@$(BENCH_REGISTRY) -bench '/sqlite' >bin/bench-registry-sqlite.txt 2>&1; \
		status=$$?; cat bin/bench-registry-sqlite.txt; exit $$status
	@rm -f bin/bench-registry-postgres.txt
	@if [ -n "$$PG_BINDIR" ] || command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		echo "== registry benchmarks on PostgreSQL (scripts/with-postgres)"; \
		./scripts/with-postgres $(BENCH_REGISTRY) -bench '/postgres' >bin/bench-registry-postgres.txt 2>&1; \
		status=$$?; cat bin/bench-registry-postgres.txt; exit $$status; \
	else \
		echo "== PostgreSQL's server is not installed (Debian's postgresql package): its benchmarks are skipped"; \
	fi
	@echo "== both stores: p50 / p99 in µs; registrations per second"
	@awk 'FNR == 1 { b = (FILENAME ~ /postgres/) ? "postgres" : "sqlite" } \
		/^Benchmark/ { n = $$1; sub(/-[0-9]+$$/, "", n); sub("/" b, "", n); \
			for (i = 3; i < NF; i += 2) v[n, b, $$(i + 1)] = $$i; \
			if (!(n in seen)) { seen[n] = 1; order[++k] = n } } \
		function cell(n, b,  s) { if (!((n, b, "p99-µs") in v)) return "-"; \
			s = v[n, b, "p50-µs"] " / " v[n, b, "p99-µs"]; \
			if ((n, b, "registrations/s") in v) s = s ", " v[n, b, "registrations/s"] "/s"; return s } \
		END { printf "%-42s  %-24s  %s\n", "BENCHMARK", "SQLITE", "POSTGRESQL"; \
			for (j = 1; j <= k; j++) printf "%-42s  %-24s  %s\n", order[j], cell(order[j], "sqlite"), cell(order[j], "postgres") }' \
		bin/bench-registry-sqlite.txt $$(ls bin/bench-registry-postgres.txt 2>/dev/null)

# Regenerates oip/inferencepb from oip/proto with pinned generators.
proto:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(TOOLS):$$PATH protoc -I oip/proto \
		--go_out=oip/inferencepb --go_opt=paths=source_relative \
		--go-grpc_out=oip/inferencepb --go-grpc_opt=paths=source_relative \
		oip/proto/grpc_predict_v2.proto

# Regenerates, from the kubebuilder markers on the Kubernetes API types
# under controlplane/k8s/apis, their deep-copy code (zz_generated.deepcopy.go
# beside the types) and their CRDs (deploy/crds), with controller-gen at a
# pinned version from the Go module proxy. Both are committed: the tests of
# controlplane/k8s/apis run this target into a copy and fail when the
# committed files differ. A few seconds once controller-gen is built (about
# 30 s the first time, to fetch and build it).
CONTROLLER_GEN_VERSION := v0.23.0
.PHONY: generate
generate:
	$(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION) \
		object crd:crdVersions=v1 paths=./controlplane/k8s/apis/... output:crd:dir=deploy/crds

# Builds the container image (Dockerfile: the static binary on
# distroless, non-root) with docker, or podman, whichever works here.
IMAGE   ?= infergate:dev
VERSION ?= dev
.PHONY: image
image:
	@if docker info >/dev/null 2>&1; then \
		docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .; \
	elif command -v podman >/dev/null 2>&1; then \
		podman build --build-arg VERSION=$(VERSION) -t $(IMAGE) .; \
	else \
		echo "make image: no container builder here (a running docker daemon, or podman); the image is the binary of 'CGO_ENABLED=0 go build ./cmd/infergate' on gcr.io/distroless/static-debian12:nonroot" >&2; \
		exit 1; \
	fi

# Retrains and re-exports the sample models (needs Debian's python3-torch,
# python3-sklearn, python3-onnx); the .onnx files are committed, so make run
# does not need this.
models:
	python3 examples/models/make_models.py examples/models

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .

clean:
	rm -rf bin
