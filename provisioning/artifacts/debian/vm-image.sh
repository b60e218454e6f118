#!/usr/bin/env bash
# A Debian 12 cloud-style disk image for full-system VMs (the vm target), built offline from
# the Debian mirror: kernel, one initramfs, systemd, openssh-server, cloud-init, sudo,
# apparmor; no Docker (configure installs it, as on EC2). Like the Debian AMI, its default
# user is `admin` and cloud-init reads a NoCloud seed, so a VM boots with the same user data
# the Pulumi program gives EC2.
# Usage: vm-image.sh OUT ARCH   (ARCH: arm64 or amd64)
#   -> OUT/vm/<key>/<ARCH>/{vmlinuz,initrd.img,rootfs.qcow2,SHA256SUMS}; <key> is a digest of
#      this script, so a change to the recipe makes a new image and a finished one is reused.
# Cost (measured 2026-11-28 on a 2-core machine, arm64 under qemu-user): ~8 minutes. The
# initramfs is built once: a setup hook turns update-initramfs off while packages install,
# a customize hook turns it back on and builds it. A foreign ARCH needs binfmt for it here
# (qemu-user-static) and arch-test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trixie-apt.sh"
[ $# -eq 2 ] || { echo "usage: $0 OUT ARCH" >&2; exit 2; }
out=$(realpath -m "$1") arch=$2
case "$arch" in
    arm64) kernel=linux-image-cloud-arm64 ;;
    amd64) kernel=linux-image-cloud-amd64 ;;
    *) echo "vm-image.sh: ARCH is arm64 or amd64, not $arch" >&2; exit 2 ;;
esac
key=$(sha256sum "$0" | cut -c1-12)
dest="$out/vm/$key/$arch"
if [ -f "$dest/SHA256SUMS" ] && (cd "$dest" && sha256sum -c --quiet SHA256SUMS); then
    echo "vm image $key $arch: cached in $dest" >&2; exit 0
fi
PACKAGES="$kernel,initramfs-tools,systemd-sysv,udev,dbus,openssh-server,cloud-init,sudo,ca-certificates,netbase"
PACKAGES="$PACKAGES,ifupdown,isc-dhcp-client,iproute2,apparmor,e2fsprogs,locales,python3"
work=$(mktemp -d "${TMPDIR:-/tmp}/buildfleet-vm-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mirror=$(debian_mirror)
echo "vm image $key $arch: root filesystem (mmdebstrap)" >&2
mmdebstrap --quiet --variant=apt --architectures="$arch" --include="$PACKAGES" \
    --dpkgopt=force-confold \
    --setup-hook='mkdir -p "$1/etc/initramfs-tools" && echo update_initramfs=no > "$1/etc/initramfs-tools/update-initramfs.conf"' \
    --customize-hook='echo update_initramfs=yes > "$1/etc/initramfs-tools/update-initramfs.conf" && chroot "$1" update-initramfs -c -k all' \
    --customize-hook='echo "/dev/vda / ext4 defaults,discard 0 1" > "$1/etc/fstab"' \
    --customize-hook='printf "auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n" > "$1/etc/network/interfaces"' \
    --customize-hook='mkdir -p "$1/etc/cloud/cloud.cfg.d" && printf "%s\n" "datasource_list: [NoCloud, None]" "manage_etc_hosts: true" "system_info:" "  default_user:" "    name: admin" "    lock_passwd: true" "    gecos: Debian" "    groups: [adm, sudo]" "    sudo: [\"ALL=(ALL) NOPASSWD:ALL\"]" "    shell: /bin/bash" > "$1/etc/cloud/cloud.cfg.d/90-buildfleet.cfg"' \
    --customize-hook='sed -i "s/^# *en_US.UTF-8/en_US.UTF-8/" "$1/etc/locale.gen" && chroot "$1" locale-gen >/dev/null' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    bookworm "$root" \
    "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" >/dev/null
mkdir -p "$dest.partial"
cp "$(ls "$root"/boot/vmlinuz-* | head -n 1)" "$dest.partial/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | head -n 1)" "$dest.partial/initrd.img"
echo "vm image $key $arch: ext4 and qcow2" >&2
mke2fs -q -t ext4 -L rootfs -d "$root" "$work/rootfs.img" 6G
qemu-img convert -O qcow2 "$work/rootfs.img" "$dest.partial/rootfs.qcow2"
(cd "$dest.partial" && sha256sum vmlinuz initrd.img rootfs.qcow2 > SHA256SUMS)
rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$dest.partial" "$dest"
echo "vm image $key $arch: $dest" >&2
