#!/usr/bin/env bash
# Builds the amd64, arm64v8 and arm32v7 images from our Dockerfiles (`make image`; EDGE_PLATFORMS="amd64 arm64v8"
# builds only those), tagged <version>-<platform> as iotedgedev names them, with OCI labels from git.
#   Docker engine with buildx: docker buildx build --platform linux/amd64|linux/arm64|linux/arm/v7 --load,
#     from the real base images.
#   Otherwise podman/buildah (Debian packages), as root: the base images cannot be pulled, so
#     stand-ins are made with mmdebstrap and tagged with the names the FROM lines use; the build
#     never pulls. Everything lives under $EDGE_IMAGES_DIR (default /var/tmp/edge-images).
# `images/build.sh clean` removes that directory (images, bases and layer cache included).
set -euo pipefail
# shellcheck source=images/common.sh
source "$(dirname "$0")/common.sh"

if [ "${1:-}" = clean ]; then
  if [ -d "$STATE/storage" ]; then
    podman_env
    podman system reset --force >/dev/null
  fi
  rm -rf "$STATE"
  exit 0
fi

# The official image also lists trixie-security. It is left out here by default because this
# machine's Debian mirror serves a stale armhf security index (size differs from InRelease; seen for
# bookworm-security and trixie-security alike), which makes every `apt-get update` in the arm32v7 build fail;
# point releases carry those fixes into trixie. EDGE_BASE_SUITES="trixie trixie-updates trixie-security" restores it.
SUITE=trixie
SOURCES=()
for suite in ${EDGE_BASE_SUITES:-$SUITE $SUITE-updates}; do
  case $suite in
    *-security) SOURCES+=("deb http://deb.debian.org/debian-security $suite main") ;;
    *) SOURCES+=("deb http://deb.debian.org/debian $suite main") ;;
  esac
done

# ENV lines for the local base: the image config the official one has (PATH: our Dockerfiles
# extend $PATH), plus what this machine's pip needs to reach its index.
base_changes() {
  local changes=(
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    --change 'CMD ["bash"]'
    --change "LABEL local.stand-in=mmdebstrap"
  )
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    changes+=(--change "ENV PIP_CERT=/usr/local/etc/local-build-ca.pem")
  fi
  # An http(s) index mirror configured for pip here must be used in the build too; file:// indexes
  # and find-links are only extras on the host and cannot be seen from inside a build step.
  local key env val urls
  for key in index-url extra-index-url; do
    env=PIP_$(echo "${key//-/_}" | tr '[:lower:]' '[:upper:]')
    val=${!env:-$(python3 -m pip config get "global.$key" 2>/dev/null || true)}
    urls=$(tr ' ' '\n' <<<"$val" | grep -E '^https?://' | paste -sd' ' || true)
    if [ -n "$urls" ]; then changes+=(--change "ENV $env=$urls"); fi
  done
  printf '%s\0' "${changes[@]}"
}

# The local stand-in for the base image a Dockerfile names in FROM.
make_base() {
  local base deb_arch import_arch changes id
  case $1 in
    amd64) base=docker.io/library/debian:$SUITE-slim deb_arch=amd64 import_arch=(--arch amd64) ;;
    arm64v8) base=docker.io/arm64v8/debian:$SUITE-slim deb_arch=arm64 import_arch=(--arch arm64) ;;
    arm32v7) base=docker.io/arm32v7/debian:$SUITE-slim deb_arch=armhf import_arch=(--arch arm --variant v7) ;;
  esac
  if podman image exists "$base"; then return 0; fi
  echo "== making local base $base (mmdebstrap, $deb_arch)"
  mapfile -d '' changes < <(base_changes)
  # merged-/usr via symlinks (as debootstrap and the official images do) instead of the usrmerge
  # package, which would drag in perl; dpkg excludes as in the official -slim images.
  # Imported untagged, tagged only if mmdebstrap succeeded: a failed run must not leave a base.
  id=$(mmdebstrap --quiet --variant=minbase --arch="$deb_arch" \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook="$ROOT/images/base-customize.sh \"\$1\"" \
      "$SUITE" - "${SOURCES[@]}" \
    | podman import --quiet "${import_arch[@]}" "${changes[@]}" -) || {
    if [ -n "${id:-}" ]; then podman rmi "$id" >/dev/null; fi
    echo "error: making the $deb_arch base failed" >&2
    return 1
  }
  podman tag "$id" "$base"
}

build() {
  local p=$1 common
  label_build_args
  common=(--platform "$(platform_of "$p")" -f "$ROOT/$(dockerfile_of "$p")" "${LABEL_ARGS[@]}" -t "$(tag_of "$p")")
  echo "== building $(tag_of "$p") ($(platform_of "$p"), $ENGINE)"
  if [ "$ENGINE" = docker ]; then
    docker buildx build "${common[@]}" --load "$ROOT"
  else
    make_base "$p"
    podman build --format docker --pull=never "${common[@]}" "$ROOT"
  fi
}

# Before anything slow: the arm32v7 image installs requirements/script.txt from wheels only, and an armv7 build
# under emulation takes long to fail. Exit 1 (a package without an armv7 wheel, named with its fix) stops here;
# 3 (the check could not reach the package index) only warns, as the build may still get there.
check_script_deps() {
  local py=python3 rc=0
  if [ -x "$ROOT/.venv/bin/python" ]; then py=$ROOT/.venv/bin/python; fi
  echo "== checking requirements/script.txt for armv7 wheels"
  "$py" "$ROOT/images/check_script_deps.py" || rc=$?
  case $rc in
    0) ;;
    3) echo "warning: the armv7 check of requirements/script.txt could not run (above); building anyway" >&2 ;;
    *)
      echo "error: requirements/script.txt cannot be installed in the arm32v7 image (above); nothing was built" >&2
      exit 1
      ;;
  esac
}

# The Dockerfiles install requirements/lock/*.txt with --require-hashes: a lock older than the requirement files
# would build an image without the new pins. Offline, seconds.
check_locks() {
  local py=python3
  if [ -x "$ROOT/.venv/bin/python" ]; then py=$ROOT/.venv/bin/python; fi
  echo "== checking requirements/lock/ against the requirement files"
  "$py" "$ROOT/images/lock.py" --check || {
    echo "error: requirements/lock/ is out of date (above): run \`make lock\`; nothing was built" >&2
    exit 1
  }
}

check_locks
check_script_deps
oci_labels
echo "== labels: revision $REVISION, created $CREATED, source $SOURCE, licenses $LICENSES"
engine_setup
for p in "${PLATFORMS[@]}"; do build "$p"; done
