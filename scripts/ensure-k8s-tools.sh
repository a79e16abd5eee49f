#!/usr/bin/env bash
# Build (once) the Kubernetes programs that `pytest -m k8s` and the k8s benchmark run:
# kube-apiserver, etcd and kwok, each from its Go module, cached OUTSIDE the repo in a
# folder named after its version.  A second run finds the binaries and does nothing.
#
# usage: scripts/ensure-k8s-tools.sh          build what is missing; print KEY=PATH lines
#        scripts/ensure-k8s-tools.sh --check  print the lines if everything is built, else fail
#
# stdout carries only the KEY=PATH lines (KUBE_APISERVER, ETCD, KWOK); progress goes to
# stderr.  The cache root is $LAKEHUB_TOOLS_CACHE, else /var/cache/lakehub as root, else
# ${XDG_CACHE_HOME:-~/.cache}/lakehub.  Go modules come from the Go module proxy
# ($GOPROXY); Go's own caches (GOMODCACHE, GOCACHE) stay where `go env` puts them.
set -euo pipefail

# ---- the pinned versions: this is the only place they are written ----------------------
# kube-apiserver of Kubernetes 1.36 (z2jh 4.4.0 needs >= 1.28; kubernetes_asyncio 36 is the
# matching client).  Its go.mod asks for go 1.26.0.
K8S_VERSION=v1.36.3
# etcd 3.6 is what Kubernetes 1.36 is tested with (it requires go.etcd.io/etcd/client/v3
# v3.6.x).  Debian bookworm's etcd-server is 3.4.23: see ETCD_NOTE below.
ETCD_VERSION=v3.6.16
# kwok v0.8.0 (go 1.26.0, client-go v0.36.1): the newest release the local Go builds.
KWOK_VERSION=v0.8.0
# ETCD_NOTE: kube-apiserver 1.36 was tried against Debian's etcd 3.4.23; see
# tests/test_k8s.py for why etcd is built here instead.
# -------------------------------------------------------------------------------------------

mode=build
[ "${1:-}" = "--check" ] && mode=check

if [ -n "${LAKEHUB_TOOLS_CACHE:-}" ]; then
  cache=$LAKEHUB_TOOLS_CACHE
elif [ "$(id -u)" = 0 ]; then
  cache=/var/cache/lakehub
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/lakehub
fi

apiserver_dir=$cache/k8s-$K8S_VERSION
etcd_dir=$cache/etcd-$ETCD_VERSION
kwok_dir=$cache/kwok-$KWOK_VERSION

say() { echo "==> $*" >&2; }

print_paths() {
  echo "KUBE_APISERVER=$apiserver_dir/kube-apiserver"
  echo "ETCD=$etcd_dir/etcd"
  echo "KWOK=$kwok_dir/kwok"
}

built() { [ -x "$1/$2" ] && [ -f "$1/.built" ]; }

if built "$apiserver_dir" kube-apiserver && built "$etcd_dir" etcd && built "$kwok_dir" kwok; then
  print_paths
  exit 0
fi
if [ "$mode" = check ]; then
  echo "the Kubernetes test tools are not built yet; run: make k8s-tools" >&2
  exit 1
fi

command -v go >/dev/null || { echo "Go is needed to build the Kubernetes test tools" >&2; exit 1; }
# Every pinned module asks for go <= 1.26.0; use the installed Go and never fetch another.
export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false
export CGO_ENABLED=0
mkdir -p "$cache"

# One build at a time per cache (several engineers and CI jobs may call this at once).
exec 9>"$cache/.k8s-tools.lock"
flock 9

work=$(mktemp -d "${TMPDIR:-/tmp}/lakehub-k8s-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# finish DIR NAME: move a freshly built binary into its versioned folder atomically.
finish() {
  local dir=$1 name=$2 tmp
  mkdir -p "$(dirname "$dir")"
  tmp=$(mktemp -d "$(dirname "$dir")/.$(basename "$dir").XXXXXX")
  chmod 755 "$tmp"
  mv "$work/bin/$name" "$tmp/$name"
  echo "built $(date -u +%FT%TZ) with $(go env GOVERSION)" > "$tmp/.built"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

# A throwaway module that requires MODULE@VERSION and points each of the module's
# replace directives (local paths in its own repository) at the published module of the
# same release, so that `go build` can build a command of MODULE from the proxy.
#   throwaway_module DIR MODULE VERSION PUBLISHED_VERSION_OF_REPLACED
throwaway_module() {
  local dir=$1 module=$2 version=$3 pinned=$4 gomod
  mkdir -p "$dir"
  gomod=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { echo "could not fetch the go.mod of $module@$version" >&2; exit 1; }
  {
    echo "module lakehub.invalid/build"
    echo
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo
    echo "require $module $version"
    echo
    # every 'X => ./path' or 'X => ../path' line of the upstream go.mod
    sed -n 's/^[[:space:]]*\([^[:space:]]*\) => \.\{1,2\}\/.*$/\1/p' "$gomod" |
      grep -v FORBIDDEN | sort -u | while read -r dep; do
        [ "$dep" = "$module" ] && continue
        echo "replace $dep => $dep $pinned"
      done
  } > "$dir/go.mod"
}

build_apiserver() {
  local t0=$SECONDS minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  say "building kube-apiserver $K8S_VERSION (a cold build takes several minutes)"
  # staging modules are published as v0.<minor>.<patch> of the same release
  throwaway_module "$work/apiserver" k8s.io/kubernetes "$K8S_VERSION" "v0.${K8S_VERSION#v1.}"
  (
    cd "$work/apiserver"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" >&2
    go build -trimpath -o "$work/bin/kube-apiserver" \
      -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=$minor \
        -X k8s.io/component-base/version.gitTreeState=clean" \
      k8s.io/kubernetes/cmd/kube-apiserver >&2
  )
  finish "$apiserver_dir" kube-apiserver
  say "kube-apiserver $K8S_VERSION built in $((SECONDS - t0)) s: $apiserver_dir"
}

build_etcd() {
  local t0=$SECONDS
  say "building etcd $ETCD_VERSION"
  throwaway_module "$work/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  (
    cd "$work/etcd"
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    go build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3 >&2
  )
  finish "$etcd_dir" etcd
  say "etcd $ETCD_VERSION built in $((SECONDS - t0)) s: $etcd_dir"
}

build_kwok() {
  local t0=$SECONDS
  say "building kwok $KWOK_VERSION"
  # kwok's go.mod has no replace directives: plain `go install` works
  GOBIN=$work/bin go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
  finish "$kwok_dir" kwok
  say "kwok $KWOK_VERSION built in $((SECONDS - t0)) s: $kwok_dir"
}

mkdir -p "$work/bin"
built "$etcd_dir" etcd || build_etcd
built "$kwok_dir" kwok || build_kwok
built "$apiserver_dir" kube-apiserver || build_apiserver
print_paths
