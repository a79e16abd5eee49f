#!/usr/bin/env bash
# Build (or reuse) one of lakehub's Python environments from its lock file.
# usage: scripts/ensure-env.sh NAME      (NAME = dev | analysis | rucio-server | vanilla)
# A stamp holding the lock file's hash makes a second run a no-op.
set -euo pipefail
name=$1
top=$(cd "$(dirname "$0")/.." && pwd)
state=${LAKEHUB_HOME:-$top/.lakehub}
lock=$top/requirements/$name.txt
venv=$state/venvs/$name
uv=$state/tools/bin/uv
stamp=$venv/.lakehub-lock-sha
# Debian's interpreter, not a per-user one (pyenv under /root is unreadable to the
# per-user accounts that run single-user servers when the hub runs as root).
python=/usr/bin/python3.11
[ -x "$python" ] || python=$(command -v python3.11)
# the analysis environment also gets the single-user image's Jupyter configuration
jupyter_etc=$top/images/singleuser/etc-jupyter
extra=()
if [ "$name" = analysis ]; then
  mapfile -t extra < <(find "$jupyter_etc" -type f | LC_ALL=C sort)
fi
want="$(cat "$lock" "$top/pyproject.toml" "$0" "${extra[@]}" | sha256sum | cut -d' ' -f1) $python"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$uv" ]; then
  echo "==> installing uv into $state/tools" >&2
  python3 -m venv "$state/tools"
  "$state/tools/bin/pip" install --quiet "uv==0.13.8"
fi
echo "==> building the '$name' environment in $venv (from requirements/$name.txt)" >&2
rm -rf "$venv"
"$uv" venv --quiet --python "$python" "$venv"
# --compile-bytecode: servers run as per-user accounts that cannot write __pycache__ into
# this root-owned environment, so without it every server start compiles JupyterLab's
# Python anew (seconds of each login); pip in the image compiles too
"$uv" pip sync --quiet --compile-bytecode --python "$venv/bin/python" "$lock"
if [ "$name" != rucio-server ] && [ "$name" != vanilla ]; then
  # the project's own packages (editable); vanilla is a plain JupyterLab without them
  "$uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" --no-deps -e "$top"
fi
if [ "$name" = analysis ]; then
  # long-lived rucio Client objects pick up renewed tokens (see lakehub/rucio_compat.py)
  purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  echo "import lakehub.rucio_compat" > "$purelib/lakehub-rucio-compat.pth"
  # what the image has in /opt/lakehub/venv/etc/jupyter: lakehub's server extension on,
  # JupyterLab's custom.css (the Rucio panel's icon font) on, its news prompt off
  mkdir -p "$venv/etc/jupyter"
  cp -R "$jupyter_etc/." "$venv/etc/jupyter/"
fi
echo "$want" > "$stamp"
