#!/usr/bin/env bash
# Make the Dockerfile's base image locally, for hosts that reach Debian's mirror but no container registry
# (air-gapped plants, this project's CI): debootstrap a minimal Debian bookworm and import it under the exact
# name the Dockerfile's FROM uses, so 'podman build' finds it and pulls nothing. Where the registry is
# reachable this is not needed: the build pulls the official image of the same name.
#
#   deploy/base-image.sh [IMAGE]      (default docker.io/library/debian:bookworm-slim; needs root)
#
# Nothing is done when the image exists already (podman image exists), so a second run costs nothing.
set -euo pipefail
image="${1:-docker.io/library/debian:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
engine="${CONTAINER_ENGINE:-podman}"

if "$engine" image exists "$image" 2>/dev/null; then
  echo "base image $image exists"
  exit 0
fi
rootfs="$(mktemp -d "${TMPDIR:-/tmp}/lineqa-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
echo "==> debootstrap bookworm (minbase) from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log" >&2
  exit 1
}
rm -f "$rootfs.log"
# The same suites as the official image: security fixes and stable updates reach what the Dockerfile installs.
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
SOURCES
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
echo "==> importing as $image"
tar -C "$rootfs" -c . | "$engine" import --change 'CMD ["bash"]' - "$image" >/dev/null
echo "base image $image made locally"
