#!/usr/bin/env bash
# Puts Debian trixie's docker-buildx plugin for each ARCH into OUT/buildx/<version>/<arch>/.
# Usage: fetch-buildx.sh OUT [ARCH...]   (ARCH: amd64, arm64; default amd64)
# The offline artifact source: hosts get the plugin uploaded from here, checked by sha256.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trixie-apt.sh"
out=$(realpath -m "$1"); shift
arches=("${@:-amd64}")
apt_root="$out/apt-trixie"
trixie_update "$apt_root"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for arch in "${arches[@]}"; do
    version=$(trixie_apt "$apt_root" -qq download --print-uris "docker-buildx:$arch" | awk '{print $2}' | sed -E 's/^docker-buildx_([^_+-]+).*/\1/')
    dest="$out/buildx/$version/$arch"
    if [ -x "$dest/docker-buildx" ] && (cd "$dest" && sha256sum -c --quiet docker-buildx.sha256); then
        echo "buildx $version $arch: cached in $dest" >&2; continue
    fi
    (cd "$work" && trixie_apt "$apt_root" download "docker-buildx:$arch" >&2)
    rm -rf "$work/x"; dpkg-deb -x "$work"/docker-buildx_*_"$arch".deb "$work/x"
    mkdir -p "$dest"
    install -m 0755 "$work/x/usr/libexec/docker/cli-plugins/docker-buildx" "$dest/docker-buildx"
    (cd "$dest" && sha256sum docker-buildx > docker-buildx.sha256)
    rm -f "$work"/docker-buildx_*.deb
    echo "buildx $version $arch: $dest" >&2
done
