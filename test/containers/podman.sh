#!/usr/bin/env bash
# Runs a command (podman, podman-compose) with this project's podman settings (podman-env.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=podman-env.sh
. "$here/podman-env.sh"
exec "$@"
