#!/usr/bin/env bash
# Builds static buildkitd + buildctl from Debian's own sources, fully offline from the
# Debian mirror: the BuildKit copy inside trixie's docker.io source package, compiled in
# GOPATH mode against the golang-*-dev packages listed in buildkit-go-deps.txt.
# Usage: build-buildkit.sh OUT [ARCH...]  -> OUT/buildkit/<version>/<arch>/{buildkitd,buildctl}
# Cached: finished binaries are reused; the Go build cache is kept under OUT/go-build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/trixie-apt.sh"
out=$(realpath -m "$1"); shift
arches=("${@:-amd64}")
DOCKER_SRC_VERSION=${DOCKER_SRC_VERSION:-26.1.5+dfsg1-9+deb13u1}
BUILDKIT_VERSION=${BUILDKIT_VERSION:-0.13.2}
GO_PKG=golang-1.24
PATCHES=(grpc-middleware-v1 buildkit-remove-hcsshim buildkit-remove-jaeger)

done_for() { [ -x "$out/buildkit/$BUILDKIT_VERSION/$1/buildkitd" ] && (cd "$out/buildkit/$BUILDKIT_VERSION/$1" && sha256sum -c --quiet SHA256SUMS); }
todo=()
for arch in "${arches[@]}"; do
    if done_for "$arch"; then echo "buildkit $BUILDKIT_VERSION $arch: cached" >&2; else todo+=("$arch"); fi
done
[ ${#todo[@]} -gt 0 ] || exit 0

apt_root="$out/apt-trixie"
trixie_update "$apt_root"
src="$out/buildkit-src/$DOCKER_SRC_VERSION"
root="$src/root"
if [ ! -f "$src/.ready" ]; then
    rm -rf "$src"; mkdir -p "$src/debs" "$root"
    mapfile -t deps < <(grep -Ev '^\s*(#|$)' "$here/buildkit-go-deps.txt")
    (cd "$src/debs" && trixie_apt "$apt_root" download "$GO_PKG-go" "$GO_PKG-src" golang-github-docker-docker-dev "${deps[@]}" >&2)
    for deb in "$src"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
    # The .dsc may be missing on a mirror (apt then exits non-zero) while the tarballs arrive.
    (cd "$src" && trixie_apt "$apt_root" source --download-only "docker.io=$DOCKER_SRC_VERSION" >&2 || true)
    tarball=$(ls "$src"/docker.io_*.orig-buildkit.tar.* | head -n 1)
    debian=$(ls "$src"/docker.io_*.debian.tar.* | head -n 1)
    mkdir -p "$src/tree"
    tar -xf "$tarball" -C "$src/tree"
    tar -xf "$debian" -C "$src/tree"
    # Debian's patches span the whole docker.io tree; only their buildkit/ parts apply here,
    # so patch skips the engine/ files (-f) and any rejected buildkit hunk stops the build.
    for patch in "${PATCHES[@]/%/.patch}" $(cd "$src/tree/debian/patches" && ls buildkit-CVE-*.patch 2>/dev/null); do
        (cd "$src/tree" && patch -p1 -N -f -s < "debian/patches/$patch" > /dev/null 2>&1 || true)
    done
    if find "$src/tree/buildkit" -name '*.rej' | grep -q .; then
        echo "a Debian patch did not apply to buildkit:" >&2; find "$src/tree/buildkit" -name '*.rej' >&2; exit 1
    fi
    bk="$src/tree/buildkit"
    mkdir -p "$src/gopath/src/github.com/moby"
    rm -rf "$src/gopath/src/github.com/moby/buildkit"
    cp -a "$bk" "$src/gopath/src/github.com/moby/buildkit"
    touch "$src/.ready"
fi

goroot="$root/usr/lib/go-1.24"
for arch in "${todo[@]}"; do
    dest="$out/buildkit/$BUILDKIT_VERSION/$arch"
    mkdir -p "$dest"
    for cmd in buildkitd buildctl; do
        echo "building $cmd for $arch" >&2
        (cd "$src/gopath/src/github.com/moby/buildkit" && \
            env -i PATH="$goroot/bin:/usr/bin:/bin" HOME="$out" GOROOT="$goroot" \
                GOPATH="$src/gopath:$root/usr/share/gocode" GOCACHE="$out/go-build" \
                GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0 GOOS=linux GOARCH="$arch" \
                go build -trimpath -tags "osusergo netgo static_build seccomp" \
                -ldflags "-s -w -extldflags -static -X github.com/moby/buildkit/version.Version=v$BUILDKIT_VERSION" \
                -o "$dest/$cmd" "./cmd/$cmd")
    done
    (cd "$dest" && sha256sum buildkitd buildctl > SHA256SUMS)
    echo "buildkit $BUILDKIT_VERSION $arch: $dest" >&2
done
