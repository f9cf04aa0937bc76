#!/usr/bin/env bash
# Builds vid2mp3's two images with podman from deploy/Dockerfile, FROM the stand-in base
# (base-image.sh): localhost/vid2mp3-service:dev (target `service`) and localhost/vid2mp3:dev
# (target `converter`), the names deploy/compose.yaml uses. podman's layer cache makes a rebuild
# with unchanged package files take seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=podman-env.sh
. "$here/podman-env.sh"
for target in service converter; do
  image=localhost/vid2mp3-service:dev
  [ "$target" = converter ] && image=localhost/vid2mp3:dev
  started=$(date +%s)
  podman build "${PODMAN_BUILD_FLAGS[@]}" --secret "id=npm_ca,src=$CA_BUNDLE" \
    --build-arg NODE_IMAGE=localhost/vid2mp3-stand-in/node:24-bookworm-slim \
    --target "$target" -t "$image" -f "$root/deploy/Dockerfile" "$root" >"$VID2MP3_CONTAINERS_DIR/build-$target.log" 2>&1 \
    || { tail -30 "$VID2MP3_CONTAINERS_DIR/build-$target.log" >&2; exit 1; }
  echo "images: $image built in $(since "$started") ($(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec) )"
done
