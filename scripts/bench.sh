#!/usr/bin/env bash
# The end-to-end comparisons that `make bench` runs after the Go
# micro-benchmarks, on loopback only and bounded in time (about eighteen
# minutes with the defaults: about ten the proxy comparison, five the cold
# starts). See bench/README.md.
#
#   scripts/bench.sh [all|generator|batching|coldstart|proxies]
#
#   generator  the load generator's own rate from one core: `infergate bench`
#              (GOMAXPROCS=1, pinned to one core) against wrk on the same
#              core, both driving the trivial OIP runtime pinned to another
#   batching   the gateway's dynamic batcher against none, in one gateway
#              serving a simulated GPU-like model (5 ms + 0.05 ms per row, one
#              slot) twice, as sim (unbatched) and sim-batched (maxBatchSize
#              64, maxLatency 5): closed loop at BATCH_CONCURRENCY, a table
#              and the issue's two checks, PASS or FAIL (exit 0 either way)
#   coldstart  scale from zero through `infergate serve` (bench/cmd/coldstart):
#              iris (ONNX) and a simulated model, each COLD_CYCLES times from
#              zero replicas, one request with COLD_CONCURRENCY clients
#              alongside for COLD_LOAD, then back to zero; the first request's
#              latency split into the runtime's start-to-ready time and the
#              gateway's share (p50, p99), and failed requests, with two
#              checks, PASS or FAIL (exit 0 either way)
#   proxies    infergate's gateway against nginx and haproxy in front of the
#              same trivial runtime, REST and gRPC (nginx grpc_pass, haproxy
#              proto h2), plus the gateway's REST-to-gRPC and gRPC-to-REST
#              translations (bench/cmd/proxybench), each driven by wrk (REST)
#              or h2load (gRPC) and by the load generator of `infergate
#              bench`; then the gateway's RSS at concurrency 256 per round and
#              the goals of issue 14, PASS or FAIL (exit 0 either way). As
#              root, nginx, haproxy, wrk and nghttp2-client (h2load) are
#              installed with apt-get when missing; otherwise what is missing
#              is named and its rows skipped
#
# Environment (all optional):
#   INFERGATE      gateway binary (default: bin/infergate, built here)
#   ROUNDS         measured rounds (default 3)
#   WINDOW         one measured window (default 3s; wrk's rounded up to
#                  whole seconds)
#   CONCURRENCY    comma-separated (default 16,64): REST connections and gRPC
#                  concurrent streams (16 streams per connection)
#   GENERATORS     comma-separated, of infergate,wrk,h2load (default: all
#                  that are installed)
#   MEMORY_WINDOW  the gateway's RSS load per round (default 30s; 0: none)
#   BENCH_JSON     results file (default bin/proxybench.json)
#   PROFILE_DIR    also profile the gateway and count syscalls and wake-ups
#                  per request of every proxy
#   PROXYBENCH_ARGS  more flags for proxybench (bin/proxybench -h)
#   GEN_CORE, SERVER_CORE  the cores of the generator and of the runtime (0, 1)
#   GEN_CONNS      connections of both generators (default 64)
#   GEN_WINDOW     one measured window of the generator comparison, in whole
#                  seconds (default 5s)
#   GEN_ROUNDS     rounds of it, each running wrk then infergate bench (default 3)
#   BATCH_CONCURRENCY  space-separated concurrencies of the batching part
#                  (default "1 8 64 256")
#   BATCH_WINDOW, BATCH_WARMUP  its measured window and warm-up per point
#                  (default 3s, 1s)
#   COLD_CYCLES    cycles per model of the cold-start part (default 20)
#   COLD_CONCURRENCY, COLD_LOAD  its clients and their time per cycle
#                  (default 8, 1s)
#   COLDSTART_ARGS more flags for bin/coldstart
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
case $MODE in all | generator | batching | coldstart | proxies) ;; *)
	echo "usage: $0 [all|generator|batching|coldstart|proxies]" >&2
	exit 2
	;;
esac

GO=${GO:-go}
if [[ -z ${INFERGATE:-} ]]; then
	INFERGATE=bin/infergate
	BUILD_INFERGATE=1
fi
ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-3s}
CONCURRENCY=${CONCURRENCY:-16,64}
BENCH_JSON=${BENCH_JSON:-bin/proxybench.json}
GEN_CORE=${GEN_CORE:-0}
SERVER_CORE=${SERVER_CORE:-1}
GEN_CONNS=${GEN_CONNS:-64}
GEN_WINDOW=${GEN_WINDOW:-5s}
GEN_ROUNDS=${GEN_ROUNDS:-3}

if [[ $MODE == all || $MODE == proxies ]]; then
	echo "== bench: the load generator's own cost (package bench)"
	"$GO" test -run '^$' -bench . -benchmem -benchtime 500ms ./bench/
fi

mkdir -p bin
if [[ -n ${BUILD_INFERGATE:-} ]]; then
	"$GO" build -o "$INFERGATE" ./cmd/infergate
fi
if [[ $MODE == all || $MODE == proxies ]]; then
	"$GO" build -o bin/proxybench ./bench/cmd/proxybench
fi
if [[ $MODE == all || $MODE == coldstart ]]; then
	"$GO" build -o bin/coldstart ./bench/cmd/coldstart
fi

# cpu_ticks prints the user+system clock ticks (1/100 s) pid has used.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# calc prints the value of an arithmetic expression.
calc() { awk "BEGIN { print $1 }"; }

# generator_comparison measures the rate one core of load generation
# reaches: wrk, then infergate bench, in rounds, against the trivial runtime
# on another core, with the same request body and connection count.
generator_comparison() {
	echo "== the generator's rate from one core: infergate bench against wrk"
	if ! command -v wrk >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "== installing wrk (Debian package)"
		export DEBIAN_FRONTEND=noninteractive
		{ apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }; } >/dev/null || true
	fi
	if ! command -v wrk >/dev/null || ! command -v taskset >/dev/null; then
		echo "wrk or taskset is missing: skipped (sudo apt-get install wrk util-linux)"
		return 0
	fi
	if (($(nproc) < 2)); then
		echo "one CPU only: skipped (the generator and the runtime need a core each)"
		return 0
	fi
	local tmp up_pid=""
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now: the values are fixed.
	trap "[[ -n \$up_pid ]] && kill \$up_pid 2>/dev/null; rm -rf '$tmp'" RETURN
	taskset -c "$SERVER_CORE" bin/proxybench -upstream -upstream-models iris >"$tmp/upstream.out" 2>&1 &
	up_pid=$!
	local addr="" i
	for i in $(seq 100); do
		addr=$(sed -n 's/^PROXYBENCH-UPSTREAM rest=\([^ ]*\) .*/\1/p' "$tmp/upstream.out")
		[[ -n $addr ]] && break
		sleep 0.1
	done
	if [[ -z $addr ]]; then
		echo "the trivial runtime did not start:" >&2
		cat "$tmp/upstream.out" >&2
		return 1
	fi
	local body='{"id":"bench","inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
	printf '%s\n' "$body" >"$tmp/request.json"
	cat >"$tmp/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
EOF
	local url="http://$addr/v2/models/iris/infer" secs=${GEN_WINDOW%s}
	echo "runtime on core $SERVER_CORE, generators on core $GEN_CORE, $GEN_CONNS connections, $GEN_WINDOW windows, $GEN_ROUNDS rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
	printf '%-6s %-16s %12s %16s\n' round generator "requests/s" "runtime CPU"
	local w_sum=0 g_sum=0 t0 t1 rps
	for ((i = 1; i <= GEN_ROUNDS; i++)); do
		t0=$(cpu_ticks "$up_pid")
		rps=$(taskset -c "$GEN_CORE" wrk -t1 -c"$GEN_CONNS" -d"$GEN_WINDOW" -s "$tmp/post.lua" "$url" | awk '/^Requests\/sec:/ { print $2 }')
		t1=$(cpu_ticks "$up_pid")
		printf '%-6s %-16s %12.0f %15.0f%%\n' "$i" wrk "$rps" "$(calc "($t1 - $t0) / $secs")"
		w_sum=$(calc "$w_sum + $rps")

		t0=$(cpu_ticks "$up_pid")
		GOMAXPROCS=1 taskset -c "$GEN_CORE" "$INFERGATE" bench -u "http://$addr" -m iris -input-data "$tmp/request.json" \
			-c "$GEN_CONNS" -d "$GEN_WINDOW" -warmup 500ms -progress off -json "$tmp/ig.json" >/dev/null
		t1=$(cpu_ticks "$up_pid")
		rps=$(sed -n 's/^ *"rps": \([0-9.e+]*\),*$/\1/p' "$tmp/ig.json" | head -1)
		printf '%-6s %-16s %12.0f %15.0f%%\n' "$i" "infergate bench" "$rps" "$(calc "($t1 - $t0) / ($secs + 0.5)")"
		g_sum=$(calc "$g_sum + $rps")
	done
	local w g
	w=$(calc "$w_sum / $GEN_ROUNDS")
	g=$(calc "$g_sum / $GEN_ROUNDS")
	printf 'mean: infergate bench %.0f requests/s, wrk %.0f requests/s from one core: %.2fx wrk\n' "$g" "$w" "$(calc "$g / $w")"
	echo "(a runtime CPU near 100% means the runtime, not the generator, set the pace)"
}

# batching_comparison runs one gateway serving a simulated model twice, with
# and without the batcher, loads both in turn at each concurrency and prints
# the table and the issue's checks. It is a report: it returns 0 whatever
# the figures, and stops everything it started.
batching_comparison() {
	echo "== batching: one gateway, a simulated model (5 ms + 0.05 ms/row, 1 slot, 1 replica) as sim and sim-batched"
	if ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
		echo "jq and curl are needed for the batching table: skipped"
		return 0
	fi
	local tmp gw_pid="" base rest grpc admin c m
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # expand tmp now; gw_pid is read at return.
	trap "trap - INT TERM; [[ -n \$gw_pid ]] && kill \$gw_pid 2>/dev/null && wait \$gw_pid 2>/dev/null; rm -rf '$tmp'" RETURN
	mkdir -p "$tmp/models/sim" "$tmp/data" "$tmp/out"
	cat >"$tmp/models/sim/config.json" <<-'JSON'
		{
		  "max_batch_size": 0,
		  "simulate": {
		    "latency_ms": 5,
		    "per_item_ms": 0.05,
		    "slots": 1,
		    "inputs":  [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
		    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 16]}]
		  }
		}
	JSON
	cat >"$tmp/models.yaml" <<-YAML
		apiVersion: serving.kserve.io/v1beta1
		kind: InferenceService
		metadata: {name: sim}
		spec:
		  predictor:
		    minReplicas: 1
		    maxReplicas: 1
		    model: {modelFormat: {name: onnx}, storageUri: $tmp/models/sim}
		---
		apiVersion: serving.kserve.io/v1beta1
		kind: InferenceService
		metadata: {name: sim-batched}
		spec:
		  predictor:
		    minReplicas: 1
		    maxReplicas: 1
		    batcher: {maxBatchSize: 64, maxLatency: 5}
		    model: {modelFormat: {name: onnx}, storageUri: $tmp/models/sim}
	YAML
	base=$((20000 + RANDOM % 20000))
	rest=127.0.0.1:$base grpc=127.0.0.1:$((base + 1)) admin=127.0.0.1:$((base + 2))
	"$INFERGATE" serve -config "$tmp/models.yaml" -data-dir "$tmp/data" \
		-rest-addr "$rest" -grpc-addr "$grpc" -admin-addr "$admin" >"$tmp/gateway.log" 2>&1 &
	gw_pid=$!
	# shellcheck disable=SC2064 # the pid is fixed now.
	trap "kill $gw_pid 2>/dev/null; wait $gw_pid 2>/dev/null; rm -rf '$tmp'; exit 130" INT TERM
	local ready=""
	for _ in $(seq 150); do
		if curl -fs "http://$rest/v2/models/sim/ready" >/dev/null && curl -fs "http://$rest/v2/models/sim-batched/ready" >/dev/null; then
			ready=1
			break
		fi
		kill -0 "$gw_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -z $ready ]]; then
		echo "the gateway did not get ready; its log:"
		tail -20 "$tmp/gateway.log"
		return 0
	fi
	# batch_sizes prints sim-batched's batch-size histogram from the
	# gateway's /metrics: one "le count" line per bucket, then "sum S".
	batch_sizes() {
		curl -fs "http://$admin/metrics" | awk '
			/^infergate_batcher_batch_size_bucket\{/ && /model="sim-batched/ {
				match($0, /le="[^"]*"/); print substr($0, RSTART + 4, RLENGTH - 5), $NF }
			/^infergate_batcher_batch_size_sum\{/ && /model="sim-batched/ { print "sum", $NF }'
	}
	for c in ${BATCH_CONCURRENCY:-1 8 64 256}; do
		for m in sim sim-batched; do
			if [[ $m == sim-batched ]]; then batch_sizes >"$tmp/out/hist-$c.before" || true; fi
			"$INFERGATE" bench -u "http://$rest" -m "$m" -c "$c" -duration "${BATCH_WINDOW:-3s}" \
				-warmup "${BATCH_WARMUP:-1s}" -progress off -json "$tmp/out/$m-$c.json" >/dev/null 2>"$tmp/out/$m-$c.err" ||
				{ echo "bench $m c$c failed:"; cat "$tmp/out/$m-$c.err"; }
			if [[ $m == sim-batched ]]; then batch_sizes >"$tmp/out/hist-$c.after" || true; fi
		done
	done
	echo "batch sizes of sim-batched per concurrency (batches sent in each window, warm-up included; bucket = rows up to)"
	for c in ${BATCH_CONCURRENCY:-1 8 64 256}; do
		[[ -s $tmp/out/hist-$c.after ]] || continue
		awk -v c="$c" '
			FILENAME == ARGV[1] { before[$1] = $2; next }
			$1 == "sum" { sum = $2 - before["sum"]; next }
			{ n = $2 - before[$1]; le[++k] = $1; cum[k] = n }
			END {
				line = sprintf("c%-4d", c); prev = 0
				for (i = 1; i <= k; i++) {
					d = cum[i] - prev; prev = cum[i]
					if (d > 0 && le[i] != "+Inf") line = line sprintf("  <=%s: %d", le[i], d)
				}
				total = cum[k]
				printf "%s  | batches %d, mean %.1f rows\n", line, total, (total > 0 ? sum / total : 0)
			}' "$tmp/out/hist-$c.before" "$tmp/out/hist-$c.after"
	done
	# One line per concurrency: c, then rps p50 p99 (ms) errors of sim, of sim-batched.
	local rows=()
	for c in ${BATCH_CONCURRENCY:-1 8 64 256}; do
		local row="$c"
		for m in sim sim-batched; do
			if [[ -s $tmp/out/$m-$c.json ]]; then
				row+=" $(jq -r '.points[0] | "\(.rps) \(.p50_ns / 1e6) \(.p99_ns / 1e6) \(.errors)"' "$tmp/out/$m-$c.json")"
			else
				row+=" 0 0 0 -"
			fi
		done
		rows+=("$row")
	done
	printf '%s\n' "${rows[@]}" | awk '
		BEGIN {
			printf "%11s | %10s %10s %7s | %9s %9s | %9s %9s | %6s %6s\n", "concurrency", "rps unbat", "rps batch", "ratio", "p50 unbat", "p50 batch", "p99 unbat", "p99 batch", "errs u", "errs b"
		}
		{
			ratio = $2 > 0 ? $6 / $2 : 0
			printf "%11d | %10.0f %10.0f %6.1fx | %7.2fms %7.2fms | %7.2fms %7.2fms | %6s %6s\n", $1, $2, $6, ratio, $3, $7, $4, $8, $5, $9
			rps_u[$1] = $2; rps_b[$1] = $6; p50_u[$1] = $3; p50_b[$1] = $7; p99_b[$1] = $8
		}
		END {
			# maxLatency 5 ms; a batch of 64 takes 5 + 0.05 * 64 = 8.2 ms.
			bound = 5 + 2 * (5 + 0.05 * 64)
			if (64 in rps_u) {
				r = rps_u[64] > 0 ? rps_b[64] / rps_u[64] : 0
				ok = r >= 10 && p99_b[64] > 0 && p99_b[64] <= bound
				printf "%s  c64: batched/unbatched throughput %.1fx (want >= 10) and batched p99 %.2f ms (want <= %.1f ms: maxLatency + 2 x 8.2 ms)\n", ok ? "PASS" : "FAIL", r, p99_b[64], bound
			}
			if (1 in p50_u) {
				add = p50_u[1] > 0 ? (p50_b[1] / p50_u[1] - 1) * 100 : 0
				ok = p50_u[1] > 0 && p50_b[1] > 0 && add < 5
				printf "%s  c1: batching adds %+.1f%% to median latency (%.2f ms -> %.2f ms; want < 5%%)\n", ok ? "PASS" : "FAIL", add, p50_u[1], p50_b[1]
			}
		}'
	return 0
}

# coldstart_comparison cycles two models from zero replicas and back
# through one `infergate serve` (bench/cmd/coldstart, bounded to 8 minutes).
# It is a report: it returns 0 whatever the figures.
coldstart_comparison() {
	echo "== cold start: iris (ONNX) and a simulated model, from zero replicas and back, ${COLD_CYCLES:-20} cycles each"
	# Its progress, a line per cycle, goes to bin/coldstart.log.
	# shellcheck disable=SC2086 # COLDSTART_ARGS is split on purpose.
	if ! bin/coldstart -infergate "$INFERGATE" -cycles "${COLD_CYCLES:-20}" -concurrency "${COLD_CONCURRENCY:-8}" \
		-load "${COLD_LOAD:-1s}" ${COLDSTART_ARGS:-} 2>bin/coldstart.log; then
		echo "coldstart failed; the end of bin/coldstart.log:"
		tail -20 bin/coldstart.log
	fi
	return 0
}

if [[ $MODE == all || $MODE == generator ]]; then
	generator_comparison
fi
if [[ $MODE == all || $MODE == batching ]]; then
	batching_comparison
fi
if [[ $MODE == all || $MODE == coldstart ]]; then
	coldstart_comparison
fi
if [[ $MODE == generator || $MODE == batching || $MODE == coldstart ]]; then
	exit 0
fi

# The proxies and the load generators we did not write, as tool:package:path
# (an empty path: looked up in PATH). As root with apt-get, a missing one is
# installed; otherwise, or when that fails, it is named and proxybench skips
# its rows with a note.
have_tool() { if [[ -n $2 ]]; then [[ -x $2 ]]; else command -v "$1" >/dev/null; fi; }
for spec in nginx:nginx:/usr/sbin/nginx haproxy:haproxy:/usr/sbin/haproxy wrk:wrk: h2load:nghttp2-client:; do
	IFS=: read -r tool pkg path <<<"$spec"
	have_tool "$tool" "$path" && continue
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "== installing $pkg (Debian package, for $tool)"
		export DEBIAN_FRONTEND=noninteractive
		{ apt-get install -y -q "$pkg" || { apt-get update -q && apt-get install -y -q "$pkg"; }; } >/dev/null || true
		have_tool "$tool" "$path" || echo "could not install $pkg: the rows of $tool are skipped"
	else
		echo "$tool is not installed: its rows are skipped (sudo apt-get install $pkg)"
	fi
done

args=(-infergate "$INFERGATE" -rounds "$ROUNDS" -window "$WINDOW" -concurrency "$CONCURRENCY" -json "$BENCH_JSON")
if [[ -n ${GENERATORS:-} ]]; then
	args+=(-generators "$GENERATORS")
fi
if [[ -n ${MEMORY_WINDOW:-} ]]; then
	args+=(-memory-window "$MEMORY_WINDOW")
fi
if [[ -n ${PROFILE_DIR:-} ]]; then
	args+=(-profile-dir "$PROFILE_DIR")
fi
echo "== proxybench ${args[*]} ${PROXYBENCH_ARGS:-}"
# shellcheck disable=SC2086 # PROXYBENCH_ARGS is split on purpose.
exec bin/proxybench "${args[@]}" ${PROXYBENCH_ARGS:-}
