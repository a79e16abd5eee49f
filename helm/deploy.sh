#!/usr/bin/env bash
# lakehub on Kubernetes with the real helm CLI: what `make template|diff|deploy|undeploy` run.
#
# usage: helm/deploy.sh template|diff|deploy|undeploy
#
# Settings (environment; the Makefile passes its variables through):
#   SITE          the site file (required)
#   RELEASE       helm release name (default: lakehub)
#   NAMESPACE     default: kubernetes.namespace of the site file
#   KUBE_CONTEXT  kubectl/helm context (default: the current one of $KUBECONFIG)
#   VALUES        extra values files layered over the rendered ones (space-separated)
#   TIMEOUT       helm --timeout for deploy/undeploy (default: 10m)
#   PURGE=1       undeploy: also delete the users' volumes, the shared cache and the hub's
#                 database volume
#   LAKEHUB_HELM_OFFLINE=1  template/diff: never try to download the z2jh chart
#
# The rendered values are kept in $LAKEHUB_HOME/deploy/<release>/values.yaml. Progress
# goes to stderr; `template` prints only manifests on stdout.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
command=${1:-}
case "$command" in
  template | diff | deploy | undeploy) ;;
  *)
    echo "usage: helm/deploy.sh template|diff|deploy|undeploy  (SITE=... required)" >&2
    exit 2
    ;;
esac

say() { echo "==> $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

[ -n "${SITE:-}" ] || die "set SITE to your site file, e.g. SITE=examples/site.cluster.yaml"
[ -f "$SITE" ] || die "$SITE: the site file does not exist"
LAKEHUB_HOME=${LAKEHUB_HOME:-$top/.lakehub}
PY=${PY:-$LAKEHUB_HOME/venvs/dev/bin/python}
[ -x "$PY" ] || die "$PY is missing; run 'make envs' first"
RELEASE=${RELEASE:-lakehub}
TIMEOUT=${TIMEOUT:-10m}
CHART=$top/helm/lakehub
Z2JH_VERSION=4.4.0
DASK_GATEWAY_VERSION=2026.3.0  # the dask-gateway chart, as in helm/lakehub/Chart.yaml

HELM=$(bash "$top/scripts/ensure-helm.sh")

# --- the site: namespace, values ----------------------------------------------------------
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

have_kubectl() { command -v kubectl >/dev/null 2>&1; }

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
  say "release:         $RELEASE (chart helm/lakehub, z2jh $Z2JH_VERSION)"
  say "site file:       $SITE"
  say "helm:            $HELM ($("$HELM" version --template '{{.Version}}'))"
}

# --- the z2jh dependency --------------------------------------------------------------------
have_dependency() {
  compgen -G "$CHART/charts/jupyterhub-*.tgz" >/dev/null &&
    compgen -G "$CHART/charts/dask-gateway-*.tgz" >/dev/null
}

build_dependency() {
  say "helm dependency build (zero-to-jupyterhub $Z2JH_VERSION into helm/lakehub/charts/)"
  "$HELM" dependency build "$CHART" >&2
}

# Renders need the dependency present; without it (offline) lakehub's own objects are
# rendered from a copy whose stand-in jupyterhub chart is switched off by its condition.
chart_for_render() {
  only_lakehub=()
  render_chart=$CHART
  if have_dependency; then
    return
  fi
  if [ "${LAKEHUB_HELM_OFFLINE:-0}" != 1 ] && timeout 180 "$HELM" dependency build "$CHART" >&2; then
    return
  fi
  echo "warning: the zero-to-jupyterhub $Z2JH_VERSION chart is not available (offline?):" \
    "showing lakehub's own objects only (jupyterhub.enabled=false)" >&2
  render_chart=$work/chart/lakehub
  rm -rf "$work/chart"
  mkdir -p "$work/chart"
  cp -r "$CHART" "$render_chart"
  rm -rf "$render_chart/charts"
  mkdir -p "$render_chart/charts/jupyterhub"
  printf 'apiVersion: v2\nname: jupyterhub\nversion: %s\ndescription: stand-in, switched off\n' \
    "$Z2JH_VERSION" >"$render_chart/charts/jupyterhub/Chart.yaml"
  mkdir -p "$render_chart/charts/dask-gateway"
  printf 'apiVersion: v2\nname: dask-gateway\nversion: %s\ndescription: stand-in, switched off\n' \
    "$DASK_GATEWAY_VERSION" >"$render_chart/charts/dask-gateway/Chart.yaml"
  only_lakehub=(--set jupyterhub.enabled=false --set dask-gateway.enabled=false)
}

lint() {
  say "helm lint --strict"
  "$HELM" lint --strict "$1" "${values_args[@]}" "${only_lakehub[@]}" >&2 ||
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
  "$HELM" template "$RELEASE" "$render_chart" "${kube_args[@]}" "${values_args[@]}" \
    "${only_lakehub[@]}" --no-hooks --dry-run=server | drop_secrets >"$new"
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
    "$HELM" diff upgrade "$RELEASE" "$render_chart" "${kube_args[@]}" "${values_args[@]}" \
      "${only_lakehub[@]}" --install --allow-unsafe --context 3 >&2
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
    chart_for_render
    lint "$render_chart"
    "$HELM" template "$RELEASE" "$render_chart" --namespace "$NAMESPACE" "${values_args[@]}" \
      "${only_lakehub[@]}"
    ;;
  diff)
    show_target
    render_values
    chart_for_render
    show_diff
    ;;
  deploy)
    show_target
    started=$(date +%s)
    render_values
    only_lakehub=()
    render_chart=$CHART
    build_dependency || die "cannot fetch the zero-to-jupyterhub chart; check access to https://hub.jupyter.org/helm-chart/"
    lint "$CHART"
    check_secrets
    show_diff
    say "helm upgrade --install $RELEASE --wait --atomic --timeout $TIMEOUT"
    "$HELM" upgrade --install "$RELEASE" "$CHART" "${kube_args[@]}" --create-namespace \
      "${values_args[@]}" --wait --atomic --timeout "$TIMEOUT"
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
    claims="the users' volumes (claim-*), the shared cache (lakehub-cache) and the hub database (hub-db-dir)"
    if [ "${PURGE:-0}" = 1 ]; then
      have_kubectl || die "PURGE=1 needs kubectl"
      say "PURGE=1: deleting $claims"
      kubectl "${kubectl_args[@]}" delete pvc -l "component=singleuser-storage,release=$RELEASE" \
        --ignore-not-found --wait=false
      kubectl "${kubectl_args[@]}" delete pvc lakehub-cache hub-db-dir --ignore-not-found --wait=false
      kubectl "${kubectl_args[@]}" delete pv "$NAMESPACE-lakehub-cache" --ignore-not-found --wait=false
    else
      say "kept: $claims; PURGE=1 deletes them"
    fi
    ;;
esac
