#!/usr/bin/env bash
# Debian packages lakehub needs; installs only what is missing (idempotent).
#   python3.11  the interpreter of every lakehub environment (readable by all accounts)
#   chromium    the browser the browser tests drive (never a downloaded browser)
#   nodejs/npm  configurable-http-proxy
#   passwd      useradd/userdel for the per-user accounts of the local stack
#   fonts-material-design-icons-iconfont  the Rucio panel's icon font, served by every
#               student's server (lakehub.jupyter_ext; the single-user image has it too)
#   postgresql  Rucio's database with local.rucio_database: postgresql (the stack runs its
#               own server on 127.0.0.1; Debian's cluster is not used)
set -euo pipefail
wanted=(python3.11 python3-venv chromium nodejs npm passwd ca-certificates
  fonts-material-design-icons-iconfont postgresql)
missing=()
for pkg in "${wanted[@]}"; do
  case $pkg in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run 'sudo apt-get install ${missing[*]}')" >&2
  exit 1
fi
echo "==> installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
