#!/usr/bin/env bash
# Install configurable-http-proxy from npm into $LAKEHUB_HOME/node, from the committed lock.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest=${LAKEHUB_HOME:-$top/.lakehub}/node
want=$(cat "$top/localstack/node/package.json" "$top/localstack/node/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -x "$dest/node_modules/.bin/configurable-http-proxy" ] && [ "$(cat "$dest/.lock-sha" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run 'make system-deps' (needs root) or install Node.js" >&2; exit 1; }
echo "==> installing configurable-http-proxy (npm) into $dest" >&2
mkdir -p "$dest"
cp "$top/localstack/node/package.json" "$top/localstack/node/package-lock.json" "$dest/"
(cd "$dest" && npm ci --silent --no-audit --no-fund >&2)
echo "$want" > "$dest/.lock-sha"
