#!/usr/bin/env bash
# Everything a fleet's hosts get uploaded, for each host CPU: the buildx plugin, buildkitd
# and buildctl, and the static QEMU emulators. The one command `buildfleet up --target aws`
# names when an arm64 (Graviton) or amd64 host would lack something.
# Usage: host-artifacts.sh OUT ARCH...   (ARCH: amd64, arm64)   e.g. host-artifacts.sh ~/.cache/buildfleet arm64
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 OUT ARCH... (amd64, arm64)" >&2; exit 2; }
out=$1; shift
"$here/fetch-buildx.sh" "$out" "$@"
"$here/build-buildkit.sh" "$out" "$@"
"$here/fetch-qemu.sh" "$out" "$@"
