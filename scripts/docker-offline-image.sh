#!/usr/bin/env bash
# Builds the Runnel Docker image without pulling anything from a registry (CI here has none):
#   1. the runtime base image the Dockerfile names (debian:bookworm-slim), when Docker does not
#      have it yet, from `debootstrap --variant=minbase bookworm` + `docker import`;
#   2. the Runnel image from a runnel binary compiled on this host, with
#      deploy/docker/Dockerfile.prebuilt (the same runtime stage as the root Dockerfile, which
#      users with a registry build as usual).
#
#   scripts/docker-offline-image.sh [--base-only]
#
# Environment:
#   RUNNEL_BIN       the binary to package (default: $CARGO_TARGET_DIR or ./target, release
#                    profile, built with `cargo build --release -p runnel` when missing)
#   RUNNEL_IMAGE     the image tag to build (default runnel:latest)
#   DEBIAN_MIRROR    the Debian mirror for debootstrap (default http://deb.debian.org/debian)
# The host binary must run on bookworm's glibc (build on bookworm or older). Needs root or
# sudo for apt-get, debootstrap and docker. Prints the seconds each part took.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=debian:bookworm-slim
IMAGE=${RUNNEL_IMAGE:-runnel:latest}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "docker-offline-image: $*" >&2; }

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

docker info >/dev/null 2>&1 || { log "the docker daemon is not reachable"; exit 1; }

# ---- 1. the base image ---------------------------------------------------------------------------
t0=$SECONDS
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE already present; not rebuilding it"
else
    if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
        log "installing debootstrap with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq >/dev/null
        $sudo apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    rootfs=$(mktemp -d /tmp/runnel-rootfs.XXXXXX)
    # debootstrap mounts /proc (and may bind /dev) inside the tree: unmount whatever is still
    # mounted there before deleting, and never cross into another file system.
    cleanup_rootfs() {
        local m
        awk -v r="$rootfs" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
            while IFS= read -r m; do
                $sudo umount -l "$m" 2>/dev/null || true
            done
        $sudo rm -rf --one-file-system "$rootfs" "$rootfs.log"
    }
    trap cleanup_rootfs EXIT
    log "debootstrap --variant=minbase bookworm from $MIRROR (about a minute)"
    if ! $sudo env PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" \
        >"$rootfs.log" 2>&1; then
        tail -n 30 "$rootfs.log" >&2
        exit 1
    fi
    # Trim what a slim image does not carry: package lists, caches, docs and man pages.
    $sudo rm -rf --one-file-system "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    $sudo tar -C "$rootfs" --one-file-system -c . | docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE_IMAGE" >/dev/null
    cleanup_rootfs
    trap - EXIT
    log "imported $BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes) in $((SECONDS - t0))s"
fi
[ "${1:-}" = "--base-only" ] && exit 0

# ---- 2. the Runnel image from the host binary ----------------------------------------------------
t1=$SECONDS
bin=${RUNNEL_BIN:-}
if [ -z "$bin" ]; then
    bin="${CARGO_TARGET_DIR:-$PWD/target}/release/runnel"
    if [ ! -x "$bin" ]; then
        log "building $bin"
        cargo build --release -p runnel
    fi
fi
[ -x "$bin" ] || { log "no runnel binary at $bin"; exit 1; }
ctx=$(mktemp -d /tmp/runnel-docker-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
# Line tables are for backtraces during development; the image ships symbols only.
strip --strip-debug -o "$ctx/runnel" "$bin" 2>/dev/null || cp "$bin" "$ctx/runnel"
cp deploy/docker/docker-entrypoint.sh "$ctx/"
log "building $IMAGE from $bin"
docker build -q -f deploy/docker/Dockerfile.prebuilt \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" "$ctx" >/dev/null
log "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes) in $((SECONDS - t1))s"
