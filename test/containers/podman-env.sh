# Sourced by the container scripts: podman as this project runs it on machines without a container
# registry and inside a sandbox (the reasons are in deploy/README.md, "Running the containers here").
# - vfs storage: overlay mounts inside this kind of sandbox are not to be relied on; vfs only copies.
# - Storage of its own under /var/lib/vid2mp3-containers (cached between runs), so a machine's other
#   podman storage (perhaps another driver) is neither used nor disturbed.
# - Debian's runc as the OCI runtime; chroot isolation for build steps; explicit ulimits.
VID2MP3_CONTAINERS_DIR=${VID2MP3_CONTAINERS_DIR:-/var/lib/vid2mp3-containers}
mkdir -p "$VID2MP3_CONTAINERS_DIR"
# Written to a temporary file and renamed into place: podman commands run side by side source this
# file, and one must never read a half-written configuration ("runroot must be set").
write_conf() { # file: stdin → file, atomically
  local tmp
  tmp="$(mktemp "$1.XXXXXX")"
  cat >"$tmp"
  mv -f "$tmp" "$1"
}
write_conf "$VID2MP3_CONTAINERS_DIR/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$VID2MP3_CONTAINERS_DIR/storage"
runroot = "/run/vid2mp3-containers"
CONF
# Explicit ulimits no higher than this machine's hard limits: podman's default (nofile 1048576) is
# refused where the hard limit is lower ("setting RLIMIT_NOFILE ... operation not permitted").
ulimit_of() { # option -> min(hard limit, 16384)
  local hard
  hard="$(ulimit -H "$1")"
  if [ "$hard" = unlimited ] || [ "$hard" -gt 16384 ]; then echo 16384; else echo "$hard"; fi
}
NOFILE="$(ulimit_of -n)"
NPROC="$(ulimit_of -u)"
write_conf "$VID2MP3_CONTAINERS_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
[engine]
runtime = "runc"
events_logger = "file"
cgroup_manager = "cgroupfs"
CONF
export CONTAINERS_STORAGE_CONF="$VID2MP3_CONTAINERS_DIR/storage.conf"
export CONTAINERS_CONF="$VID2MP3_CONTAINERS_DIR/containers.conf"
export BUILDAH_ISOLATION=chroot
# Flags every `podman build` here takes (docker format: OCI images drop HEALTHCHECK).
PODMAN_BUILD_FLAGS=(--format docker --isolation chroot --network host --pull=never --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")
# The machine's CA certificates, for TLS to the npm registry inside builds.
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
since() { echo "$(( $(date +%s) - $1 ))s"; }
