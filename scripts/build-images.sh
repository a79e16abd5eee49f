#!/usr/bin/env bash
# Build lakehub's container images with podman (docker where podman is absent).
#
# usage: scripts/build-images.sh [all|singleuser|hub|proxy]        (default: all)
#
#   singleuser  $IMAGE_PREFIX/singleuser:$IMAGE_TAG from images/singleuser/Dockerfile
#   hub         $IMAGE_PREFIX/hub:$IMAGE_TAG from images/hub/Dockerfile, FROM
#               quay.io/jupyterhub/k8s-hub:4.4.0 or, where that cannot be had, FROM
#               $IMAGE_PREFIX/hub-base:4.4.0 (images/hub-base/Dockerfile, built here)
#   proxy       $IMAGE_PREFIX/configurable-http-proxy:<npm version> from images/proxy/
#
# Base images. The singleuser image is built FROM python:3.11-slim-bookworm when that is
# in local storage or can be pulled; otherwise FROM a Debian bookworm base made here
# (debootstrap into a cache folder, then `import` as localhost/lakehub-bookworm-base:<recipe
# hash>). The hub image is built FROM the real z2jh hub image when it is in local storage
# or can be pulled; otherwise the equivalent hub-base is built FROM that same bookworm base
# (the z2jh 4.4.0 hub's Python lock and Debian packages) and the hub image FROM it. The
# proxy image is built FROM a Debian trixie base with Debian's nodejs (made the same way),
# because configurable-http-proxy 5 needs Node.js 20 and bookworm has 18.
#
# Nothing is fetched inside a build (--network=none): Python packages come from a
# wheelhouse resolved on this host for the base image's own Python (its version, glibc
# and every manylinux tag; source-only packages built into wheels here first), Debian
# packages from a folder the host's apt downloads against the base's package database,
# npm packages from a folder made by `npm ci` on this host. Each is cached by the hash of
# what produced it (see scripts/lib/images.sh).
#
# Idempotent: a second run reuses the bases, the wheelhouses and the package folders, and
# skips the engine for every image whose label org.lakehub.build-key already matches its
# inputs; it takes seconds. With LAKEHUB_IMAGES_OFFLINE=auto a failed pull is not retried
# for an hour.
#
# Environment:
#   LAKEHUB_HOME            state folder (default <repo>/.lakehub); podman's configuration
#                           for these builds goes to $LAKEHUB_HOME/podman/containers.conf
#                           (CONTAINERS_CONF), never to /etc
#   LAKEHUB_IMAGE_CACHE     root file systems, wheelhouses, package folders, build contexts
#                           (default /var/cache/lakehub as root, ~/.cache/lakehub otherwise)
#   LAKEHUB_IMAGES_OFFLINE  auto (default: pull if possible) | 1 (never pull) | 0 (must pull)
#   LAKEHUB_WHEELHOUSE      1 (default) | 0: no wheelhouse for singleuser and hub, pip in
#                           their builds uses the index (hub-base always uses one)
#   CONTAINER_ENGINE        podman | docker
#   IMAGE_PREFIX, IMAGE_TAG default localhost/lakehub and the version in pyproject.toml
#   SINGLEUSER_BASE         default docker.io/library/python:3.11-slim-bookworm
#   HUB_BASE                default quay.io/jupyterhub/k8s-hub:4.4.0
#   PROXY_BASE              an image with Node.js >= 20 to build the proxy FROM (default:
#                           the local trixie base)
#   DEBIAN_MIRROR           default: the mirror apt uses on this machine
#
# What was built (names, bases, sizes, step times) is merged into
# $LAKEHUB_HOME/images/build.json (one entry per image); tests/test_image.py reads it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
export LAKEHUB_HOME=${LAKEHUB_HOME:-$top/.lakehub}
what=${1:-all}
case $what in
  all | singleuser | hub | proxy) ;;
  *)
    echo "usage: $0 [all|singleuser|hub|proxy]" >&2
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
z2jh_version=${hub_public##*:}
chp_version=$(sed -n 's/.*"configurable-http-proxy": *"\([^"]*\)".*/\1/p' "$top/images/proxy/package.json")
state_dir=$LAKEHUB_HOME/images

# the debootstrap recipes of the local bases (their hash names the base image)
su_suite=bookworm
su_include=python3,python3-venv,ca-certificates,procps
proxy_suite=trixie
proxy_include=nodejs,ca-certificates
# the host packages that build the hub-base's source-only wheels (pycurl, psycopg2)
hub_base_build_debs="gcc python3-dev libcurl4-openssl-dev libssl-dev libpq-dev"

# shellcheck source=scripts/lib/images.sh
. "$top/scripts/lib/images.sh"

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

# ---------------------------------------------------------------- one build at a time
mkdir -p "$cache" "$state_dir"
exec 9>"$cache/.lock"
if ! flock -n 9; then
  say "waiting for another image build to finish (lock $cache/.lock)"
  flock 9
fi

# ---------------------------------------------------------------- the images
# one JSON object per image built in this run, merged into build.json at the end
declare -A record=()

reset_timings() {
  timing_base=0 timing_debs=0 timing_wheelhouse=0 timing_npm=0 timing_build=0
  wheelhouse="" debs="" npm_dir=""
}

build_singleuser() {
  local image=$prefix/singleuser:$tag pyinfo kind=public
  reset_timings
  if available "$su_public"; then
    base_image=$su_public
  else
    kind=debootstrap
    ensure_debian_base bookworm-base "$su_suite" "$su_include"
  fi
  pyinfo=$(probe_python "$base_image") || die "cannot run python3 in $base_image"
  ensure_deb_folder singleuser "$base_image" "$su_suite" "$top/images/singleuser/debian-packages.txt"
  if [ "$use_wheelhouse" = 1 ]; then
    ensure_wheelhouse singleuser lock "$pyinfo" "$top/requirements/analysis.txt"
  fi
  stage_context singleuser requirements/analysis.txt lakehub notebooks images/singleuser
  context_add "$debs" debs
  build "$image" "$top/images/singleuser/Dockerfile" "$base_image"
  record[singleuser]=$(printf '{"image": "%s", "base": "%s", "base_kind": "%s", "python": "%s", "wheelhouse": "%s", "debs": "%s", "size_bytes": %s, "seconds": {"base": %s, "debs": %s, "wheelhouse": %s, "build": %s}}' \
    "$image" "$base_image" "$kind" "${pyinfo%% *}" "$wheelhouse" "$debs" "$size" \
    "$timing_base" "$timing_debs" "$timing_wheelhouse" "$timing_build")
}

# The equivalent of quay.io/jupyterhub/k8s-hub:$z2jh_version, FROM the bookworm base.
build_hub_base() { # sets hub_base
  # its Dockerfile installs only from the wheelhouse, whatever LAKEHUB_WHEELHOUSE says
  local pyinfo use_wheelhouse=1
  hub_base=$prefix/hub-base:$z2jh_version
  reset_timings
  ensure_debian_base bookworm-base "$su_suite" "$su_include"
  pyinfo=$(probe_python "$base_image") || die "cannot run python3 in $base_image"
  ensure_deb_folder hub-base "$base_image" "$su_suite" "$top/images/hub-base/debian-packages.txt"
  # upstream builds pycurl from source too (its wheels bundle their own libcurl)
  wheel_from_source=pycurl wheel_build_debs=$hub_base_build_debs \
    ensure_wheelhouse hub-base lock "$pyinfo" "$top/images/hub-base/requirements.txt"
  stage_context hub-base images/hub-base
  context_add "$debs" debs
  build "$hub_base" "$top/images/hub-base/Dockerfile" "$base_image"
  record[hub-base]=$(printf '{"image": "%s", "base": "%s", "equivalent_of": "%s", "python": "%s", "wheelhouse": "%s", "debs": "%s", "size_bytes": %s, "seconds": {"base": %s, "debs": %s, "wheelhouse": %s, "build": %s}}' \
    "$hub_base" "$base_image" "$hub_public" "${pyinfo%% *}" "$wheelhouse" "$debs" "$size" \
    "$timing_base" "$timing_debs" "$timing_wheelhouse" "$timing_build")
}

build_hub() {
  local image=$prefix/hub:$tag pyinfo base kind=public
  if available "$hub_public"; then
    base=$hub_public
  else
    say "building the equivalent of $hub_public here (images/hub-base)"
    kind=equivalent
    build_hub_base
    base=$hub_base
  fi
  reset_timings
  pyinfo=$(probe_python "$base") || die "cannot run python3 in $base"
  if [ "$use_wheelhouse" = 1 ]; then
    ensure_wheelhouse hub deps "$pyinfo" -c "$top/requirements/hub.txt" -r "$top/images/hub/requirements.in"
  fi
  stage_context hub requirements/hub.txt images/hub \
    lakehub sitefile tokens courses spawner_hooks hub_services hub_config
  build "$image" "$top/images/hub/Dockerfile" "$base"
  record[hub]=$(printf '{"image": "%s", "base": "%s", "base_kind": "%s", "python": "%s", "wheelhouse": "%s", "size_bytes": %s, "seconds": {"wheelhouse": %s, "build": %s}}' \
    "$image" "$base" "$kind" "${pyinfo%% *}" "$wheelhouse" "$size" "$timing_wheelhouse" "$timing_build")
}

build_proxy() {
  local image=$prefix/configurable-http-proxy:$chp_version base kind=debootstrap
  [ -n "$chp_version" ] || die "images/proxy/package.json names no configurable-http-proxy version"
  reset_timings
  if [ -n "${PROXY_BASE:-}" ]; then
    kind=given
    available "$PROXY_BASE" || die "PROXY_BASE $PROXY_BASE is not available"
    base=$PROXY_BASE
  else
    ensure_debian_base trixie-node-base "$proxy_suite" "$proxy_include"
    base=$base_image
  fi
  ensure_npm_folder proxy "$top/images/proxy"
  stage_context proxy images/proxy
  context_add "$npm_dir" npm
  build "$image" "$top/images/proxy/Dockerfile" "$base"
  record[proxy]=$(printf '{"image": "%s", "base": "%s", "base_kind": "%s", "npm": "%s", "size_bytes": %s, "seconds": {"base": %s, "npm": %s, "build": %s}}' \
    "$image" "$base" "$kind" "$npm_dir" "$size" "$timing_base" "$timing_npm" "$timing_build")
}

start=$SECONDS
case $what in
  singleuser) build_singleuser ;;
  hub) build_hub ;;
  proxy) build_proxy ;;
  all)
    build_singleuser
    build_hub
    build_proxy
    ;;
esac

# build.json: this run's images replace their entries; the others are kept
records=()
for k in "${!record[@]}"; do records+=("$k=${record[$k]}"); done
python3 "$top/scripts/lib/build_record.py" "$state_dir/build.json" "$engine" "${CONTAINERS_CONF:-}" \
  "$what" "$(since "$start")" "${records[@]}"
say "done in $(since "$start") s (details: $state_dir/build.json)"
