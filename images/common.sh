# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the sourcing scripts
# Shared by images/build.sh and images/test.sh (sourced, not run).
# Picks the engine, names the images, and (for podman) points all container state at a directory
# of ours through env vars: nothing system-wide is configured.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Image storage, generated config and selftest outputs; `images/build.sh clean` removes it.
STATE=${EDGE_IMAGES_DIR:-/var/tmp/edge-images}

# Tags as iotedgedev names them (<repository>:<version>-<platform>), local repository.
VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["tag"]["version"])' "$ROOT/module.json")
MODEL=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["name"], m["version"], sep=":")' "$ROOT/model/model.json")
IMAGE=localhost/edge-inference
PLATFORMS=(amd64 arm32v7)
# Functions, not associative arrays: the docker path also runs with macOS's bash 3.2.
dockerfile_of() { case $1 in amd64) echo Dockerfile ;; arm32v7) echo Dockerfile.arm32v7 ;; esac; }
platform_of() { case $1 in amd64) echo linux/amd64 ;; arm32v7) echo linux/arm/v7 ;; esac; }

# A Docker engine with buildx builds from the real base images; otherwise podman with local bases.
if docker buildx version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  ENGINE=podman
fi

# What the podman path needs, from Debian's packages: installed when missing (as root), else named.
PODMAN_PACKAGES=(podman buildah runc mmdebstrap qemu-user-static binfmt-support)
install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v runc >/dev/null || missing+=(runc)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  [ -e /usr/libexec/qemu-binfmt/arm-binfmt-P ] || [ -e /usr/bin/qemu-arm-static ] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${missing[*]}; install them with: sudo apt-get install ${PODMAN_PACKAGES[*]}" >&2
    return 1
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PODMAN_PACKAGES[@]}" >/dev/null
}

podman_env() {
  install_tools
  mkdir -p "$STATE"
  cat >"$STATE/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$STATE/storage"
runroot = "$STATE/run"
EOF
  # podman's default ulimits exceed this machine's hard limits, and crun is not Debian's default.
  local nofile
  nofile=$(ulimit -Hn)
  cat >"$STATE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
  # Short names in FROM (debian:..., arm32v7/debian:...) resolve to docker.io, as with Docker.
  cat >"$STATE/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
  export CONTAINERS_STORAGE_CONF=$STATE/storage.conf
  export CONTAINERS_CONF=$STATE/containers.conf
  export CONTAINERS_REGISTRIES_CONF=$STATE/registries.conf
}

# The arm32v7 image runs under qemu: Debian's qemu-user-static registers with the F flag, so the
# interpreter works inside containers and mmdebstrap's chroot.
binfmt_arm() {
  [ "$(uname -m)" = armv7l ] && return 0
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-arm 2>/dev/null; then
    command -v update-binfmts >/dev/null || { echo "apt-get install qemu-user-static binfmt-support" >&2; return 1; }
    update-binfmts --enable qemu-arm
  fi
}

tag_of() { echo "$IMAGE:$VERSION-$1"; }

# With Docker, arm emulation is the engine's business (Docker Desktop has it; on Linux register it
# once: docker run --privileged --rm tonistiigi/binfmt --install arm).
engine_setup() {
  if [ "$ENGINE" = podman ]; then
    podman_env
    binfmt_arm
  fi
}
