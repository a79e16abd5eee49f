#!/usr/bin/env bash
# Build (once) the Kubernetes programs the tests and benchmarks run, each from its Go
# module, cached OUTSIDE the repo in a folder named after its version; install the Debian
# packages and build the two small images a real node needs.  A second run finds
# everything and does nothing.
#
#   control plane (`pytest -m k8s`, the k8s benchmark): kube-apiserver, etcd, kwok
#   one real node (testkit/node.py, `pytest -m cluster`, `make cluster-up`): kubelet,
#     kube-proxy, kube-controller-manager, kube-scheduler, kubectl, containerd (+ its runc
#     shim and ctr), crictl, the CNI plugins, CoreDNS, local-path-provisioner; Debian's
#     runc, iptables, conntrack, socat, busybox-static; a sandbox ("pause") image and a
#     helper image with a shell, built with podman from images/pause and images/node-helper
#
# usage: scripts/ensure-k8s-tools.sh          build what is missing; print KEY=PATH lines
#        scripts/ensure-k8s-tools.sh --check  print the lines if everything is built, else fail
#
# stdout carries only the KEY=PATH lines (see print_paths; the two images are printed as
# PAUSE_IMAGE=NAME and NODE_HELPER_IMAGE=NAME, names in podman's storage); progress goes to
# stderr.  The cache root is $LAKEHUB_TOOLS_CACHE, else /var/cache/lakehub as root, else
# ${XDG_CACHE_HOME:-~/.cache}/lakehub.  Go modules come from the Go module proxy
# ($GOPROXY); Go's own caches (GOMODCACHE, GOCACHE) stay where `go env` puts them.
#
# A first build here (2 shared, busy cores, 2026-12-02; the Go module and build caches
# already held etcd, kwok and kube-apiserver): about 14 min in all.  CNI plugins 10 s,
# local-path-provisioner 2 min, CoreDNS 6 min, crictl 49 s, containerd 1.7 min, the six
# Kubernetes commands together 3.1 min, each image 1 s; a second run prints the lines in
# 0.2 s.  Components built first pay for the dependencies the later ones share.
set -euo pipefail

# ---- the pinned versions: this is the only place they are written ----------------------
# Kubernetes 1.36 (z2jh 4.4.0 needs >= 1.28; kubernetes_asyncio 36 is the matching client):
# these commands of k8s.io/kubernetes, built together by one `go build` so that they share
# the compile work.  Its go.mod asks for go 1.26.0.
K8S_VERSION=v1.36.3
K8S_COMMANDS="kube-apiserver kubelet kube-proxy kube-controller-manager kube-scheduler kubectl"
# etcd 3.6 is what Kubernetes 1.36 is tested with (it requires go.etcd.io/etcd/client/v3
# v3.6.x).  Debian bookworm's etcd-server is 3.4.23: see ETCD_NOTE below.
ETCD_VERSION=v3.6.16
# kwok v0.8.0 (go 1.26.0, client-go v0.36.1): the newest release the local Go builds.
KWOK_VERSION=v0.8.0
# ETCD_NOTE: kube-apiserver 1.36 was tried against Debian's etcd 3.4.23; see
# tests/test_k8s.py for why etcd is built here instead.
# containerd 2.4 (CRI v1, config version 3; go 1.26.6): containerd, its runc shim, ctr.
CONTAINERD_VERSION=v2.4.2
# crictl talks CRI v1 like every kubelet since 1.26; v1.37.0 is the release the module
# proxy has next to 1.36 (there is no v1.36.x).  Used to tear pods down when the kubelet
# is gone.
CRICTL_VERSION=v1.37.0
# CNI plugins (go 1.26.8): the bridge network of the node's pods.
CNI_PLUGINS_VERSION=v1.10.0
CNI_PLUGINS="main/bridge ipam/host-local main/loopback meta/portmap"
# Cluster DNS, run as a host process (the kubernetes and forward plugins are built in).
COREDNS_VERSION=v1.15.0
# Dynamic PersistentVolumes in a host folder (rancher.io/local-path), a host process.
LOCAL_PATH_PROVISIONER_VERSION=v0.0.30
# Debian packages the node runs (runc 1.1.5 from bookworm works with containerd 2.4).
NODE_DEBS="runc iptables conntrack socat busybox-static podman"
# The two images (no registry can be reached, so nothing is pulled): their tags are a hash
# of their sources (images/pause: a static Go program of ours; images/node-helper: Debian's
# busybox-static of the version installed).
PAUSE_REPO=localhost/lakehub/node-pause
NODE_HELPER_REPO=localhost/lakehub/node-helper
# -------------------------------------------------------------------------------------------

mode=build
[ "${1:-}" = "--check" ] && mode=check

top=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${LAKEHUB_TOOLS_CACHE:-}" ]; then
  cache=$LAKEHUB_TOOLS_CACHE
elif [ "$(id -u)" = 0 ]; then
  cache=/var/cache/lakehub
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/lakehub
fi

k8s_dir=$cache/k8s-$K8S_VERSION
etcd_dir=$cache/etcd-$ETCD_VERSION
kwok_dir=$cache/kwok-$KWOK_VERSION
containerd_dir=$cache/containerd-$CONTAINERD_VERSION
crictl_dir=$cache/crictl-$CRICTL_VERSION
cni_dir=$cache/cni-plugins-$CNI_PLUGINS_VERSION
coredns_dir=$cache/coredns-$COREDNS_VERSION
lpp_dir=$cache/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION

say() { echo "==> $*" >&2; }

# image tags: a hash of what goes into each image
recipe_key() { cat "$@" | sha256sum | cut -c1-12; }
pause_image=$PAUSE_REPO:$(recipe_key "$top"/images/pause/{Containerfile,go.mod,main.go})
# the helper's tag names the busybox-static version, so it is known once that is installed
node_helper_name() {
  local busybox
  busybox=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo none)
  echo "$NODE_HELPER_REPO:$( (
    cat "$top/images/node-helper/Containerfile"
    echo "busybox-static $busybox"
  ) | recipe_key)"
}
node_helper_image=$(node_helper_name)

print_paths() {
  local c
  echo "ETCD=$etcd_dir/etcd"
  echo "KWOK=$kwok_dir/kwok"
  for c in $K8S_COMMANDS; do
    # kube-apiserver -> KUBE_APISERVER, kube-controller-manager -> KUBE_CONTROLLER_MANAGER
    c=${c/#kube-apiserver/kube-api-server}
    echo "$(echo "${c/#kube-api-server/kube-apiserver}" | tr a-z- A-Z_)=$k8s_dir/${c/#kube-api-server/kube-apiserver}"
  done
  echo "CONTAINERD=$containerd_dir/containerd"
  echo "CONTAINERD_SHIM=$containerd_dir/containerd-shim-runc-v2"
  echo "CTR=$containerd_dir/ctr"
  echo "CRICTL=$crictl_dir/crictl"
  echo "RUNC=$(command -v runc || echo /usr/sbin/runc)"
  echo "CNI_BIN_DIR=$cni_dir"
  echo "COREDNS=$coredns_dir/coredns"
  echo "LOCAL_PATH_PROVISIONER=$lpp_dir/local-path-provisioner"
  echo "PAUSE_IMAGE=$pause_image"
  echo "NODE_HELPER_IMAGE=$node_helper_image"
  # the node's machine-wide files: containerd's image store (kept across runs), its lock
  echo "NODE_CACHE=$cache/node"
}

# built DIR NAME...: every NAME is in DIR and DIR was finished
built() {
  local dir=$1 name
  shift
  [ -f "$dir/.built" ] || return 1
  for name in "$@"; do [ -x "$dir/$name" ] || return 1; done
}

cni_names() { local p; for p in $CNI_PLUGINS; do basename "$p"; done; }

missing_debs() {
  local p out=()
  for p in $NODE_DEBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || out+=("$p")
  done
  echo "${out[*]}"
}

image_built() { command -v podman >/dev/null && podman image exists "$1" 2>/dev/null; }

# shellcheck disable=SC2086
all_built() {
  built "$k8s_dir" $K8S_COMMANDS &&
    built "$etcd_dir" etcd &&
    built "$kwok_dir" kwok &&
    built "$containerd_dir" containerd containerd-shim-runc-v2 ctr &&
    built "$crictl_dir" crictl &&
    built "$cni_dir" $(cni_names) &&
    built "$coredns_dir" coredns &&
    built "$lpp_dir" local-path-provisioner &&
    [ -z "$(missing_debs)" ] &&
    image_built "$pause_image" &&
    image_built "$node_helper_image"
}

if all_built; then
  print_paths
  exit 0
fi
if [ "$mode" = check ]; then
  echo "the Kubernetes test tools are not built yet; run: make k8s-tools" >&2
  exit 1
fi

command -v go >/dev/null || { echo "Go is needed to build the Kubernetes test tools" >&2; exit 1; }
# Every pinned module asks for go <= 1.26.8; use the installed Go and never fetch another.
export GOTOOLCHAIN=local
export GOFLAGS=-buildvcs=false
export CGO_ENABLED=0
mkdir -p "$cache"

# One build at a time per cache (several engineers and CI jobs may call this at once).
exec 9>"$cache/.k8s-tools.lock"
flock 9

work=$(mktemp -d "${TMPDIR:-/tmp}/lakehub-k8s-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# finish DIR NAME...: move freshly built binaries into their versioned folder atomically.
finish() {
  local dir=$1 name tmp
  shift
  mkdir -p "$(dirname "$dir")"
  tmp=$(mktemp -d "$(dirname "$dir")/.$(basename "$dir").XXXXXX")
  chmod 755 "$tmp"
  for name in "$@"; do mv "$work/bin/$name" "$tmp/$name"; done
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

# go_install DIR NAMES LDFLAGS PACKAGE@VERSION...: `go install` into $work/bin, then finish
go_install() {
  local dir=$1 names=$2 ldflags=$3 t0=$SECONDS
  shift 3
  say "building $(basename "$dir")"
  GOBIN=$work/bin go install -trimpath -ldflags "-s -w $ldflags" "$@" >&2
  # shellcheck disable=SC2086
  finish "$dir" $names
  say "$(basename "$dir") built in $((SECONDS - t0)) s: $dir"
}

build_k8s() {
  local t0=$SECONDS minor=${K8S_VERSION#v1.} c pkgs=() version_pkg
  minor=${minor%%.*}
  for c in $K8S_COMMANDS; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  say "building $K8S_COMMANDS of Kubernetes $K8S_VERSION in one go build (a cold build takes a long time)"
  # staging modules are published as v0.<minor>.<patch> of the same release
  throwaway_module "$work/k8s" k8s.io/kubernetes "$K8S_VERSION" "v0.${K8S_VERSION#v1.}"
  (
    cd "$work/k8s"
    go get "${pkgs[@]/%/@$K8S_VERSION}" >&2
    ldflags="-s -w"
    for version_pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $version_pkg.gitVersion=$K8S_VERSION -X $version_pkg.gitMajor=1"
      ldflags+=" -X $version_pkg.gitMinor=$minor -X $version_pkg.gitTreeState=clean"
    done
    go build -trimpath -o "$work/bin/" -ldflags "$ldflags" "${pkgs[@]}" >&2
  )
  # shellcheck disable=SC2086
  finish "$k8s_dir" $K8S_COMMANDS
  say "$K8S_COMMANDS built in $((SECONDS - t0)) s: $k8s_dir"
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

# kwok, containerd, crictl, the CNI plugins, CoreDNS and local-path-provisioner have no
# local replace directives: plain `go install` works for them.
build_kwok() {
  go_install "$kwok_dir" kwok "" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_containerd() {
  local m=github.com/containerd/containerd/v2
  go_install "$containerd_dir" "containerd containerd-shim-runc-v2 ctr" \
    "-X $m/version.Version=$CONTAINERD_VERSION" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" \
    "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$m/cmd/ctr@$CONTAINERD_VERSION"
}

build_crictl() {
  go_install "$crictl_dir" crictl "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}

build_cni() {
  local m=github.com/containernetworking/plugins p pkgs=()
  for p in $CNI_PLUGINS; do pkgs+=("$m/plugins/$p@$CNI_PLUGINS_VERSION"); done
  go_install "$cni_dir" "$(cni_names | tr '\n' ' ')" \
    "-X $m/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" "${pkgs[@]}"
}

build_coredns() {
  go_install "$coredns_dir" coredns "" "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_local_path_provisioner() {
  go_install "$lpp_dir" local-path-provisioner "-X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
}

ensure_debs() {
  local missing
  missing=$(missing_debs)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing Debian packages: $missing (as root: apt-get install $missing)" >&2
    exit 1
  fi
  say "installing $missing (apt)"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
}

# podman_build IMAGE CONTEXT CONTAINERFILE: FROM scratch with COPY only, so no container is
# run and podman's runtime settings do not matter.  Under the image build lock shared with
# scripts/build-images.sh.
podman_build() {
  local image=$1 context=$2 containerfile=$3 t0=$SECONDS
  (
    exec 8>"$cache/.lock"
    if ! flock -n 8; then
      say "waiting for another image build to finish (lock $cache/.lock)"
      flock 8
    fi
    podman build --pull=never --network=none -f "$containerfile" -t "$image" "$context" >&2
  )
  say "$image built in $((SECONDS - t0)) s"
}

build_pause_image() {
  mkdir -p "$work/pause"
  (cd "$top/images/pause" && go build -trimpath -ldflags "-s -w" -o "$work/pause/pause" .)
  podman_build "$pause_image" "$work/pause" "$top/images/pause/Containerfile"
}

build_node_helper_image() {
  local root=$work/node-helper/rootfs applet
  mkdir -p "$root/bin" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  # one symbolic link per applet (bin/sh, usr/bin/env, ...), all to /bin/busybox
  for applet in $("$root/bin/busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
  done
  podman_build "$node_helper_image" "$work/node-helper" "$top/images/node-helper/Containerfile"
}

mkdir -p "$work/bin"
ensure_debs
built "$etcd_dir" etcd || build_etcd
built "$kwok_dir" kwok || build_kwok
built "$cni_dir" $(cni_names) || build_cni
built "$lpp_dir" local-path-provisioner || build_local_path_provisioner
built "$coredns_dir" coredns || build_coredns
built "$crictl_dir" crictl || build_crictl
built "$containerd_dir" containerd containerd-shim-runc-v2 ctr || build_containerd
# shellcheck disable=SC2086
built "$k8s_dir" $K8S_COMMANDS || build_k8s
image_built "$pause_image" || build_pause_image
node_helper_image=$(node_helper_name)
image_built "$node_helper_image" || build_node_helper_image
print_paths
