#!/usr/bin/env bash
# Everything a fleet's hosts get uploaded, for each host CPU: buildkitd, buildctl and the buildx
# plugin (built from their Go modules: go/build.sh, any OS with Go) and, where apt is available,
# the static QEMU emulators (debian/fetch-qemu.sh; without them emulation hosts use their own
# distribution's qemu-user-static). The one command `buildfleet up --target aws` names when an
# arm64 (Graviton) or amd64 host would lack something.
# Usage: host-artifacts.sh OUT ARCH...   (ARCH: amd64, arm64)   e.g. host-artifacts.sh ~/.cache/buildfleet arm64
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 OUT ARCH... (amd64, arm64)" >&2; exit 2; }
out=$1; shift
"$here/go/build.sh" "$out" "$@"
if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    "$here/debian/fetch-qemu.sh" "$out" "$@"
else
    echo "no apt here: static QEMU skipped (emulation hosts will use their distribution's qemu-user-static)" >&2
fi
