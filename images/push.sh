#!/usr/bin/env bash
# Publishes the built images (`make image` first) as iotedgedev expects them:
#   <repository>:<version>-<platform>   one per platform (amd64, arm64v8, arm32v7), what ${MODULES.x.<platform>} names
#   <repository>:<version>              one manifest list of all of them, what ${MODULES.x} can name on any device
# <repository> is module.json's image.repository with ${VAR}s from the environment, else from .env
# (CONTAINER_REGISTRY_SERVER); CONTAINER_REGISTRY_USERNAME/PASSWORD there log in first when both are set.
#
#   images/push.sh            push the platform tags, then the list
#   images/push.sh --local    only make the list locally (localhost/edge-inference:<version>) and print
#                             `manifest inspect` of it: no registry needed
#
# podman: podman push for each tag, `podman manifest create` + `podman manifest add` + `podman manifest push --all`.
# Docker: docker push for each tag, then `docker buildx imagetools create` (the list is made in the registry).
# EDGE_PUSH_TLS_VERIFY=false (podman) talks plain http to a registry, e.g. a test one on 127.0.0.1.
set -euo pipefail
# shellcheck source=images/common.sh
source "$(dirname "$0")/common.sh"

local_only=0
case ${1:-} in
  --local) local_only=1 ;;
  "") ;;
  *) echo "usage: images/push.sh [--local]" >&2; exit 2 ;;
esac

if [ "$ENGINE" = podman ]; then podman_env; fi
for p in "${PLATFORMS[@]}"; do
  if ! $ENGINE image inspect "$(tag_of "$p")" >/dev/null 2>&1; then
    echo "error: $(tag_of "$p") is not built: run \`make image\` first" >&2
    exit 1
  fi
done

# module.json's repository, ${VAR} taken from the environment first, then .env (as iotedgedev does).
repository() {
  python3 - "$ROOT/module.json" "$ROOT/.env" <<'EOF'
import json, os, re, sys
repo = json.load(open(sys.argv[1]))["image"]["repository"]
env = {}
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        m = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if m and not line.lstrip().startswith("#"):
            env[m.group(1)] = m.group(2).strip("'\"")
env.update(os.environ)
print(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), repo))
EOF
}

# A value from the environment, else from .env (never printed).
setting() {
  if [ -n "${!1:-}" ]; then printf '%s' "${!1}"; return; fi
  [ -f "$ROOT/.env" ] || return 0
  sed -nE "s/^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=[[:space:]]*['\"]?([^'\"]*)['\"]?[[:space:]]*$/\\2/p" "$ROOT/.env" | tail -n 1
}

# A list of that name from an earlier run goes first. Not with `podman rmi`: podman 4.3 resolves a list's name to
# the image for this machine's platform in it, and would delete the amd64 image instead of the list.
replace_list() {
  if podman manifest exists "$1"; then
    podman manifest rm "$1" >/dev/null
  elif podman image exists "$1"; then
    podman untag "$1" "$1"
  fi
}

if [ "$local_only" = 1 ]; then
  [ "$ENGINE" = podman ] || { echo "error: --local needs podman (Docker makes the list in the registry)" >&2; exit 1; }
  list=$IMAGE:$VERSION
  replace_list "$list"
  podman manifest create "$list" >/dev/null
  for p in "${PLATFORMS[@]}"; do
    podman manifest add "$list" "containers-storage:$(tag_of "$p")" >/dev/null
  done
  echo "== $list (local manifest list)"
  podman manifest inspect "$list"
  exit 0
fi

repo=$(repository)
# shellcheck disable=SC2016  # a literal ${ left unexpanded
case $repo in
  *'${'* | '' | /*)
    echo "error: module.json's repository is '$repo' here: set CONTAINER_REGISTRY_SERVER (environment or .env)" >&2
    exit 1
    ;;
esac
server=${repo%%/*}
tls=(--tls-verify="${EDGE_PUSH_TLS_VERIFY:-true}")
user=$(setting CONTAINER_REGISTRY_USERNAME)
password=$(setting CONTAINER_REGISTRY_PASSWORD)
if [ -n "$user" ] && [ -n "$password" ]; then
  echo "== logging in to $server as $user"
  if [ "$ENGINE" = podman ]; then
    export REGISTRY_AUTH_FILE=$STATE/auth.json
    podman login "${tls[@]}" --username "$user" --password-stdin "$server" <<<"$password"
  else
    docker login --username "$user" --password-stdin "$server" <<<"$password"
  fi
fi

tags=()
for p in "${PLATFORMS[@]}"; do
  tag=$repo:$VERSION-$p
  tags+=("$tag")
  echo "== pushing $tag"
  if [ "$ENGINE" = podman ]; then
    podman push "${tls[@]}" --format v2s2 "$(tag_of "$p")" "docker://$tag"
  else
    docker tag "$(tag_of "$p")" "$tag"
    docker push "$tag"
  fi
done

echo "== pushing $repo:$VERSION (manifest list: ${PLATFORMS[*]})"
if [ "$ENGINE" = podman ]; then
  list=$repo:$VERSION
  replace_list "$list"
  podman manifest create "$list" >/dev/null
  for p in "${PLATFORMS[@]}"; do podman manifest add "$list" "containers-storage:$(tag_of "$p")" >/dev/null; done
  podman manifest push "${tls[@]}" --all --format v2s2 "$list" "docker://$list"
else
  docker buildx imagetools create -t "$repo:$VERSION" "${tags[@]}"
fi
echo "pushed: $repo:$VERSION and ${tags[*]}"
