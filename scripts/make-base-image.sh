#!/usr/bin/env bash
# Make local Debian bookworm base images without a container registry:
#   debootstrap (minbase) -> `docker import`  => $DEBIAN_TAG
#   + Debian's nodejs/npm and a `node` user (uid 1000), standing in for
#     node:20-bookworm-slim                   => $NODE_TAG   (with --node)
#
# Usage: scripts/make-base-image.sh [--node] [--force]
# Env:   DEBIAN_TAG (default localbase/debian:bookworm)
#        NODE_TAG   (default localbase/node:bookworm)
#        DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (default: the mirror apt already uses here)
#        DOCKER     (default docker)
# Existing tags are kept unless --force. Needs root (debootstrap) and a running engine.
set -euo pipefail

DEBIAN_TAG=${DEBIAN_TAG:-localbase/debian:bookworm}
NODE_TAG=${NODE_TAG:-localbase/node:bookworm}
DOCKER=${DOCKER:-docker}
SUITE=bookworm

with_node=0
force=0
for arg in "$@"; do
    case "$arg" in
        --node) with_node=1 ;;
        --force) force=1 ;;
        -h | --help)
            sed -n '2,12p' "$0"
            exit 0
            ;;
        *)
            echo "make-base-image: unknown argument '$arg' (use --node, --force)" >&2
            exit 2
            ;;
    esac
done

die() {
    echo "make-base-image: $*" >&2
    exit 1
}

# The mirror apt already uses on this machine (deb822 or one-line format), else Debian's CDN.
host_mirror() {
    local uri=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '/^deb / && $3 == "'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

image_exists() {
    "$DOCKER" image inspect "$1" >/dev/null 2>&1
}

command -v "$DOCKER" >/dev/null || die "'$DOCKER' not found; install a Docker engine first"
"$DOCKER" info >/dev/null 2>&1 || die "the Docker engine does not answer; start dockerd first"

MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}

if [ "$force" = 1 ] || ! image_exists "$DEBIAN_TAG"; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install -y debootstrap"
    rootfs=$(mktemp -d /var/tmp/make-base-image.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "make-base-image: debootstrap $SUITE from $MIRROR" >&2
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 ||
        { tail -20 "$rootfs.log" >&2; die "debootstrap failed (log above)"; }
    rm -f "$rootfs.log"
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    # Same trims as the official image: no apt lists, no package cache.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$DEBIAN_TAG" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    echo "make-base-image: imported $DEBIAN_TAG" >&2
fi

if [ "$with_node" = 1 ] && { [ "$force" = 1 ] || ! image_exists "$NODE_TAG"; }; then
    # node:20-bookworm-slim carries a `node` user with uid/gid 1000: keep that trait so the
    # runner image's user handling is exercised the way it is on the real base.
    "$DOCKER" build -q -t "$NODE_TAG" - >/dev/null <<EOF
FROM $DEBIAN_TAG
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends nodejs npm; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 1000 node; \
    useradd --uid 1000 --gid node --shell /bin/bash --create-home node; \
    node --version; npm --version
CMD ["node"]
EOF
    echo "make-base-image: built $NODE_TAG" >&2
fi
