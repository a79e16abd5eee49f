# Helpers for scripts/build-images.sh (sourced, not run): system packages, the container
# engine, Debian root file systems, Debian package folders, wheelhouses, npm folders,
# build contexts and builds. Every cached artefact lives under $cache in a folder named
# by the hash of what produced it, made in a ".partial-" folder and renamed when complete.
#
# Expects from the caller: top (repository), cache, offline, use_wheelhouse, engine.
# Sets for the caller: base_image, debs, wheelhouse, npm_dir, context, size and the
# timing_* variables of the last step (seconds).

say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'build-images: %s\n' "$*" >&2
  exit 1
}
since() { echo $((SECONDS - $1)); }
hash_of() { sha256sum | cut -c1-"${1:-12}"; }

# Cached folders: $cache/KIND/NAME-KEY, complete when it holds .complete; made in
# $cache/KIND/.partial-NAME-KEY and renamed into place.
cached_folder() { # KIND NAME KEY WHAT   sets folder, partial; 0 when complete (and says so)
  folder=$cache/$1/$2-$3
  partial=$cache/$1/.partial-$2-$3
  if [ -f "$folder/.complete" ]; then
    say "$4 $folder: reused"
    return 0
  fi
  rm -rf "$partial"
  mkdir -p "$partial"
  return 1
}
publish_folder() { # SRC: mark complete, rename to $folder
  touch "$1/.complete"
  rm -rf "$folder"
  mv "$1" "$folder"
}

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
image_exists() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# Is IMAGE available, pulling it if allowed? (return 1: take the offline path) A failed
# pull is remembered for an hour (LAKEHUB_IMAGES_OFFLINE=auto only), so that repeated
# offline runs do not wait for the registry each time.
available() {
  local mark
  image_exists "$1" && return 0
  [ "$offline" = 1 ] && return 1
  mark=$cache/pull-failed/$(printf '%s' "$1" | hash_of 16)
  if [ "$offline" = auto ] && [ -n "$(find "$mark" -mmin -60 2>/dev/null)" ]; then
    say "not pulling $1: a pull failed less than an hour ago (remove $mark to retry)"
    return 1
  fi
  say "pulling $1"
  if timeout 600 "$engine" pull "$1" >&2; then
    rm -f "$mark"
    return 0
  fi
  [ "$offline" = 0 ] && die "cannot pull $1 (LAKEHUB_IMAGES_OFFLINE=0)"
  mkdir -p "$(dirname "$mark")"
  printf '%s\n' "$1" >"$mark"
  say "cannot pull $1: taking the offline path"
  return 1
}

# ---------------------------------------------------------------- Debian root file systems
debian_mirror() { # the Debian archive apt uses on this machine
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local s m=""
  s=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  s=${s:-bookworm}
  # deb822 files: the URIs of the stanza whose Suites contain the plain host suite
  m=$(awk -v s="$s" '
        /^[[:space:]]*$/ { uri = ""; next }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s && uri != "") { print uri; exit } }
      ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    # one-line format, options in [...] skipped
    m=$(awk -v s="$s" '$1 == "deb" {
          i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
          if ($(i + 1) == s) { print $i; exit } }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

deb_arch() { dpkg --print-architecture 2>/dev/null || uname -m; }

# ensure_debian_base NAME SUITE INCLUDE   sets base_image, base_key
#   debootstrap --variant=minbase --include=INCLUDE SUITE into $cache/base/<key>/rootfs,
#   imported as localhost/lakehub-NAME:<key>; key = hash of the recipe.
ensure_debian_base() {
  local name=$1 suite=$2 include=$3 arch dir mirror t
  arch=$(deb_arch)
  base_key=$(printf 'debootstrap --variant=minbase --include=%s %s %s' "$include" "$suite" "$arch" | hash_of)
  base_image=localhost/lakehub-$name:$base_key
  timing_base=0
  if image_exists "$base_image"; then
    say "base $base_image: reused"
    return
  fi
  [ "$(id -u)" = 0 ] || die "building the offline base needs root (debootstrap); run once as root"
  ensure_debs debootstrap
  t=$SECONDS
  dir=$cache/base/$base_key
  if [ ! -f "$dir/complete" ]; then
    mirror=$(debian_mirror)
    say "debootstrap $suite ($arch, minbase + $include) from $mirror into $dir/rootfs (a minute or two)"
    rm -rf "$dir/rootfs"
    mkdir -p "$dir"
    debootstrap --variant=minbase --include="$include" "$suite" "$dir/rootfs" "$mirror" >&2
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

# ensure_deb_folder NAME BASE_IMAGE SUITE LIST   sets debs
#   The Debian packages named in LIST (one a line, # comments) and those of their
#   dependencies BASE_IMAGE lacks, downloaded by the host's apt with a private state:
#   BASE_IMAGE's dpkg status, SUITE's main component from the mirror, no host sources,
#   preferences or configuration. Keyed by the list, the base and the suite.
ensure_deb_folder() {
  local name=$1 base=$2 suite=$3 list=$4 key tmp t n
  local -a pkgs opts
  mapfile -t pkgs < <(sed 's/#.*//' "$list" | tr -s ' \t' '\n\n' | grep -v '^$')
  key=$( (
    echo "debs 1 $base $suite $(deb_arch)"
    printf '%s\n' "${pkgs[@]}"
  ) | hash_of 16)
  timing_debs=0
  if cached_folder debs "$name" "$key" "Debian packages"; then
    debs=$folder
    return
  fi
  t=$SECONDS
  tmp=$partial
  mkdir -p "$tmp"/{lists/partial,archives/partial,cache,etc/parts,etc/sources.list.d,etc/preferences.d}
  "$engine" run --rm --network=none --entrypoint cat "$base" /var/lib/dpkg/status >"$tmp/status"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
    "$(debian_mirror)" "$suite" >"$tmp/etc/sources.list"
  opts=(
    -o "Dir::State::status=$tmp/status" -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::State::extended_states=$tmp/extended_states" -o "Dir::Cache=$tmp/cache"
    -o "Dir::Cache::archives=$tmp/archives" -o "Dir::Etc::SourceList=$tmp/etc/sources.list"
    -o "Dir::Etc::SourceParts=$tmp/etc/sources.list.d" -o "Dir::Etc::Parts=$tmp/etc/parts"
    -o "Dir::Etc::Preferences=$tmp/etc/preferences" -o "Dir::Etc::PreferencesParts=$tmp/etc/preferences.d"
    -o "APT::Architecture=$(deb_arch)" -o APT::Sandbox::User=root -o Debug::NoLocking=1
  )
  say "Debian packages for $name: ${pkgs[*]} (apt, $suite, against $base)"
  apt-get "${opts[@]}" -qq update >&2
  DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" -qq -y --download-only \
    --no-install-recommends install "${pkgs[@]}" >&2
  compgen -G "$tmp/archives/*.deb" >/dev/null ||
    die "apt downloaded no packages for $name (are they all in $base already?)"
  mkdir -p "$tmp/out"
  mv "$tmp"/archives/*.deb "$tmp/out/"
  n=$(find "$tmp/out" -name '*.deb' | wc -l)
  publish_folder "$tmp/out"
  rm -rf "$tmp"
  debs=$folder
  timing_debs=$(since "$t")
  say "$n Debian packages ready in ${timing_debs} s"
}

# ---------------------------------------------------------------- wheelhouse
tools_python() { # a host venv with pip for resolving wheels
  local venv=$cache/tools py
  if [ ! -x "$venv/bin/pip" ]; then
    py=/usr/bin/python3
    [ -x "$py" ] || py=$(command -v python3)
    say "creating $venv (pip for the wheelhouse)"
    "$py" -m venv "$venv" >&2
  fi
  echo "$venv/bin/python"
}

probe_python() { # IMAGE -> "version glibc machine" of the image's python3 (cached per image id)
  local id f
  id=$("$engine" image inspect --format '{{.Id}}' "$1") || return 1
  f=$cache/probe/$id
  if [ ! -s "$f" ]; then
    mkdir -p "$cache/probe"
    "$engine" run --rm --network=none --entrypoint python3 "$1" -c \
      'import platform; print(platform.python_version(), platform.libc_ver()[1], platform.machine())' \
      >"$f.tmp" || return 1
    mv "$f.tmp" "$f"
  fi
  cat "$f"
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

# A wheel built here from source runs in the image only when this host's Python minor
# version and C library are those of the image (the offline bases are Debian bookworm,
# like this host).
check_source_builds() { # PY PYINFO
  local host want
  host=$("$1" -c 'import platform; v = platform.python_version_tuple(); print(v[0] + "." + v[1], platform.libc_ver()[1], platform.machine())')
  read -r want_ver want_glibc want_machine <<<"$2"
  want="${want_ver%.*} $want_glibc $want_machine"
  [ "$host" = "$want" ] || die "cannot build source-only wheels for the image here: this host's Python/glibc/machine ($host) differ from the image's ($want)"
}

# ensure_wheelhouse NAME MODE PYINFO FILE...   sets wheelhouse
#   MODE lock: FILE is a complete lock, taken as is (--no-deps); packages without a wheel
#              for the image, and those in $wheel_from_source (space-separated names), are
#              built into wheels on this host, which then needs the Debian packages in
#              $wheel_build_debs
#   MODE deps: FILE... are pip arguments resolved with dependencies, binary wheels only
ensure_wheelhouse() {
  local name=$1 mode=$2 pyinfo=$3
  shift 3
  local pyver glibc machine key tmp py n t f
  local from_source=${wheel_from_source:-}
  read -r pyver glibc machine <<<"$pyinfo"
  key=$( (
    echo "recipe 1 $mode $pyinfo"
    [ -z "$from_source" ] || echo "from source: $from_source"
    for f in "$@"; do [ -f "$f" ] && cat "$f" || echo "$f"; done
  ) | hash_of 16)
  timing_wheelhouse=0
  if cached_folder wheelhouse "$name" "$key" wheelhouse; then
    wheelhouse=$folder
    return
  fi
  t=$SECONDS
  py=$(tools_python)
  tmp=$partial
  local abi=cp$(echo "$pyver" | cut -d. -f1,2 | tr -d .)
  local -a target nobin=()
  mapfile -t target < <(platform_args "$glibc" "$machine")
  target+=(--python-version "$pyver" --implementation cp --abi "$abi")
  [ -z "$from_source" ] || nobin=(--no-binary "${from_source// /,}")
  if [ "$mode" = lock ]; then
    # pip runs the build backend of source packages already to read their metadata
    if [ -n "${wheel_build_debs:-}" ]; then
      check_source_builds "$py" "$pyinfo"
      # shellcheck disable=SC2086
      ensure_debs ${wheel_build_debs}
    fi
    n=$(grep -cE '^[A-Za-z0-9]' "$1")
    say "wheelhouse for Python $pyver (glibc $glibc, $machine): downloading $n pinned packages"
    env -u PIP_FIND_LINKS "$py" -m pip download --no-deps --prefer-binary --progress-bar off \
      "${nobin[@]}" "${target[@]}" -d "$tmp" -r "$1" |
      awk -v n="$n" '/^Collecting /{ i++; printf "    [%d/%d] %s\n", i, n, $2; fflush() }' >&2
    for f in "$tmp"/*.tar.gz "$tmp"/*.zip; do
      [ -e "$f" ] || continue
      say "building a wheel from the source-only $(basename "$f")"
      env -u PIP_FIND_LINKS "$py" -m pip wheel --no-deps --use-pep517 --progress-bar off -q -w "$tmp" "$f" >&2
      rm -f "$f"
    done
    "$py" "$top/scripts/lib/wheelhouse_check.py" "$1" "$tmp" >&2
  else
    say "wheelhouse for Python $pyver (glibc $glibc, $machine): resolving $*"
    env -u PIP_FIND_LINKS "$py" -m pip download --only-binary=:all: --progress-bar off \
      "${target[@]}" -d "$tmp" "$@" |
      awk '/^Collecting /{ i++; printf "    [%d] %s\n", i, $2; fflush() }' >&2
  fi
  publish_folder "$tmp"
  wheelhouse=$folder
  timing_wheelhouse=$(since "$t")
  say "wheelhouse ready in ${timing_wheelhouse} s"
}

# ---------------------------------------------------------------- npm folder
# ensure_npm_folder NAME DIR   sets npm_dir
#   node_modules from DIR/package.json + DIR/package-lock.json by `npm ci --omit=dev`
#   on this host (pure JavaScript packages: no install scripts are run).
ensure_npm_folder() {
  local name=$1 src=$2 key tmp t
  key=$(cat "$src/package.json" "$src/package-lock.json" | hash_of 16)
  timing_npm=0
  if cached_folder npm "$name" "$key" "npm folder"; then
    npm_dir=$folder
    return
  fi
  command -v npm >/dev/null || die "npm is missing: install Node.js and npm (make system-deps, as root)"
  t=$SECONDS
  tmp=$partial
  cp "$src/package.json" "$src/package-lock.json" "$tmp/"
  say "npm ci --omit=dev in $tmp"
  (cd "$tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=warn >&2)
  publish_folder "$tmp"
  npm_dir=$folder
  timing_npm=$(since "$t")
  say "npm folder ready in ${timing_npm} s"
}

# ---------------------------------------------------------------- build context
# stage_context NAME PATH...: a fresh folder with only the given repository paths (no
# caches), with normalised owners, modes and times so the layer cache sees content only,
# plus wheels/ (the wheelhouse, or empty). Sets context and context_key (what the
# context holds: the hash of the repository paths and the names of the cached folders,
# which are content-keyed themselves).
stage_context() {
  local name=$1
  shift
  context=$cache/context/$name
  rm -rf "$context" "$context.tar"
  mkdir -p "$context/wheels"
  tar -C "$top" --exclude=__pycache__ --exclude='*.pyc' --exclude=.ipynb_checkpoints \
    --sort=name --mtime=@315532800 --owner=0 --group=0 --numeric-owner --mode=u=rwX,go=rX \
    -cf "$context.tar" "$@"
  context_key=$(hash_of 16 <"$context.tar")
  tar -C "$context" -xf "$context.tar"
  rm -f "$context.tar"
  find "$context" -type d -exec touch -d @315532800 {} +
  if [ "$use_wheelhouse" = 1 ] && [ -n "${wheelhouse:-}" ]; then
    context_add "$wheelhouse" wheels
  fi
}

# context_add SRC DEST: SRC's content under $context/DEST (hard links where possible),
# with the same normalised times.
context_add() {
  local src=$1 dest=$context/$2
  mkdir -p "$dest"
  cp -al "$src/." "$dest/" 2>/dev/null || cp -a "$src/." "$dest/"
  rm -f "$dest/.complete"
  find "$dest" -exec touch -h -d @315532800 {} +
  context_key="$context_key $2=$(basename "$src")"
}

# build IMAGE DOCKERFILE BASE   sets size, timing_build
#   The image is labelled with a key of everything it is made of (the context key, the
#   Dockerfile, the base image's id, the network mode); when IMAGE already carries the
#   same key, the engine is not asked at all.
build() {
  local image=$1 dockerfile=$2 base=$3 t previous key have net=(--network=none)
  [ "$use_wheelhouse" = 1 ] || net=()
  t=$SECONDS
  key=$( {
    echo "build 1 $context_key ${net[*]}"
    "$engine" image inspect --format '{{.Id}}' "$base"
    cat "$dockerfile"
  } | hash_of 16)
  have=$("$engine" image inspect --format '{{index .Labels "org.lakehub.build-key"}}' "$image" 2>/dev/null || true)
  if [ "$have" != "$key" ]; then
    previous=$("$engine" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    say "building $image FROM $base"
    "$engine" build "${net[@]}" --build-arg BASE_IMAGE="$base" --label "org.lakehub.build-key=$key" \
      -f "$dockerfile" -t "$image" "$context" >&2
    # the image this tag named before is now untagged: drop it (and its unshared layers)
    if [ -n "$previous" ] && [ "$previous" != "$("$engine" image inspect --format '{{.Id}}' "$image")" ]; then
      "$engine" rmi "$previous" >/dev/null 2>&1 || true
    fi
  fi
  timing_build=$(since "$t")
  size=$("$engine" image inspect --format '{{.Size}}' "$image")
  if [ "$have" = "$key" ]; then
    say "$image: up to date ($((size / 1000000)) MB)"
  else
    say "$image built in ${timing_build} s, $((size / 1000000)) MB"
  fi
}
