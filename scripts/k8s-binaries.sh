#!/usr/bin/env bash
# k8s-binaries.sh builds kube-apiserver and etcd from the Go module proxy,
# once, and prints the directory that holds both (KUBEBUILDER_ASSETS style).
#
# The binaries are tools for the tests under test/k8s (make test-k8s), not
# dependencies of infergate: they are built in a throwaway module in a
# temporary directory and never touch this repository's go.mod. That
# module requires k8s.io/kubernetes at KUBERNETES_VERSION and replaces
# every k8s.io/* staging module (k8s.io/kubernetes's own go.mod points
# them at ./staging, which a module download does not carry) with the
# matching v0.x release; etcd is go.etcd.io/etcd/server/v3 at the version
# k8s.io/kubernetes's go.mod names.
#
# Cache: ${INFERGATE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/infergate/k8s}/<version>/
# holding kube-apiserver and etcd. A complete cache directory is reused as
# it is; remove it to rebuild. The first build takes about 12 minutes and
# 2.7 GB of memory on 2 cores (it runs under nice); progress goes to
# stderr, and only the directory goes to stdout.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
GO="${GO:-go}"
cache_root="${INFERGATE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/infergate/k8s}"
dir="$cache_root/$KUBERNETES_VERSION"

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	echo "$dir"
	exit 0
fi

log() { echo "k8s-binaries: $*" >&2; }

# v1.37.2 -> v0.37.2: the staging modules are released as v0.<minor>.<patch>.
staging_version="v0.${KUBERNETES_VERSION#v1.}"

work="$(mktemp -d "${TMPDIR:-/tmp}/infergate-k8s-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache_root"

export GOFLAGS=-mod=mod
export GOWORK=off
export CGO_ENABLED=0
cd "$work"

log "building kube-apiserver $KUBERNETES_VERSION and etcd into $dir (first time: about 12 minutes on 2 cores)"
"$GO" mod init infergate.local/k8s-binaries >/dev/null 2>&1
"$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >"$work/kubernetes.json"
k8s_gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' "$work/kubernetes.json")"
if [[ ! -f "$k8s_gomod" ]]; then
	log "cannot find k8s.io/kubernetes@$KUBERNETES_VERSION's go.mod in the module cache"
	exit 1
fi

# Every module that k8s.io/kubernetes's go.mod replaces with ./staging/...
staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$k8s_gomod")"
if [[ -z "$staging" ]]; then
	log "no staging replaces found in $k8s_gomod"
	exit 1
fi
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$k8s_gomod")"
if [[ -z "$etcd_version" ]]; then
	log "k8s.io/kubernetes's go.mod names no go.etcd.io/etcd/server/v3"
	exit 1
fi
log "etcd $etcd_version (named by k8s.io/kubernetes's go.mod); $(echo "$staging" | wc -l) staging modules at $staging_version"

{
	echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
	echo "require go.etcd.io/etcd/server/v3 $etcd_version"
	for m in $staging; do
		echo "replace $m => $m $staging_version"
	done
} >>go.mod

# One resolution for both binaries: k8s.io/kubernetes pins the etcd client
# and server modules at the version etcd is built from, so the two agree.
"$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" "go.etcd.io/etcd/server/v3@$etcd_version" >&2

out="$work/out"
mkdir -p "$out"
start=$(date +%s)
nice "$GO" build -trimpath -o "$out/etcd" go.etcd.io/etcd/server/v3 >&2
log "etcd built in $(( $(date +%s) - start ))s"
# The version a release build stamps in (hack/lib/version.sh), so that
# /version and --version say what this is rather than v0.0.0-master.
minor="${KUBERNETES_VERSION#v1.}"
minor="${minor%%.*}"
ldflags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
nice "$GO" build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
log "etcd and kube-apiserver built in $(( $(date +%s) - start ))s"
"$out/etcd" --version >&2
"$out/kube-apiserver" --version >&2

# Move into place whole, so a half-built cache is never mistaken for one.
staged="$(mktemp -d "$cache_root/.partial.XXXXXX")"
mv "$out/etcd" "$out/kube-apiserver" "$staged/"
rm -rf "$dir"
mv "$staged" "$dir"
chmod 755 "$dir"
echo "$dir"
