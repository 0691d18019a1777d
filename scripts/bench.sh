#!/usr/bin/env bash
# The end-to-end proxy comparison that `make bench` runs after the Go
# micro-benchmarks: infergate's gateway against nginx and haproxy in front
# of the same trivial OIP runtime, on loopback only, bounded (about two and
# a half minutes with the defaults). See bench/README.md.
#
# Environment (all optional):
#   INFERGATE      gateway binary (default: bin/infergate, built here)
#   ROUNDS         measured rounds (default 3)
#   WINDOW         one measured window (default 3s)
#   CONCURRENCY    comma-separated (default 16,64)
#   BENCH_JSON     results file (default bin/proxybench.json)
#   PROFILE_DIR    also profile the gateway and count syscalls per request
#   PROXYBENCH_ARGS  more flags for proxybench
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
if [[ -z ${INFERGATE:-} ]]; then
	INFERGATE=bin/infergate
	BUILD_INFERGATE=1
fi
ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-3s}
CONCURRENCY=${CONCURRENCY:-16,64}
BENCH_JSON=${BENCH_JSON:-bin/proxybench.json}

echo "== bench: the load generator's own cost (package bench)"
"$GO" test -run '^$' -bench . -benchmem -benchtime 500ms ./bench/

mkdir -p bin
if [[ -n ${BUILD_INFERGATE:-} ]]; then
	"$GO" build -o "$INFERGATE" ./cmd/infergate
fi
"$GO" build -o bin/proxybench ./bench/cmd/proxybench

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
