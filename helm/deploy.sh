#!/usr/bin/env bash
# lakehub on Kubernetes with the real helm CLI: what `make template|diff|deploy|undeploy` run.
#
# usage: helm/deploy.sh template|diff|deploy|undeploy|dependencies
#
# Settings (environment; the Makefile passes its variables through):
#   SITE          the site file (required)
#   RELEASE       helm release name (default: lakehub)
#   NAMESPACE     default: kubernetes.namespace of the site file
#   KUBE_CONTEXT  kubectl/helm context (default: the current one of $KUBECONFIG)
#   KUBECTL       the kubectl to use (default: kubectl on PATH, else the one that
#                 scripts/ensure-k8s-tools.sh built, if any)
#   VALUES        extra values files layered over the rendered ones (space-separated)
#   TIMEOUT       helm --timeout for deploy/undeploy (default: 10m)
#   PURGE=1       undeploy: also delete the users' volumes, the shared cache and the hub's
#                 database volume
#   LAKEHUB_CHARTS  a folder of chart archives (jupyterhub-4.4.0.tgz, dask-gateway-2026.3.0.tgz)
#                 to take the dependencies from where the chart repositories cannot be
#                 reached; unset: `helm dependency build` downloads them
#
# `helm/deploy.sh dependencies` only puts the dependencies into helm/lakehub/charts/
# (git-ignored); every other command does that first.
# The rendered values are kept in $LAKEHUB_HOME/deploy/<release>/values.yaml. Progress
# goes to stderr; `template` prints only manifests on stdout.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
command=${1:-}
case "$command" in
  template | diff | deploy | undeploy | dependencies) ;;
  *)
    echo "usage: helm/deploy.sh template|diff|deploy|undeploy|dependencies  (SITE=... required)" >&2
    exit 2
    ;;
esac

say() { echo "==> $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

CHART=$top/helm/lakehub
HELM=$(bash "$top/scripts/ensure-helm.sh")

# --- the dependencies (z2jh and dask-gateway) ---------------------------------------------
# name version, one line each, as helm/lakehub/Chart.yaml pins them
dependencies() {
  awk '
    /^dependencies:/ { inside = 1; next }
    inside && /^[^ #-]/ { inside = 0 }
    inside && $1 == "-" && $2 == "name:" { name = $3 }
    inside && $1 == "version:" { print name, $2 }
  ' "$CHART/Chart.yaml"
}

# Put each dependency's archive into helm/lakehub/charts/: copied from $LAKEHUB_CHARTS when
# set (atomically, only when it differs), else downloaded by `helm dependency build`.
stage_dependencies() {
  local name version archive want=()
  mkdir -p "$CHART/charts"
  if [ -z "${LAKEHUB_CHARTS:-}" ]; then
    say "helm dependency build ($(dependencies | tr '\n' ' ')into helm/lakehub/charts/)"
    timeout 300 "$HELM" dependency build "$CHART" >&2 ||
      die "cannot download the chart dependencies; where the chart repositories cannot be" \
        "reached, set LAKEHUB_CHARTS to a folder holding $(dependencies | awk '{printf "%s-%s.tgz ", $1, $2}')"
    return
  fi
  [ -d "$LAKEHUB_CHARTS" ] || die "LAKEHUB_CHARTS=$LAKEHUB_CHARTS is not a folder"
  while read -r name version; do
    archive=$name-$version.tgz
    want+=("$archive")
    [ -f "$LAKEHUB_CHARTS/$archive" ] ||
      die "LAKEHUB_CHARTS: $LAKEHUB_CHARTS/$archive is missing (helm/lakehub/Chart.yaml pins $name $version)"
    if ! cmp -s "$LAKEHUB_CHARTS/$archive" "$CHART/charts/$archive"; then
      cp "$LAKEHUB_CHARTS/$archive" "$CHART/charts/.$archive.tmp"
      mv "$CHART/charts/.$archive.tmp" "$CHART/charts/$archive"
      say "dependency $archive from $LAKEHUB_CHARTS"
    fi
  done < <(dependencies)
  # archives of other versions would be rendered too: remove them
  for archive in "$CHART"/charts/*.tgz; do
    [ -e "$archive" ] || continue
    printf '%s\n' "${want[@]}" | grep -qxF "$(basename "$archive")" || rm -f "$archive"
  done
}

if [ "$command" = dependencies ]; then
  stage_dependencies
  exit 0
fi

# --- the site: namespace, values ------------------------------------------------------------
[ -n "${SITE:-}" ] || die "set SITE to your site file, e.g. SITE=examples/site.cluster.yaml"
[ -f "$SITE" ] || die "$SITE: the site file does not exist"
RELEASE=${RELEASE:-lakehub}
TIMEOUT=${TIMEOUT:-10m}
LAKEHUB_HOME=${LAKEHUB_HOME:-$top/.lakehub}
PY=${PY:-$LAKEHUB_HOME/venvs/dev/bin/python}
[ -x "$PY" ] || die "$PY is missing; run 'make envs' first"
if [ -z "${NAMESPACE:-}" ]; then
  NAMESPACE=$("$PY" -m hub_config.values "$SITE" --print namespace) || exit 1
fi
work=$LAKEHUB_HOME/deploy/$RELEASE
mkdir -p "$work"
values=$work/values.yaml

render_values() {
  "$PY" -m hub_config.values "$SITE" -o "$values" || exit 1
  say "values rendered from $SITE: $values"
}

values_args=(-f "$values")
for extra in ${VALUES:-}; do
  [ -f "$extra" ] || die "VALUES: $extra does not exist"
  values_args+=(-f "$extra")
done

kube_args=(--namespace "$NAMESPACE")
kubectl_args=(--namespace "$NAMESPACE")
if [ -n "${KUBE_CONTEXT:-}" ]; then
  kube_args+=(--kube-context "$KUBE_CONTEXT")
  kubectl_args+=(--context "$KUBE_CONTEXT")
fi

# kubectl: $KUBECTL, else the one on PATH, else the one `make k8s-tools` built (the version
# of the test node's Kubernetes)
find_kubectl() {
  if [ -n "${KUBECTL:-}" ]; then
    [ -x "$KUBECTL" ] || die "KUBECTL=$KUBECTL is not an executable"
    return
  fi
  KUBECTL=$(command -v kubectl 2>/dev/null) && return
  KUBECTL=$(bash "$top/scripts/ensure-k8s-tools.sh" --check 2>/dev/null | sed -n 's/^KUBECTL=//p') &&
    [ -x "$KUBECTL" ] && return
  KUBECTL=
}
find_kubectl
have_kubectl() { [ -n "$KUBECTL" ]; }
kubectl() { "$KUBECTL" "$@"; }

show_target() {
  local context=${KUBE_CONTEXT:-}
  if [ -z "$context" ]; then
    if have_kubectl; then
      context=$(kubectl config current-context 2>/dev/null) ||
        die "no current kubectl context; set one (kubectl config use-context) or KUBE_CONTEXT"
    else
      context="(current context of ${KUBECONFIG:-~/.kube/config}; kubectl not found)"
    fi
  fi
  say "cluster context: $context"
  say "namespace:       $NAMESPACE"
  say "release:         $RELEASE (chart helm/lakehub with $(dependencies | tr '\n' ' '))"
  say "site file:       $SITE"
  say "helm:            $HELM ($("$HELM" version --template '{{.Version}}'))"
  say "kubectl:         ${KUBECTL:-not found (neither on PATH nor built by make k8s-tools)}"
}

lint() {
  say "helm lint --strict"
  "$HELM" lint --strict "$CHART" "${values_args[@]}" >&2 ||
    die "helm lint found problems (above)"
}

# Manifests without Secrets (their content never reaches a terminal or a diff).
drop_secrets() {
  awk '
    function flush() {
      sub(/\n+$/, "\n", doc)  # helm get manifest and helm template end documents differently
      if (doc != "" && !secret) printf "%s", doc
      doc = ""; secret = 0
    }
    /^---/ { flush(); doc = $0 "\n"; next }
    /^kind: Secret[[:space:]]*$/ { secret = 1 }
    { doc = doc $0 "\n" }
    END { flush() }
  '
}

rendered_diff() {
  local current=$work/current.yaml new=$work/new.yaml
  "$HELM" get manifest "$RELEASE" "${kube_args[@]}" 2>/dev/null | drop_secrets >"$current" || true
  "$HELM" template "$RELEASE" "$CHART" "${kube_args[@]}" "${values_args[@]}" \
    --no-hooks --dry-run=server | drop_secrets >"$new"
  if [ ! -s "$current" ]; then
    say "release $RELEASE is not installed in $NAMESPACE: everything below is new"
  fi
  if diff -u --label "installed ($RELEASE)" --label "after this deploy" "$current" "$new" >&2; then
    say "no changes (Secrets are not compared)"
  else
    say "the changes above would be applied (Secrets are not compared)"
  fi
}

show_diff() {
  if "$HELM" plugin list 2>/dev/null | awk 'NR > 1 {print $1}' | grep -qx diff; then
    say "helm diff upgrade"
    "$HELM" diff upgrade "$RELEASE" "$CHART" "${kube_args[@]}" "${values_args[@]}" \
      --install --allow-unsafe --context 3 >&2
  else
    say "the helm-diff plugin is not installed: comparing rendered manifests with 'helm get manifest'"
    rendered_diff
  fi
}

check_secrets() {
  have_kubectl || {
    say "kubectl not found: not checking that the site's Secrets exist"
    return
  }
  local missing=0 name keys
  while read -r name keys; do
    if ! kubectl "${kubectl_args[@]}" get secret "$name" >/dev/null 2>&1; then
      echo "error: Secret $name (keys: $keys) is missing in namespace $NAMESPACE" >&2
      missing=1
    fi
  done < <("$PY" -m hub_config.values "$SITE" --print secrets)
  [ "$missing" = 0 ] || die "create the Secrets first (docs/deploy.md, 'Secrets')"
}

case "$command" in
  template)
    render_values
    stage_dependencies
    lint
    "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${values_args[@]}"
    ;;
  diff)
    show_target
    render_values
    stage_dependencies
    show_diff
    ;;
  deploy)
    show_target
    started=$(date +%s)
    render_values
    stage_dependencies
    lint
    check_secrets
    show_diff
    first_install=1
    "$HELM" status "$RELEASE" "${kube_args[@]}" >/dev/null 2>&1 && first_install=0
    say "helm upgrade --install $RELEASE --wait --atomic --timeout $TIMEOUT"
    "$HELM" upgrade --install "$RELEASE" "$CHART" "${kube_args[@]}" --create-namespace \
      "${values_args[@]}" --wait --atomic --timeout "$TIMEOUT"
    if [ "$first_install" = 1 ]; then
      # z2jh generates its secrets (proxy token, cookie secret, service tokens) at the
      # first install, and the checksums that restart the hub and the proxy render them
      # once more, with other random values; from then on it reads the stored ones.  So
      # the next deploy, even with the same site, would restart both while students
      # work.  One upgrade now, before anybody uses the hub, settles the checksums.
      say "first install: upgrading once more so that the next deploy changes nothing"
      "$HELM" upgrade "$RELEASE" "$CHART" "${kube_args[@]}" "${values_args[@]}" \
        --wait --atomic --timeout "$TIMEOUT" >/dev/null
    fi
    say "deployed in $(($(date +%s) - started)) s"
    ;;
  undeploy)
    show_target
    if "$HELM" status "$RELEASE" "${kube_args[@]}" >/dev/null 2>&1; then
      say "helm uninstall $RELEASE"
      "$HELM" uninstall "$RELEASE" "${kube_args[@]}" --wait --timeout "$TIMEOUT"
    else
      say "release $RELEASE is not installed in $NAMESPACE"
    fi
    # The users' servers and their session Secrets are the hub's, not helm's: without the
    # hub nobody reaches them, and the Secrets hold tokens.  The volumes stay (below).
    if have_kubectl; then
      say "stopping the users' servers and removing their session Secrets"
      kubectl "${kubectl_args[@]}" delete pod -l "component=singleuser-server,release=$RELEASE" \
        --ignore-not-found --wait=true --timeout="$TIMEOUT" >&2
      kubectl "${kubectl_args[@]}" delete secret \
        -l "app.kubernetes.io/part-of=lakehub,app.kubernetes.io/component in (session,user-token)" \
        --ignore-not-found >&2
    else
      say "kubectl not found: the users' servers (pods with component=singleuser-server) and" \
        "their Secrets (app.kubernetes.io/part-of=lakehub) may still run; delete them yourself"
    fi
    claims="the users' volumes (claim-*), the shared cache (lakehub-cache) and the hub database (hub-db-dir)"
    if [ "${PURGE:-0}" = 1 ]; then
      have_kubectl || die "PURGE=1 needs kubectl"
      say "PURGE=1: deleting $claims"
      # waits until they are gone: a deploy right after must not meet a claim that is
      # still being deleted
      kubectl "${kubectl_args[@]}" delete pvc -l "component=singleuser-storage,release=$RELEASE" \
        --ignore-not-found --wait=true --timeout="$TIMEOUT" >&2
      kubectl "${kubectl_args[@]}" delete pvc lakehub-cache hub-db-dir --ignore-not-found \
        --wait=true --timeout="$TIMEOUT" >&2
      kubectl ${KUBE_CONTEXT:+--context "$KUBE_CONTEXT"} delete pv "$NAMESPACE-lakehub-cache" \
        --ignore-not-found --wait=true --timeout="$TIMEOUT" >&2  # cluster-wide: no namespace
    else
      say "kept: $claims; PURGE=1 deletes them"
    fi
    ;;
esac
