#!/usr/bin/env bash
# Builds, once, the base image the Dockerfile is built FROM on a machine that reaches Debian's archive
# and the npm registry but no container registry: a Debian bookworm root file system from debootstrap
# (imported as localhost/vid2mp3-stand-in/debian:bookworm-minbase), then node-base.Containerfile on it
# (localhost/vid2mp3-stand-in/node:24-bookworm-slim). Both are kept in podman's storage; the Node image
# carries a label with a hash of its inputs and is rebuilt only when they change.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=podman-env.sh
. "$here/podman-env.sh"

debian=localhost/vid2mp3-stand-in/debian:bookworm-minbase
node=localhost/vid2mp3-stand-in/node:24-bookworm-slim
key="$(cat "$here/node-base.Containerfile" "$here/base-image.sh" | sha256sum | cut -c1-16)"

if [ "$(podman image inspect --format '{{index .Labels "vid2mp3.stand-in"}}' "$node" 2>/dev/null)" = "$key" ]; then
  echo "base: $node is cached"
  exit 0
fi

# The Debian image carries a hash of this script: a change to how it is made rebuilds it too.
debian_key="$(sha256sum <"$here/base-image.sh" | cut -c1-16)"
if [ "$(podman image inspect --format '{{index .Labels "vid2mp3.stand-in"}}' "$debian" 2>/dev/null)" != "$debian_key" ]; then
  started=$(date +%s)
  rootfs="$(mktemp -d /var/tmp/vid2mp3-rootfs.XXXXXX)"
  # mktemp makes its folder 0700, and the tar below keeps that mode for the image's "/": every
  # non-root user in it (the services run as uid 1000) could then open no file at all.
  chmod 0755 "$rootfs"
  trap 'rm -rf --one-file-system "$rootfs"' EXIT
  echo "base: debootstrap bookworm (minbase) into $rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # The official image's sources: the release, its updates and security updates.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${DEBIAN_MIRROR:-http://deb.debian.org/debian}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' --change "LABEL vid2mp3.stand-in=$debian_key" - "$debian" >/dev/null
  echo "base: $debian imported in $(since "$started")"
fi

started=$(date +%s)
podman build "${PODMAN_BUILD_FLAGS[@]}" --secret "id=ca,src=$CA_BUNDLE" --label "vid2mp3.stand-in=$key" \
  --build-arg "DEBIAN_IMAGE=$debian" -t "$node" -f "$here/node-base.Containerfile" "$here"
echo "base: $node built in $(since "$started")"
