#!/usr/bin/env bash
# Puts Debian trixie's static busybox for each platform into OUT/busybox/<version>/,
# named busybox-<arch><variant> as the sample Dockerfile's TARGETARCH/TARGETVARIANT spell
# it (busybox-amd64, busybox-armv7, ...), with a SHA256SUMS file. The sample build and
# the bench need a userland per platform, and Docker Hub base images are unreachable.
# Usage: fetch-busybox.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trixie-apt.sh"
out=$(realpath -m "$1")
# platform name (TARGETARCH+TARGETVARIANT) -> Debian architecture
declare -A DEBIAN=([amd64]=amd64 [arm64]=arm64 [armv7]=armhf [armv6]=armel [386]=i386
                   [ppc64le]=ppc64el [s390x]=s390x [riscv64]=riscv64)
apt_root="$out/apt-trixie"
trixie_update "$apt_root"
version=$(trixie_apt "$apt_root" -qq download --print-uris busybox-static:amd64 | awk '{print $2}' \
    | sed -E 's/^busybox-static_(1%3a)?([^_]+)_.*/\2/')
dest="$out/busybox/$version"
if [ -f "$dest/SHA256SUMS" ] && [ "$(wc -l < "$dest/SHA256SUMS")" -eq ${#DEBIAN[@]} ] \
    && (cd "$dest" && sha256sum -c --quiet SHA256SUMS); then
    echo "busybox $version: cached in $dest" >&2; exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
for name in "${!DEBIAN[@]}"; do
    arch=${DEBIAN[$name]}
    (cd "$work" && trixie_apt "$apt_root" download "busybox-static:$arch" >&2)
    rm -rf "$work/x"; dpkg-deb -x "$work"/busybox-static_*_"$arch".deb "$work/x"
    install -m 0755 "$work/x/usr/bin/busybox" "$dest/busybox-$name"
    rm -f "$work"/busybox-static_*.deb
done
(cd "$dest" && sha256sum busybox-* > SHA256SUMS)
echo "busybox $version: $dest" >&2
