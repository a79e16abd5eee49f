#!/usr/bin/env bash
# Build lakehub's container images with podman (docker where podman is absent).
#
# usage: scripts/build-images.sh [all|singleuser|hub]        (default: all)
#
#   singleuser  $IMAGE_PREFIX/singleuser:$IMAGE_TAG from images/singleuser/Dockerfile
#   hub         $IMAGE_PREFIX/hub:$IMAGE_TAG from images/hub/Dockerfile (FROM k8s-hub:4.4.0)
#
# Base images. The singleuser image is built FROM python:3.11-slim-bookworm when that is
# in local storage or can be pulled. Where nothing can be pulled (the offline test path)
# it is built FROM a Debian bookworm base made here: debootstrap into a cache folder, then
# `import` as localhost/lakehub-bookworm-base:<recipe hash>, reused while it is in the
# engine's storage. The hub image has no such substitute: it is built when
# quay.io/jupyterhub/k8s-hub:4.4.0 is in local storage or can be pulled, and otherwise
# skipped with a message (`all` still succeeds; asking for `hub` alone fails).
#
# Python packages. A wheelhouse is resolved on this host for the base image's own Python
# (its version, glibc and every manylinux tag), cached per lock file hash, and
# bind-mounted into the build, which then runs with --network=none. Source-only packages
# (rucio-jupyterlab) are built into wheels on the host first.
#
# Idempotent: a second run reuses the base, the wheelhouse and the engine's layer cache.
#
# Environment:
#   LAKEHUB_HOME            state folder (default <repo>/.lakehub); podman's configuration
#                           for these builds goes to $LAKEHUB_HOME/podman/containers.conf
#                           (CONTAINERS_CONF), never to /etc
#   LAKEHUB_IMAGE_CACHE     root fs, wheelhouses, build contexts (default /var/cache/lakehub
#                           as root, ~/.cache/lakehub otherwise), outside the repository
#   LAKEHUB_IMAGES_OFFLINE  auto (default: pull if possible) | 1 (never pull) | 0 (must pull)
#   LAKEHUB_WHEELHOUSE      1 (default) | 0: no wheelhouse, pip in the build uses the index
#   CONTAINER_ENGINE        podman | docker
#   IMAGE_PREFIX, IMAGE_TAG default localhost/lakehub and the version in pyproject.toml
#   SINGLEUSER_BASE         default docker.io/library/python:3.11-slim-bookworm
#   HUB_BASE                default quay.io/jupyterhub/k8s-hub:4.4.0
#   DEBIAN_MIRROR           default: the bookworm mirror apt uses on this machine
#
# What was built (names, bases, sizes, step times) is written to
# $LAKEHUB_HOME/images/build.json; tests/test_image.py reads it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
export LAKEHUB_HOME=${LAKEHUB_HOME:-$top/.lakehub}
what=${1:-all}
case $what in
  all | singleuser | hub) ;;
  *)
    echo "usage: $0 [all|singleuser|hub]" >&2
    exit 2
    ;;
esac

if [ "$(id -u)" = 0 ]; then
  cache=${LAKEHUB_IMAGE_CACHE:-/var/cache/lakehub}
else
  cache=${LAKEHUB_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lakehub}
fi
offline=${LAKEHUB_IMAGES_OFFLINE:-auto}
use_wheelhouse=${LAKEHUB_WHEELHOUSE:-1}
prefix=${IMAGE_PREFIX:-localhost/lakehub}
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$top/pyproject.toml" | head -n1)
tag=${IMAGE_TAG:-$version}
su_public=${SINGLEUSER_BASE:-docker.io/library/python:3.11-slim-bookworm}
hub_public=${HUB_BASE:-quay.io/jupyterhub/k8s-hub:4.4.0}
state_dir=$LAKEHUB_HOME/images

# the debootstrap recipe of the offline base; its hash names the base image
deb_suite=bookworm
deb_include=python3,python3-venv,ca-certificates,procps

say() { printf '==> %s\n' "$*"; }
die() {
  printf 'build-images: %s\n' "$*" >&2
  exit 1
}
since() { echo $((SECONDS - $1)); }

# ---------------------------------------------------------------- system packages
missing_debs() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || out+=("$p")
  done
  echo "${out[*]}"
}

ensure_debs() {
  command -v dpkg-query >/dev/null || return 0 # not Debian: rely on the commands checked later
  local missing
  missing=$(missing_debs "$@")
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing Debian packages: $missing (install them as root: apt-get install $missing)"
  fi
  say "installing $missing (apt)"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}

# ---------------------------------------------------------------- container engine
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v podman >/dev/null || { command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; }; then
    engine=podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  else
    die "no container engine: install podman (apt-get install podman runc) or start docker"
  fi
fi

if [ "$engine" = podman ]; then
  if [ "$(id -u)" = 0 ]; then
    ensure_debs podman runc
  else
    ensure_debs podman runc uidmap slirp4netns fuse-overlayfs
  fi
  # crun (Debian's default) fails here on setrlimit and hybrid cgroups; runc with explicit
  # ulimits works. Only this file is read while CONTAINERS_CONF points at it.
  conf=$LAKEHUB_HOME/podman/containers.conf
  want='# Written by scripts/build-images.sh; used through CONTAINERS_CONF, /etc is untouched.
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]

[engine]
runtime = "runc"'
  if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$want" >"$conf"
  fi
  export CONTAINERS_CONF=$conf
fi
command -v "$engine" >/dev/null || die "$engine is not installed"
if ! err=$("$engine" info 2>&1 >/dev/null); then
  die "$engine cannot run on this machine: $err"
fi

image_exists() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- one build at a time
mkdir -p "$cache" "$state_dir"
exec 9>"$cache/.lock"
if ! flock -n 9; then
  say "waiting for another image build to finish (lock $cache/.lock)"
  flock 9
fi

# Is IMAGE available, pulling it if allowed? (return 1: take the offline path)
available() {
  image_exists "$1" && return 0
  [ "$offline" = 1 ] && return 1
  say "pulling $1"
  if timeout 600 "$engine" pull "$1"; then
    return 0
  fi
  [ "$offline" = 0 ] && die "cannot pull $1 (LAKEHUB_IMAGES_OFFLINE=0)"
  say "cannot pull $1: taking the offline path"
  return 1
}

# ---------------------------------------------------------------- offline Debian base
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local m=""
  # deb822 files: the URIs of the stanza whose Suites contain the plain suite
  m=$(awk -v s="$deb_suite" '
        /^[[:space:]]*$/ { uri = ""; next }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s && uri != "") { print uri; exit } }
      ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    # one-line format, options in [...] skipped
    m=$(awk -v s="$deb_suite" '$1 == "deb" {
          i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
          if ($(i + 1) == s) { print $i; exit } }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

ensure_debian_base() { # sets base_image
  local arch key dir mirror t
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  key=$(printf 'debootstrap --variant=minbase --include=%s %s %s' "$deb_include" "$deb_suite" "$arch" |
    sha256sum | cut -c1-12)
  base_image=localhost/lakehub-bookworm-base:$key
  if image_exists "$base_image"; then
    say "base $base_image: reused"
    return
  fi
  [ "$(id -u)" = 0 ] || die "building the offline base needs root (debootstrap); run once as root"
  ensure_debs debootstrap
  t=$SECONDS
  dir=$cache/base/$key
  if [ ! -f "$dir/complete" ]; then
    mirror=$(debian_mirror)
    say "debootstrap $deb_suite ($arch, minbase + $deb_include) from $mirror into $dir/rootfs (about a minute)"
    rm -rf "$dir/rootfs"
    mkdir -p "$dir"
    debootstrap --variant=minbase --include="$deb_include" "$deb_suite" "$dir/rootfs" "$mirror"
    rm -rf "$dir/rootfs"/var/cache/apt/archives/*.deb "$dir/rootfs"/var/lib/apt/lists/* \
      "$dir/rootfs"/var/log/* "$dir/rootfs"/debootstrap
    touch "$dir/complete"
  else
    say "root fs $dir/rootfs: reused"
  fi
  say "importing the root fs as $base_image"
  tar -C "$dir/rootfs" --numeric-owner -cf - . |
    "$engine" import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      - "$base_image" >/dev/null
  timing_base=$(since "$t")
  say "base ready in ${timing_base} s"
}

# ---------------------------------------------------------------- wheelhouse
tools_python() { # a host venv with pip for resolving wheels
  local venv=$cache/tools py
  if [ ! -x "$venv/bin/pip" ]; then
    py=/usr/bin/python3
    [ -x "$py" ] || py=$(command -v python3)
    say "creating $venv (pip for the wheelhouse)" >&2
    "$py" -m venv "$venv" >&2
  fi
  echo "$venv/bin/python"
}

probe_python() { # IMAGE -> "version glibc machine" of the image's python3
  "$engine" run --rm --network=none --entrypoint python3 "$1" -c \
    'import platform; print(platform.python_version(), platform.libc_ver()[1], platform.machine())'
}

platform_args() { # GLIBC MACHINE -> --platform flags, newest manylinux first
  local glibc=$1 machine=$2 minor
  minor=${glibc#*.}
  for ((; minor >= 5; minor--)); do
    printf -- '--platform\nmanylinux_2_%s_%s\n' "$minor" "$machine"
  done
  if [ "$machine" = x86_64 ]; then
    printf -- '--platform\n%s\n' manylinux2014_x86_64 manylinux2010_x86_64 manylinux1_x86_64
  else
    printf -- '--platform\nmanylinux2014_%s\n' "$machine"
  fi
}

# ensure_wheelhouse NAME MODE PYINFO FILE...   sets wheelhouse
#   MODE lock: FILE is a complete lock, taken as is (--no-deps); source-only packages
#              are built into wheels on this host
#   MODE deps: FILE... are pip arguments resolved with dependencies, binary wheels only
ensure_wheelhouse() {
  local name=$1 mode=$2 pyinfo=$3
  shift 3
  local pyver glibc machine key dir tmp py n t f
  read -r pyver glibc machine <<<"$pyinfo"
  key=$( (
    echo "recipe 1 $mode $pyinfo"
    for f in "$@"; do [ -f "$f" ] && cat "$f" || echo "$f"; done
  ) | sha256sum | cut -c1-16)
  dir=$cache/wheelhouse/$name-$key
  if [ -f "$dir/.complete" ]; then
    say "wheelhouse $dir: reused ($(find "$dir" -name '*.whl' | wc -l) wheels)"
    wheelhouse=$dir
    return
  fi
  t=$SECONDS
  py=$(tools_python)
  tmp=$cache/wheelhouse/.partial-$name-$key
  rm -rf "$tmp"
  mkdir -p "$tmp"
  local abi=cp$(echo "$pyver" | cut -d. -f1,2 | tr -d .)
  local -a target
  mapfile -t target < <(platform_args "$glibc" "$machine")
  target+=(--python-version "$pyver" --implementation cp --abi "$abi")
  if [ "$mode" = lock ]; then
    n=$(grep -cE '^[A-Za-z0-9]' "$1")
    say "wheelhouse for Python $pyver (glibc $glibc, $machine): downloading $n pinned packages"
    env -u PIP_FIND_LINKS "$py" -m pip download --no-deps --prefer-binary --progress-bar off \
      "${target[@]}" -d "$tmp" -r "$1" |
      awk -v n="$n" '/^Collecting /{ i++; printf "    [%d/%d] %s\n", i, n, $2; fflush() }'
    for f in "$tmp"/*.tar.gz "$tmp"/*.zip; do
      [ -e "$f" ] || continue
      say "building a wheel from the source-only $(basename "$f")"
      env -u PIP_FIND_LINKS "$py" -m pip wheel --no-deps --progress-bar off -q -w "$tmp" "$f"
      rm -f "$f"
    done
    "$py" - "$1" "$tmp" <<'PY'
import re
import sys
from pathlib import Path


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


lock, folder = sys.argv[1], Path(sys.argv[2])
pins = {}
for line in open(lock):
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
    if m:
        pins[norm(m.group(1))] = m.group(2)
have = {}
for whl in folder.glob("*.whl"):
    name, ver = whl.name.split("-")[:2]
    have[norm(name)] = ver
missing = sorted(f"{n}=={v}" for n, v in pins.items() if have.get(n) != v)
if missing:
    sys.exit("wheelhouse lacks: " + ", ".join(missing))
print(f"    all {len(pins)} pins have a wheel")
PY
  else
    say "wheelhouse for Python $pyver (glibc $glibc, $machine): resolving $*"
    env -u PIP_FIND_LINKS "$py" -m pip download --only-binary=:all: --progress-bar off \
      "${target[@]}" -d "$tmp" "$@" |
      awk '/^Collecting /{ i++; printf "    [%d] %s\n", i, $2; fflush() }'
  fi
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  wheelhouse=$dir
  timing_wheelhouse=$(since "$t")
  say "wheelhouse ready in ${timing_wheelhouse} s"
}

# ---------------------------------------------------------------- build context
# stage_context NAME PATH...: a fresh folder with only the given repository paths (no
# caches), normalised modes and times so the layer cache sees content only, plus wheels/.
stage_context() {
  local name=$1
  shift
  context=$cache/context/$name
  rm -rf "$context"
  mkdir -p "$context/wheels"
  tar -C "$top" --exclude=__pycache__ --exclude='*.pyc' --exclude=.ipynb_checkpoints \
    -cf - "$@" | tar -C "$context" -xf -
  chmod -R u=rwX,go=rX "$context"
  find "$context" -exec touch -h -d @315532800 {} +
  if [ "$use_wheelhouse" = 1 ]; then
    cp -al "$wheelhouse/." "$context/wheels/" 2>/dev/null || cp -a "$wheelhouse/." "$context/wheels/"
    rm -f "$context/wheels/.complete"
  fi
}

build() { # IMAGE DOCKERFILE BASE
  local image=$1 dockerfile=$2 base=$3 t previous net=(--network=none)
  [ "$use_wheelhouse" = 1 ] || net=()
  t=$SECONDS
  previous=$("$engine" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  say "building $image FROM $base"
  "$engine" build "${net[@]}" --build-arg BASE_IMAGE="$base" -f "$dockerfile" -t "$image" "$context"
  # the image this tag named before is now untagged: drop it (and its unshared layers)
  if [ -n "$previous" ] && [ "$previous" != "$("$engine" image inspect --format '{{.Id}}' "$image")" ]; then
    "$engine" rmi "$previous" >/dev/null 2>&1 || true
  fi
  timing_build=$(since "$t")
  size=$("$engine" image inspect --format '{{.Size}}' "$image")
  say "$image built in ${timing_build} s, $((size / 1000000)) MB"
}

# ---------------------------------------------------------------- the images
json_su=null
json_hub=null

build_singleuser() {
  local image=$prefix/singleuser:$tag pyinfo kind=public
  timing_base=0 timing_wheelhouse=0 timing_build=0 wheelhouse=""
  if available "$su_public"; then
    base_image=$su_public
  else
    kind=debootstrap
    ensure_debian_base
  fi
  pyinfo=$(probe_python "$base_image") || die "cannot run python3 in $base_image"
  if [ "$use_wheelhouse" = 1 ]; then
    ensure_wheelhouse singleuser lock "$pyinfo" "$top/requirements/analysis.txt"
  fi
  stage_context singleuser requirements/analysis.txt lakehub notebooks images/singleuser
  build "$image" "$top/images/singleuser/Dockerfile" "$base_image"
  json_su=$(printf '{"image": "%s", "base": "%s", "base_kind": "%s", "python": "%s", "wheelhouse": "%s", "size_bytes": %s, "seconds": {"base": %s, "wheelhouse": %s, "build": %s}}' \
    "$image" "$base_image" "$kind" "${pyinfo%% *}" "$wheelhouse" "$size" \
    "$timing_base" "$timing_wheelhouse" "$timing_build")
}

build_hub() {
  local image=$prefix/hub:$tag pyinfo
  timing_base=0 timing_wheelhouse=0 timing_build=0 wheelhouse=""
  if ! available "$hub_public"; then
    say "hub image SKIPPED: $hub_public is not in local storage and cannot be pulled here."
    say "  Build it where the registry is reachable, or load the base first"
    say "  ($engine load -i k8s-hub-4.4.0.tar) and run this again."
    json_hub='{"skipped": "base image not available offline"}'
    [ "$what" = hub ] && return 1
    return 0
  fi
  pyinfo=$(probe_python "$hub_public") || die "cannot run python3 in $hub_public"
  if [ "$use_wheelhouse" = 1 ]; then
    ensure_wheelhouse hub deps "$pyinfo" -c "$top/requirements/hub.txt" -r "$top/images/hub/requirements.in"
  fi
  stage_context hub requirements/hub.txt images/hub hub_config spawner_hooks hub_services
  build "$image" "$top/images/hub/Dockerfile" "$hub_public"
  json_hub=$(printf '{"image": "%s", "base": "%s", "python": "%s", "size_bytes": %s, "seconds": {"wheelhouse": %s, "build": %s}}' \
    "$image" "$hub_public" "${pyinfo%% *}" "$size" "$timing_wheelhouse" "$timing_build")
}

start=$SECONDS
rc=0
case $what in
  singleuser) build_singleuser ;;
  hub) build_hub || rc=3 ;;
  all)
    build_singleuser
    build_hub
    ;;
esac

printf '{"engine": "%s", "containers_conf": "%s", "singleuser": %s, "hub": %s, "seconds": %s}\n' \
  "$engine" "${CONTAINERS_CONF:-}" "$json_su" "$json_hub" "$(since "$start")" >"$state_dir/build.json.tmp"
mv "$state_dir/build.json.tmp" "$state_dir/build.json"
say "done in $(since "$start") s (details: $state_dir/build.json)"
exit "$rc"
