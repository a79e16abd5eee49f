#!/usr/bin/env bash
# Build (or reuse) the real helm CLI from its Go module; print the binary's path on stdout.
#
# usage: scripts/ensure-helm.sh            (progress on stderr, path on stdout)
#        HELM=$(bash scripts/ensure-helm.sh)
#
# The binary is cached outside the repository, one folder per version:
#   root:       /var/cache/lakehub/helm-<version>/bin/helm
#   otherwise:  $LAKEHUB_HOME/cache/helm-<version>/bin/helm   (LAKEHUB_HOME defaults to .lakehub)
# LAKEHUB_HELM_CACHE overrides the parent folder. A second run only checks the binary.
# Needs Go (the module proxy, or a warm module cache); helm's go.mod asks for Go 1.26.
# A cold build takes about 3.5 minutes on two cores (module downloads included).
set -euo pipefail

# The one place the helm version is pinned. Its client-go (v0.37) decides the
# Kubernetes version helm assumes when no cluster is asked (--kube-version overrides).
HELM_VERSION=${LAKEHUB_HELM_VERSION:-v3.22.0}
HELM_K8S_MINOR=37

top=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${LAKEHUB_HELM_CACHE:-}" ]; then
  base=$LAKEHUB_HELM_CACHE
elif [ "$(id -u)" = 0 ]; then
  base=/var/cache/lakehub
else
  base=${LAKEHUB_HOME:-$top/.lakehub}/cache
fi
dir=$base/helm-$HELM_VERSION
bin=$dir/bin/helm

have_it() {
  [ -x "$bin" ] && [ "$("$bin" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]
}

if have_it; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [ -x "$candidate" ]; then PATH=$(dirname "$candidate"):$PATH; break; fi
  done
fi
command -v go >/dev/null 2>&1 || {
  echo "ensure-helm: Go is not installed; install Go >= 1.26 (https://go.dev/dl/) or put a" \
       "helm $HELM_VERSION binary at $bin" >&2
  exit 1
}

mkdir -p "$base"
# One builder at a time (tests and make targets may ask at once); the others wait, then reuse.
exec 9>"$base/helm-$HELM_VERSION.lock"
flock 9
if have_it; then
  echo "$bin"
  exit 0
fi

echo "==> building helm $HELM_VERSION from its Go module into $dir (first time only, a few minutes)" >&2
started=$(date +%s)
staging=$(mktemp -d "$base/.helm-$HELM_VERSION.XXXXXX")
trap 'rm -rf "$staging"' EXIT
chmod 755 "$staging"
ldflags="-w -s"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done
# auto: use the installed Go when it is new enough, else fetch the toolchain helm asks for
GOTOOLCHAIN=auto CGO_ENABLED=0 GOBIN=$staging/bin GOFLAGS=-buildvcs=false \
  go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
"$staging/bin/helm" version --template '{{.Version}}' >/dev/null
rm -rf "$dir"
mv "$staging" "$dir"
trap - EXIT
echo "==> helm $HELM_VERSION ready: $bin ($(($(date +%s) - started)) s)" >&2
echo "$bin"
