# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the sourcing scripts
# Shared by images/build.sh, images/test.sh and images/push.sh (sourced, not run).
# Picks the engine, names the images, and (for podman) points all container state at a directory
# of ours through env vars: nothing system-wide is configured.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Image storage, generated config and selftest outputs; `images/build.sh clean` removes it.
STATE=${EDGE_IMAGES_DIR:-/var/tmp/edge-images}

# Tags as iotedgedev names them (<repository>:<version>-<platform>), local repository.
VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["tag"]["version"])' "$ROOT/module.json")
MODEL=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["name"], m["version"], sep=":")' "$ROOT/model/model.json")
IMAGE=localhost/edge-inference
ALL_PLATFORMS=(amd64 arm64v8 arm32v7)
# EDGE_PLATFORMS="amd64 arm64v8" builds (and image-test compares) only those; the first is the reference.
read -r -a PLATFORMS <<<"${EDGE_PLATFORMS:-${ALL_PLATFORMS[*]}}"
# Functions, not associative arrays: the docker path also runs with macOS's bash 3.2.
dockerfile_of() { case $1 in amd64) echo Dockerfile ;; arm64v8) echo Dockerfile.arm64v8 ;; arm32v7) echo Dockerfile.arm32v7 ;; *) return 1 ;; esac; }
platform_of() { case $1 in amd64) echo linux/amd64 ;; arm64v8) echo linux/arm64 ;; arm32v7) echo linux/arm/v7 ;; *) return 1 ;; esac; }
# What `uname -m` says inside the image, and qemu's name for it.
machine_of() { case $1 in amd64) echo x86_64 ;; arm64v8) echo aarch64 ;; arm32v7) echo armv7l ;; *) return 1 ;; esac; }
qemu_of() { case $1 in amd64) echo x86_64 ;; arm64v8) echo aarch64 ;; arm32v7) echo arm ;; *) return 1 ;; esac; }
for p in "${PLATFORMS[@]}"; do
  dockerfile_of "$p" >/dev/null || { echo "unknown platform in EDGE_PLATFORMS: $p (${ALL_PLATFORMS[*]})" >&2; exit 2; }
done

# OCI labels (org.opencontainers.image.*), passed as build args: from git and the repo's own files, so that two
# builds of one commit carry the same ones. `created` is the commit's time, not the build's.
SOURCE_PLACEHOLDER=https://example.invalid/edge-inference-module
# What enters an image; a difference from HEAD there marks the revision -dirty.
IMAGE_INPUTS=(Dockerfile Dockerfile.arm64v8 Dockerfile.arm32v7 .dockerignore app edgekit model/model.pkl model/model.onnx model/model.json requirements)
# Computed once per run and exported: images/test.sh takes them before building, so a commit made meanwhile
# cannot make the built labels and the expected ones differ.
oci_labels() {
  if [ -n "${EDGE_OCI_LABELS_SET:-}" ]; then return 0; fi
  REVISION=unknown CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) SOURCE=${EDGE_IMAGE_SOURCE:-}
  if git -C "$ROOT" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    REVISION=$(git -C "$ROOT" rev-parse HEAD)
    CREATED=$(TZ=UTC git -C "$ROOT" log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ HEAD)
    if [ -n "$(cd "$ROOT" && git status --porcelain --untracked-files=all -- "${IMAGE_INPUTS[@]}" 2>/dev/null)" ]; then
      REVISION=$REVISION-dirty
    fi
    if [ -z "$SOURCE" ]; then SOURCE=$(git -C "$ROOT" remote get-url origin 2>/dev/null || true); fi
  fi
  # A browsable https URL without credentials: git@host:org/repo.git -> https://host/org/repo.
  SOURCE=$(sed -E -e 's#^git@([^:]+):#https://\1/#' -e 's#^ssh://([^@/]+@)?([^/:]+)(:[0-9]+)?/#https://\2/#' \
    -e 's#^(https?://)[^@/]+@#\1#' -e 's#\.git$##' <<<"$SOURCE")
  SOURCE=${SOURCE:-$SOURCE_PLACEHOLDER}
  LICENSES=$(python3 -c '
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb")).get("project", {})
lic = project.get("license") or "NOASSERTION"
print(lic.get("text", "NOASSERTION") if isinstance(lic, dict) else lic)' "$ROOT/pyproject.toml" 2>/dev/null || echo NOASSERTION)
  DESCRIPTION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("description", ""))' "$ROOT/module.json")
  export REVISION CREATED SOURCE LICENSES DESCRIPTION EDGE_OCI_LABELS_SET=1
}

# The labels as build args (VERSION and MODEL included) in LABEL_ARGS, and as `key=value` for images/check_image.py
# in EXPECTED_LABELS (arrays set here, no mapfile: the docker path also runs with macOS's bash 3.2).
# The labels also go in as --label: podman 4.3's buildah reuses a cached LABEL step whose ARG values changed (buildah
# issue 5501), and would keep the first build's revision; a changed --label rebuilds that step. BuildKit needs only
# the build args, and the --label values are the same.
label_build_args() {
  local arg label
  expected_labels
  LABEL_ARGS=()
  for arg in VERSION MODEL REVISION CREATED SOURCE LICENSES DESCRIPTION; do LABEL_ARGS+=(--build-arg "$arg=${!arg}"); done
  for label in "${EXPECTED_LABELS[@]}"; do LABEL_ARGS+=(--label "org.opencontainers.image.$label"); done
  LABEL_ARGS+=(--label "io.edge-inference.model=$MODEL")
}
expected_labels() {
  EXPECTED_LABELS=("title=edge-inference-module" "description=$DESCRIPTION" "version=$VERSION" "source=$SOURCE"
    "revision=$REVISION" "created=$CREATED" "licenses=$LICENSES")
}

# A Docker engine with buildx builds from the real base images; otherwise podman with local bases.
if docker buildx version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  ENGINE=podman
fi

# What the podman path needs, from Debian's packages: installed when missing (as root), else named.
PODMAN_PACKAGES=(podman buildah runc mmdebstrap qemu-user-static binfmt-support)
install_tools() {
  local missing=() p
  command -v podman >/dev/null || missing+=(podman)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v runc >/dev/null || missing+=(runc)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  for p in "${PLATFORMS[@]}"; do
    [ "$(uname -m)" = "$(machine_of "$p")" ] || [ -e "/usr/libexec/qemu-binfmt/$(qemu_of "$p")-binfmt-P" ] \
      || [ -e "/usr/bin/qemu-$(qemu_of "$p")-static" ] || missing+=(qemu-user-static)
  done
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  [ ${#missing[@]} -eq 0 ] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
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

# The arm images run under qemu on other machines: Debian's qemu-user-static registers with the F flag, so the
# interpreter works inside containers and mmdebstrap's chroot.
binfmt_for() {
  local qemu
  [ "$(uname -m)" = "$(machine_of "$1")" ] && return 0
  qemu=qemu-$(qemu_of "$1")
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if ! grep -qx enabled "/proc/sys/fs/binfmt_misc/$qemu" 2>/dev/null; then
    command -v update-binfmts >/dev/null || { echo "apt-get install qemu-user-static binfmt-support" >&2; return 1; }
    update-binfmts --enable "$qemu"
  fi
}

tag_of() { echo "$IMAGE:$VERSION-$1"; }

# With Docker, arm emulation is the engine's business (Docker Desktop has it; on Linux register it
# once: docker run --privileged --rm tonistiigi/binfmt --install arm,arm64).
engine_setup() {
  local p
  if [ "$ENGINE" = podman ]; then
    podman_env
    for p in "${PLATFORMS[@]}"; do binfmt_for "$p"; done
  fi
}
