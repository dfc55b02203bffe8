#!/usr/bin/env bash
# Builds librdkafka's integration test runner (tests/test-runner) from the source package of the
# librdkafka that Debian ships for this machine's release, and prints the runner's path.
#
# The source comes through apt itself: a private apt state (lists, cache, sources) whose
# `deb-src` entries are derived from this machine's own `deb` entries for its release, so no
# mirror is named here and the system's apt configuration is left untouched. apt checks the
# downloaded files against the signed Sources index.
#
# The build is cached in $LIBRDKAFKA_CACHE (default ~/.cache/runnel/librdkafka); a cached runner
# is reused without network access. `build.sh --refresh` asks apt for the current version again.
# Configured without GSSAPI (no Kerberos), libcurl (OIDC) or an external LZ4 (the bundled one is
# used); with OpenSSL, zlib and zstd, so the compression and SSL code paths are those of the
# Debian build.
set -euo pipefail

cache=${LIBRDKAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnel/librdkafka}
configure_flags=(--no-download --disable-gssapi --disable-curl --disable-lz4-ext)

log() { echo "librdkafka build: $*" >&2; }

# Debian packages the build needs (RapidJSON: the tests that read librdkafka's statistics JSON).
build_deps=(dpkg-dev gcc g++ make pkg-config libssl-dev zlib1g-dev libzstd-dev rapidjson-dev)
# A cached build is reused only if it was made with these flags and packages.
recipe=$(echo "${configure_flags[*]} ${build_deps[*]}" | sha256sum | cut -c1-12)

refresh=0
[ "${1:-}" = "--refresh" ] && refresh=1

if [ $refresh = 0 ] && [ -f "$cache/current" ]; then
    build=$(cat "$cache/current")
    runner="$cache/$build/tests/test-runner"
    if [ "${build##*+}" = "$recipe" ] && [ -x "$runner" ]; then
        echo "$runner"
        exit 0
    fi
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

# ---- build dependencies ------------------------------------------------------------------------
missing=()
for p in "${build_deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp)
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"; } >"$apt_log" 2>&1 || { cat "$apt_log" >&2; rm -f "$apt_log"; exit 1; }
    rm -f "$apt_log"
fi

# ---- source package ----------------------------------------------------------------------------
# shellcheck disable=SC1091
. /etc/os-release
codename=${VERSION_CODENAME:?/etc/os-release names no release codename}

# The archive URIs of this machine's `deb` entries that carry the release itself (not -updates
# or -security), from one-line .list files and deb822 .sources files alike.
archive_uris() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v rel="$codename" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == rel) print $i
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v rel="$codename" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " rel " "))
                    print uris
                types = ""; uris = ""; suites = ""; enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:" { $1 = ""; types = $0 }
            tolower($1) == "uris:" { $1 = ""; uris = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            END { flush() }' "$f" | tr ' ' '\n' | sed '/^$/d'
    done
}

mapfile -t uris < <(archive_uris | awk '!seen[$0]++')
if [ ${#uris[@]} -eq 0 ]; then
    log "no apt source for release '$codename' found in /etc/apt/sources.list*"
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt_dir="$work/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts"
{
    echo "Types: deb-src"
    echo "URIs: ${uris[*]}"
    echo "Suites: $codename"
    echo "Components: main"
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] &&
        echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
} >"$apt_dir/parts/source.sources"
apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    # The download runs as the caller; apt's sandbox user could not write the work directory.
    -o "APT::Sandbox::User=$(id -un)"
)
log "reading the librdkafka source package of $codename"
apt-get "${apt_opts[@]}" -qq update >/dev/null
(cd "$work" && apt-get "${apt_opts[@]}" -qq source librdkafka >"$work/source.log" 2>&1) || {
    cat "$work/source.log" >&2
    exit 1
}
dsc=$(ls "$work"/librdkafka_*.dsc)
version=$(awk '$1 == "Version:" { print $2; exit }' "$dsc")
srcdir=$(find "$work" -maxdepth 1 -type d -name 'librdkafka-*' | head -n 1)
[ -n "$srcdir" ] || { log "apt-get source unpacked nothing"; exit 1; }

# ---- build -------------------------------------------------------------------------------------
jobs=$(nproc 2>/dev/null || echo 2)
log "building librdkafka $version (configure ${configure_flags[*]})"
(
    cd "$srcdir"
    ./configure "${configure_flags[@]}" >"$work/configure.log" 2>&1 ||
        { cat "$work/configure.log" >&2; exit 1; }
    nice make -j"$jobs" libs >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
    nice make -j"$jobs" -C tests test-runner >>"$work/make.log" 2>&1 ||
        { tail -n 40 "$work/make.log" >&2; exit 1; }
)
build="$version+$recipe"
mkdir -p "$cache"
rm -rf "${cache:?}/$build"
mv "$srcdir" "$cache/$build"
echo "$build" >"$cache/current"
log "librdkafka $version built in $cache/$build"
echo "$cache/$build/tests/test-runner"
