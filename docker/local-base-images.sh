#!/usr/bin/env bash
# Makes, on a machine that can pull no image, the base images the Dockerfile names:
#   debian:bookworm-slim      a Debian root filesystem made with debootstrap from the machine's
#                             configured Debian mirror, trimmed of docs and apt lists;
#   rust:1.95-slim-bookworm   that, plus gcc and the machine's own Rust toolchain.
# Where a registry is reachable none of this is needed: `docker build` pulls the real images.
# Usage: docker/local-base-images.sh [--force]
set -euo pipefail

RUNTIME_IMAGE=${RUNTIME_IMAGE:-debian:bookworm-slim}
RUST_IMAGE=${RUST_IMAGE:-rust:1.95-slim-bookworm}

if [ "${1:-}" != "--force" ] && docker image inspect "$RUNTIME_IMAGE" >/dev/null 2>&1 \
   && docker image inspect "$RUST_IMAGE" >/dev/null 2>&1; then
  echo "base images present: $RUNTIME_IMAGE, $RUST_IMAGE"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d)
cleanup() {
  umount "$work/rootfs/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs=$work/rootfs

echo "== debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -30 "$work/debootstrap.log"; exit 1; }
umount "$rootfs/proc" 2>/dev/null || true

snapshot() { # image, then docker import --change arguments
  local image=$1; shift
  tar --numeric-owner --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -C "$rootfs" -c . \
    | docker import "$@" - "$image" >/dev/null
  echo "made $image"
}

rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
snapshot "$RUNTIME_IMAGE" --change 'CMD ["bash"]'

echo "== build image: gcc and the machine's Rust toolchain ($(rustc --version))"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
chroot "$rootfs" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
sysroot=$(rustc --print sysroot)
mkdir -p "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo"
cp -a "$sysroot/bin" "$sysroot/lib" "$rootfs/usr/local/rust/"
snapshot "$RUST_IMAGE" \
  --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change 'CMD ["bash"]'
