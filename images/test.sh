#!/usr/bin/env bash
# `make image-test`: build the images (amd64, arm64v8, arm32v7; EDGE_PLATFORMS to choose), run `python -m app
# selftest` in each, and require the prediction lines (everything after the header line, which names library
# versions and so may differ) to be identical to the first platform's. Also checks each image's promises (non-root,
# no pip/compilers/apt lists, the locked versions installed, arm32v7 on Debian's model stack, the OCI labels, the
# architecture), prints the headers, sizes and the total time.
set -euo pipefail
start=$SECONDS
here=$(dirname "$0")
# shellcheck source=images/common.sh
source "$here/common.sh"

# The labels the build gets, and the check expects: taken once, here.
oci_labels
expected_labels
"$here/build.sh"
engine_setup
# HEALTHCHECK needs systemd timers under podman; these one-off runs do without it.
run=("$ENGINE" run --rm --network none)
if [ "$ENGINE" = podman ]; then run+=(--no-healthcheck); fi
out=$STATE/selftest
mkdir -p "$out"

failed=0
for p in "${PLATFORMS[@]}"; do
  image=$(tag_of "$p")
  echo "== selftest $image"
  # The selftest needs no network; the outputs are kept in $out for inspection.
  if ! "${run[@]}" --platform "$(platform_of "$p")" "$image" python -m app selftest >"$out/$p.txt" 2>"$out/$p.err"; then
    echo "FAIL: selftest exited non-zero in $image:" >&2
    cat "$out/$p.err" >&2
    failed=1
  fi
  cat "$out/$p.txt"
  echo "== image checks $image"
  labels=$($ENGINE image inspect --format '{{json .Config.Labels}}' "$image")
  # The requirement files and locks, read-only, for the version checks.
  "${run[@]}" -i --platform "$(platform_of "$p")" -v "$ROOT/requirements:/tmp/requirements:ro" \
    "$image" python - "$p" "$labels" "${EXPECTED_LABELS[@]}" <"$here/check_image.py" || failed=1
done

reference=${PLATFORMS[0]}
echo "== comparing predictions (stdout after the header line) with $reference's"
if [ "$(wc -l <"$out/$reference.txt")" -lt 2 ]; then
  echo "FAIL: $reference selftest printed no predictions" >&2
  failed=1
fi
for p in "${PLATFORMS[@]:1}"; do
  if diff <(tail -n +2 "$out/$reference.txt") <(tail -n +2 "$out/$p.txt"); then
    echo "identical: $reference and $p, $(($(wc -l <"$out/$p.txt") - 1)) prediction lines"
  else
    echo "FAIL: $reference and $p predictions differ (diff above)" >&2
    failed=1
  fi
done

echo "== selftest headers"
for p in "${PLATFORMS[@]}"; do echo "$p: $(head -n 1 "$out/$p.txt")"; done
echo "== images"
for p in "${PLATFORMS[@]}"; do
  $ENGINE image inspect --format '{{.Size}}' "$(tag_of "$p")" \
    | awk -v n="$(tag_of "$p")" '{ printf "%s  %.1f MB (%d bytes, uncompressed)\n", n, $1 / 1e6, $1 }'
done
echo "total time: $((SECONDS - start)) s"
exit "$failed"
