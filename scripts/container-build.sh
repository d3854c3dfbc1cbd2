#!/usr/bin/env bash
# Build the nfq-mip6 container image with podman on machines that have no Docker engine and no
# image registry (only the Debian mirror and PyPI), as our CI machines (see docs/operations.md).
#
#   scripts/container-build.sh            # install tools, make the base image, build the image
#   eval "$(scripts/container-build.sh --env)"   # then plain `podman run …` uses the same store
#
# Steps: (1) apt-get install podman buildah debootstrap runc when missing; (2) write
# containers.conf/storage.conf (runc, cgroupfs, ulimits this VM can grant, overlay or vfs) under
# the state directory; (3) make a Debian bookworm minbase image with debootstrap from the apt
# mirror this machine already uses (rootfs tarball cached); (4) podman build the Dockerfile with
# BASE set to it, passing the host CA bundle as the build secret "extra_ca" (pip behind a
# TLS-intercepting proxy); the CA never lands in a layer.
#
# Environment: NFQ_MIP6_CONTAINER_STATE (default /var/cache/nfq-mip6-container),
# NFQ_MIP6_IMAGE (default localhost/nfq-mip6:dev), NFQ_MIP6_STORAGE_DRIVER (overlay | vfs;
# vfs when nested inside another container), NFQ_MIP6_SUITE (default bookworm).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${NFQ_MIP6_CONTAINER_STATE:-/var/cache/nfq-mip6-container}
IMAGE=${NFQ_MIP6_IMAGE:-localhost/nfq-mip6:dev}
SUITE=${NFQ_MIP6_SUITE:-bookworm}
BASE_IMAGE=${NFQ_MIP6_BASE_IMAGE:-localhost/debian-${SUITE}-minbase:local}
DRIVER=${NFQ_MIP6_STORAGE_DRIVER:-overlay}
CA_BUNDLE=${NFQ_MIP6_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

print_env() {
    echo "export CONTAINERS_CONF='$STATE/containers.conf'"
    echo "export CONTAINERS_STORAGE_CONF='$STATE/storage.conf'"
    echo "export NFQ_MIP6_IMAGE='$IMAGE'"
}

log() { printf '[container-build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

write_config() {
    mkdir -p "$STATE"
    # This VM's root lacks CAP_SYS_RESOURCE: podman's default nofile=1048576 cannot be set;
    # crun refuses hybrid cgroups, runc copes.
    cat >"$STATE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    cat >"$STATE/storage.conf" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$STATE/storage"
runroot = "$STATE/run"
EOF
}

install_tools() {
    local missing=()
    for tool in podman buildah debootstrap runc; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc >/dev/null
    fi
}

make_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        return
    fi
    local tarball="$STATE/debian-${SUITE}-minbase.tar"
    if [[ ! -s $tarball ]]; then
        local mirror
        mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        if [[ -z $mirror ]]; then
            mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        fi
        mirror=${mirror:-http://deb.debian.org/debian}
        log "debootstrap --variant=minbase $SUITE from $mirror"
        rm -rf "$STATE/rootfs"
        debootstrap --variant=minbase "$SUITE" "$STATE/rootfs" "$mirror" >"$STATE/debootstrap.log"
        tar -C "$STATE/rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$STATE/rootfs"
    fi
    log "importing $tarball as $BASE_IMAGE"
    podman import --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}

build_image() {
    local secret=()
    if [[ -s $CA_BUNDLE ]]; then
        secret=(--secret "id=extra_ca,src=$CA_BUNDLE")
    fi
    log "building $IMAGE (BASE=$BASE_IMAGE, storage $DRIVER)"
    local start end
    start=$(date +%s)
    podman build --format docker --isolation chroot --network host --build-arg "BASE=$BASE_IMAGE" \
        "${secret[@]}" -t "$IMAGE" -f "$REPO/Dockerfile" "$REPO"
    end=$(date +%s)
    local size
    size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
    log "built $IMAGE in $((end - start)) s, $((size / 1000000)) MB"
}

main() {
    case "${1:-}" in
    --env)
        print_env
        return
        ;;
    -h | --help)
        sed -n '2,18p' "$0"
        return
        ;;
    "") ;;
    *)
        echo "usage: $0 [--env]" >&2
        return 2
        ;;
    esac
    if [[ $(id -u) -ne 0 ]]; then
        echo "container-build.sh: run as root (podman with runc/cgroupfs as root)" >&2
        return 1
    fi
    install_tools
    write_config
    export CONTAINERS_CONF="$STATE/containers.conf" CONTAINERS_STORAGE_CONF="$STATE/storage.conf"
    make_base_image
    build_image
}

main "$@"
