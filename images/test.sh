#!/usr/bin/env bash
# `make image-test`: build both images, run `python -m app selftest` in each, and require the
# prediction lines (everything after the header line, which names library versions and so may
# differ) to be identical on amd64 and arm32v7. Also checks each image's promises (non-root, no
# pip/compilers/apt lists, arm32v7 on Debian's model stack), prints sizes and the total time.
set -euo pipefail
start=$SECONDS
here=$(dirname "$0")
# shellcheck source=images/common.sh
source "$here/common.sh"

"$here/build.sh"
engine_setup
out=$STATE/selftest
mkdir -p "$out"

failed=0
for p in "${PLATFORMS[@]}"; do
  image=$(tag_of "$p")
  echo "== selftest $image"
  # The selftest needs no network; the outputs are kept in $out for inspection.
  if ! $ENGINE run --rm --network none --platform "$(platform_of "$p")" "$image" python -m app selftest >"$out/$p.txt" 2>"$out/$p.err"; then
    echo "FAIL: selftest exited non-zero in $image:" >&2
    cat "$out/$p.err" >&2
    failed=1
  fi
  cat "$out/$p.txt"
  echo "== image checks $image"
  $ENGINE run --rm -i --network none --platform "$(platform_of "$p")" "$image" python - "$p" <"$here/check_image.py" || failed=1
done

echo "== comparing predictions (stdout after the header line)"
if [ "$(wc -l <"$out/amd64.txt")" -lt 2 ]; then
  echo "FAIL: amd64 selftest printed no predictions" >&2
  failed=1
elif diff <(tail -n +2 "$out/amd64.txt") <(tail -n +2 "$out/arm32v7.txt"); then
  echo "identical: $(($(wc -l <"$out/amd64.txt") - 1)) prediction lines"
else
  echo "FAIL: amd64 and arm32v7 predictions differ (diff above)" >&2
  failed=1
fi

echo "== images"
for p in "${PLATFORMS[@]}"; do
  $ENGINE image inspect --format '{{.Size}}' "$(tag_of "$p")" \
    | awk -v n="$(tag_of "$p")" '{ printf "%s  %.1f MB (%d bytes, uncompressed)\n", n, $1 / 1e6, $1 }'
done
echo "total time: $((SECONDS - start)) s"
exit "$failed"
