#!/usr/bin/env bash
# The end-to-end comparisons that `make bench` runs after the Go
# micro-benchmarks, on loopback only and bounded in time (about three
# minutes with the defaults). See bench/README.md.
#
#   scripts/bench.sh [all|generator|proxies]
#
#   generator  the load generator's own rate from one core: `infergate bench`
#              (GOMAXPROCS=1, pinned to one core) against wrk on the same
#              core, both driving the trivial OIP runtime pinned to another
#   proxies    infergate's gateway against nginx and haproxy in front of the
#              same trivial runtime (bench/cmd/proxybench, which drives them
#              with the load generator of `infergate bench`)
#
# Environment (all optional):
#   INFERGATE      gateway binary (default: bin/infergate, built here)
#   ROUNDS         measured rounds (default 3)
#   WINDOW         one measured window (default 3s)
#   CONCURRENCY    comma-separated (default 16,64)
#   BENCH_JSON     results file (default bin/proxybench.json)
#   PROFILE_DIR    also profile the gateway and count syscalls per request
#   PROXYBENCH_ARGS  more flags for proxybench
#   GEN_CORE, SERVER_CORE  the cores of the generator and of the runtime (0, 1)
#   GEN_CONNS      connections of both generators (default 64)
#   GEN_WINDOW     one measured window of the generator comparison, in whole
#                  seconds (default 5s)
#   GEN_ROUNDS     rounds of it, each running wrk then infergate bench (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
case $MODE in all | generator | proxies) ;; *)
	echo "usage: $0 [all|generator|proxies]" >&2
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

if [[ $MODE != generator ]]; then
	echo "== bench: the load generator's own cost (package bench)"
	"$GO" test -run '^$' -bench . -benchmem -benchtime 500ms ./bench/
fi

mkdir -p bin
if [[ -n ${BUILD_INFERGATE:-} ]]; then
	"$GO" build -o "$INFERGATE" ./cmd/infergate
fi
"$GO" build -o bin/proxybench ./bench/cmd/proxybench

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

if [[ $MODE != proxies ]]; then
	generator_comparison
fi
if [[ $MODE == generator ]]; then
	exit 0
fi

for tool in nginx haproxy; do
	if [[ ! -x /usr/sbin/$tool ]]; then
		if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
			echo "== installing $tool (Debian package)"
			export DEBIAN_FRONTEND=noninteractive
			{ apt-get install -y -q "$tool" || { apt-get update -q && apt-get install -y -q "$tool"; }; } >/dev/null ||
				echo "could not install $tool: its rows are skipped"
		else
			echo "$tool is not installed: its rows are skipped (sudo apt-get install $tool)"
		fi
	fi
done

args=(-infergate "$INFERGATE" -rounds "$ROUNDS" -window "$WINDOW" -concurrency "$CONCURRENCY" -json "$BENCH_JSON")
if [[ -n ${PROFILE_DIR:-} ]]; then
	args+=(-profile-dir "$PROFILE_DIR")
fi
echo "== proxybench ${args[*]} ${PROXYBENCH_ARGS:-}"
# shellcheck disable=SC2086 # PROXYBENCH_ARGS is split on purpose.
exec bin/proxybench "${args[@]}" ${PROXYBENCH_ARGS:-}
