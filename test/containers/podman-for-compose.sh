#!/usr/bin/env bash
# podman as Debian's podman-compose (1.0.3) calls it (its --podman-path): that version adds the
# project network (`--net <project>_default --network-alias <service>`) even to a container with
# `network_mode: host`, and podman refuses the pair ("cannot set multiple networks without bridge
# network mode"). For such a container the project network is dropped; everything else is passed on
# unchanged. (Later podman-compose releases do not add it.)
set -euo pipefail
args=("$@")
if [[ " ${args[*]} " == *" --network host "* ]]; then
  kept=()
  skip=0
  for arg in "${args[@]}"; do
    if [ "$skip" -gt 0 ]; then
      skip=$((skip - 1))
      continue
    fi
    case "$arg" in
      --net | --network-alias) skip=1 ;;
      *) kept+=("$arg") ;;
    esac
  done
  args=("${kept[@]}")
fi
exec podman "${args[@]}"
