#!/usr/bin/env bash
# Puts Debian trixie's static QEMU user-mode emulators (QEMU 10, static-pie: they run on
# any Linux) into OUT/qemu/<version>/<host-arch>/, each named <arch>-binfmt-P (the name
# tells QEMU that binfmt_misc preserves argv[0]) next to its binfmt_misc registration
# line (binfmt/<arch>.conf, as trixie's qemu-user ships it) and a SHA256SUMS file.
# Usage: fetch-qemu.sh OUT [HOST_ARCH...]   (default amd64)
# Why: arm64 builds under bookworm's QEMU 7.2 run ~6x slower than under QEMU 10 with
# the default CPU model (PAuth emulation); see README "Emulation speed".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trixie-apt.sh"
out=$(realpath -m "$1"); shift
host_arches=("${@:-amd64}")
EMULATED=(aarch64 arm ppc64le s390x riscv64 i386 x86_64 mips64el loongarch64)
apt_root="$out/apt-trixie"
trixie_update "$apt_root"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for host_arch in "${host_arches[@]}"; do
    version=$(trixie_apt "$apt_root" -qq download --print-uris "qemu-user:$host_arch" | awk '{print $2}' \
        | sed -E 's/^qemu-user_(1%3a)?([0-9.]+).*/\2/')
    dest="$out/qemu/$version/$host_arch"
    if [ -f "$dest/SHA256SUMS" ] && (cd "$dest" && sha256sum -c --quiet SHA256SUMS); then
        echo "qemu $version $host_arch: cached in $dest" >&2; continue
    fi
    (cd "$work" && trixie_apt "$apt_root" download "qemu-user:$host_arch" >&2)
    rm -rf "$work/x"; dpkg-deb -x "$work"/qemu-user_*_"$host_arch".deb "$work/x"
    mkdir -p "$dest/binfmt"
    for arch in "${EMULATED[@]}"; do
        [ -f "$work/x/usr/bin/qemu-$arch" ] || continue
        conf="$work/x/usr/share/qemu/binfmt.d/qemu-$arch.conf"
        [ -f "$conf" ] || continue   # the host's own arch has no entry
        install -m 0755 "$work/x/usr/bin/qemu-$arch" "$dest/$arch-binfmt-P"
        install -m 0644 "$conf" "$dest/binfmt/$arch.conf"
    done
    (cd "$dest" && sha256sum ./*-binfmt-P binfmt/*.conf | sed 's#  \./#  #' > SHA256SUMS)
    rm -f "$work"/qemu-user_*.deb
    echo "qemu $version $host_arch: $dest" >&2
done
