#!/usr/bin/env bash
# mmdebstrap customize hook for the LOCAL stand-in of debian:trixie-slim (podman path only).
# $1 is the root of the new system. Makes it behave like the official image where our Dockerfiles
# can tell the difference, and adds this machine's build plumbing (CA for pip), never in a Dockerfile.
set -euo pipefail
root=$1

# Like the official images (debuerreotype): apt keeps no .deb files, caches or translations,
# so `apt-get install ... && rm -rf /var/lib/apt/lists/*` leaves the same layer behind.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
# With Dir::Cache::pkgcache "" mmdebstrap's final apt-get clean no longer removes these (72 MB).
rm -f "$root"/var/cache/apt/*.bin

# Egress here goes through a TLS-inspecting proxy: pip in a build step must trust its CA.
# PIP_CERT (set by `podman import --change`) points at this bundle.
shopt -s nullglob
crts=(/usr/local/share/ca-certificates/*.crt)
if [ ${#crts[@]} -gt 0 ]; then
  mkdir -p "$root/usr/local/share/ca-certificates" "$root/usr/local/etc"
  cp "${crts[@]}" "$root/usr/local/share/ca-certificates/"
  # Not in /etc/ssl/certs: ca-certificates' rehash there expects one certificate per file.
  cat "${crts[@]}" >"$root/usr/local/etc/local-build-ca.pem"
fi
