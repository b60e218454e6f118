#!/usr/bin/env bash
# Puts one Debian userland per platform into OUT/userland/<key>/ as
# userland-<arch><variant>.tar (names as TARGETARCH+TARGETVARIANT spell them), with a
# SHA256SUMS file. Each holds gcc, libc6-dev and python3-minimal: the sample compiles a
# program on every platform and the bench workloads compile C and run Python, and Docker
# Hub base images are unreachable.
#
# mmdebstrap's "extract" variant unpacks the packages and their dependencies without
# running maintainer scripts, so no foreign code runs here and no binfmt/QEMU is needed
# on this machine; the merged-/usr hook adds the /bin, /lib (and /lib64) links the
# dynamic loaders are found through. Documentation and locales are left out.
# Suite per architecture: bookworm wherever it ships the architecture (this mirror was
# seen to lack trixie point-release libc6 for armel, ppc64el and s390x), trixie for
# riscv64, which bookworm does not have. <key> is a digest of this script, so changing
# the package set or the suites makes a new set.
# Usage: fetch-userland.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trixie-apt.sh"
out=$(realpath -m "$1")
PACKAGES="gcc,libc6-dev,python3-minimal"
# platform name (TARGETARCH+TARGETVARIANT) -> Debian architecture and suite
declare -A DEBIAN=([amd64]=amd64 [arm64]=arm64 [armv7]=armhf [armv6]=armel [386]=i386
                   [ppc64le]=ppc64el [s390x]=s390x [riscv64]=riscv64)
declare -A SUITE=([riscv64]=trixie)
key=$(sha256sum "$0" | cut -c1-12)
dest="$out/userland/$key"
if [ -f "$dest/SHA256SUMS" ] && [ "$(wc -l < "$dest/SHA256SUMS")" -eq ${#DEBIAN[@]} ] \
    && (cd "$dest" && sha256sum -c --quiet SHA256SUMS); then
    echo "userland $key: cached in $dest" >&2; exit 0
fi
mkdir -p "$dest"
mirror=$(debian_mirror)
for name in "${!DEBIAN[@]}"; do
    arch=${DEBIAN[$name]} suite=${SUITE[$name]:-bookworm}
    echo "userland $key: $name ($arch, $suite)" >&2
    mmdebstrap --quiet --format=tar --variant=extract --architectures="$arch" --include="$PACKAGES" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$suite" "$dest/userland-$name.tar.partial" \
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >/dev/null
    mv "$dest/userland-$name.tar.partial" "$dest/userland-$name.tar"
done
(cd "$dest" && sha256sum userland-*.tar > SHA256SUMS)
echo "userland $key: $dest" >&2
