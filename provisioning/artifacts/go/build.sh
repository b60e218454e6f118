#!/usr/bin/env bash
# Builds buildkitd, buildctl and the docker-buildx plugin from their published Go modules, at the
# versions pinned in buildkit/go.mod and buildx/go.mod beside this script (their go.sum files
# checksum every module of the build), static for linux/ARCH, on any OS that has Go. Each go.mod
# requires the tool and nothing else, so the build list is the project's own (neither module has
# a replace directive) and the binaries are stamped as upstream's Makefiles stamp them.
# Usage: build.sh OUT [ARCH...]   (ARCH: amd64, arm64; default amd64)
#   -> OUT/buildkit/<version>/<arch>/{buildkitd,buildctl,SHA256SUMS}
#      OUT/buildx/<version>/<arch>/{docker-buildx,docker-buildx.sha256}
# Cached: finished binaries whose sums still match are kept; modules and the Go build cache live
# under OUT/go, so a rebuild after a version bump compiles only what changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 OUT [ARCH...] (amd64, arm64)" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd); shift
arches=("${@:-amd64}")
command -v go >/dev/null || { echo "go is not on PATH: install Go (https://go.dev/dl/), then run $0 again" >&2; exit 1; }

# -mod=readonly: go.mod and go.sum are used as committed, never rewritten; a module whose
# download does not match go.sum stops the build.
export GOMODCACHE="$out/go/mod" GOCACHE="$out/go/build" GOFLAGS="-mod=readonly -modcacherw" CGO_ENABLED=0 GOOS=linux

pinned() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }

# build TOOL MODULE VERSION ARCH DEST NAME PACKAGE TAGS
build() {
    local tool=$1 module=$2 version=$3 arch=$4 dest=$5 name=$6 package=$7 tags=$8
    local stamp="-X $module/version.Version=$version -X $module/version.Package=$module"
    echo "building $name $version for linux/$arch" >&2
    (cd "$here/$tool" && GOARCH="$arch" go build -trimpath -tags "$tags" \
        -ldflags "-s -w -extldflags -static $stamp" -o "$dest/$name.part" "$package")
    mv "$dest/$name.part" "$dest/$name"  # never a half-written binary under its real name
}

# sha256sum on Linux, shasum on macOS: the same line format either way.
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
cached() { [ -x "$1/$2" ] && (cd "$1" && sha256 -c "$3" >/dev/null 2>&1); }

buildkit=$(pinned buildkit github.com/moby/buildkit)
buildx=$(pinned buildx github.com/docker/buildx)
for arch in "${arches[@]}"; do
    dest="$out/buildkit/${buildkit#v}/$arch"
    if cached "$dest" buildkitd SHA256SUMS; then
        echo "buildkit $buildkit $arch: cached in $dest" >&2
    else
        mkdir -p "$dest"
        for cmd in buildkitd buildctl; do
            build buildkit github.com/moby/buildkit "$buildkit" "$arch" "$dest" "$cmd" \
                "github.com/moby/buildkit/cmd/$cmd" "osusergo netgo static_build seccomp"
        done
        (cd "$dest" && sha256 buildkitd buildctl > SHA256SUMS)
        echo "buildkit $buildkit $arch: $dest" >&2
    fi
    dest="$out/buildx/${buildx#v}/$arch"
    if cached "$dest" docker-buildx docker-buildx.sha256; then
        echo "buildx $buildx $arch: cached in $dest" >&2
    else
        mkdir -p "$dest"
        build buildx github.com/docker/buildx "$buildx" "$arch" "$dest" docker-buildx \
            github.com/docker/buildx/cmd/buildx "osusergo netgo"
        (cd "$dest" && sha256 docker-buildx > docker-buildx.sha256)
        echo "buildx $buildx $arch: $dest" >&2
    fi
done
