#!/usr/bin/env bash
# Fetch (or reuse) Keycloak's server distribution from Maven Central; print the path of
# its kc.sh on stdout. Used by the OIDC tests (a real identity provider on 127.0.0.1).
#
# usage: KC=$(bash scripts/ensure-keycloak.sh)     (progress on stderr)
#
# Cached outside the repository, one folder per version:
#   root:       /var/cache/lakehub/keycloak-<version>/
#   otherwise:  $LAKEHUB_HOME/cache/keycloak-<version>/
# The first start of a new copy also builds Keycloak's optimized runtime inside that
# folder (about a minute); later starts reuse it. Needs Maven (mvn) and Java 21 or newer
# (JAVA_HOME; the Temurin 25 JDK under /usr/lib/jvm is used when present).
set -euo pipefail

# The one place the Keycloak version is pinned (26.2+ has standard token exchange).
KEYCLOAK_VERSION=${LAKEHUB_KEYCLOAK_VERSION:-26.7.3}

top=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" = 0 ]; then base=/var/cache/lakehub; else base=${LAKEHUB_HOME:-$top/.lakehub}/cache; fi
dir=$base/keycloak-$KEYCLOAK_VERSION
kc=$dir/keycloak-$KEYCLOAK_VERSION/bin/kc.sh

if [ -x "$kc" ]; then
  echo "$kc"
  exit 0
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "ensure-keycloak: mvn is needed to fetch Keycloak from Maven Central" >&2
  exit 1
fi
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "==> fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION (about 170 MB)" >&2
mvn -q dependency:copy \
  "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
  "-DoutputDirectory=$tmp" >&2
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
  "$tmp/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" "$tmp/unpacked"
chmod +x "$tmp/unpacked/keycloak-$KEYCLOAK_VERSION/bin/"*.sh
rm -rf "$dir/keycloak-$KEYCLOAK_VERSION"
mv "$tmp/unpacked/keycloak-$KEYCLOAK_VERSION" "$dir/"   # complete, or not there at all
echo "$kc"
