# Sourced by .ci/run: make this machine able to run the tests. Idempotent.

PACKAGES=(docker.io qemu-user-static mmdebstrap openssh-client xz-utils patch iptables ca-certificates)

ensure_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q ' installed$' || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && { echo "all present"; return; }
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_dockerd() {
    if docker version >/dev/null 2>&1; then echo "already answering"; return; fi
    # No systemd as PID 1 here: start the daemon directly, in its own session.
    setsid dockerd >/var/log/buildfleet-ci-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 120); do
        docker version >/dev/null 2>&1 && { docker version --format 'engine {{.Server.Version}}'; return; }
        sleep 0.5
    done
    echo "dockerd did not start; its log:" >&2
    tail -n 30 /var/log/buildfleet-ci-dockerd.log >&2
    return 1
}

ensure_binfmt_misc() {
    [ -f /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    echo "mounted"
}
