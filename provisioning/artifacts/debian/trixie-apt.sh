# Sourced by the artifact scripts: apt-get against Debian trixie through a private
# configuration, so the machine's own sources and package state stay untouched.
# The mirror is the one the machine already uses (override: BUILDFLEET_DEBIAN_MIRROR).

debian_mirror() {
    if [ -n "${BUILDFLEET_DEBIAN_MIRROR:-}" ]; then echo "$BUILDFLEET_DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt; set BUILDFLEET_DEBIAN_MIRROR" >&2; return 1; }
    echo "${uri%/}"
}

# Every architecture a build host or a sample userland may need (Debian's names).
TRIXIE_ARCHES="amd64 arm64 armhf armel i386 ppc64el s390x riscv64"

# trixie_apt ROOT ARGS...: run apt-get with state kept under ROOT.
trixie_apt() {
    local root=$1; shift
    if [ ! -f "$root/sources.list.d/trixie.list" ]; then
        mkdir -p "$root/sources.list.d" "$root/lists/partial" "$root/cache/archives/partial" "$root/preferences.d"
        local mirror; mirror=$(debian_mirror)
        printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\ndeb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' \
            "$mirror" "$mirror" > "$root/sources.list.d/trixie.list"
    fi
    apt-get -q \
        -o Dir::Etc::sourcelist=/dev/null \
        -o Dir::Etc::sourceparts="$root/sources.list.d" \
        -o Dir::Etc::preferencesparts="$root/preferences.d" \
        -o Dir::State::Lists="$root/lists" \
        -o Dir::Cache="$root/cache" \
        $(for a in $TRIXIE_ARCHES; do printf -- '-o APT::Architectures::=%s ' "$a"; done) \
        -o APT::Sandbox::User=root \
        "$@"
}

trixie_update() {  # refresh the private lists at most once a day, or when an arch is missing
    local root=$1 arch
    for arch in $TRIXIE_ARCHES; do
        if [ -z "$(find "$root/lists" -maxdepth 1 -name "*binary-${arch}_Packages*" -mtime -1 2>/dev/null | head -n 1)" ]; then
            trixie_apt "$root" update >&2
            return
        fi
    done
}
