#!/bin/sh
# PID 1 of a local build host container: make the kernel interfaces Docker-in-a-container
# needs writable (the container runs without --privileged, which this machine refuses),
# give the host its own SSH host keys and the operator's key, then boot:
# BUILDFLEET_INIT=systemd execs systemd (like an EC2 host), anything else runs the
# services buildfleet installed from /etc/buildfleet/boot.d and becomes sshd.
set -eu
mount -o remount,rw /sys 2>/dev/null || true
if [ "$(stat -fc %T /sys/fs/cgroup)" = "cgroup2fs" ]; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
else
    for dir in /sys/fs/cgroup/*/; do
        mount -o remount,bind,rw "$dir" 2>/dev/null || true
    done
fi
ssh-keygen -A >/dev/null
# Keys only, as on the cloud images: no password or keyboard-interactive logins at all.
install -d /etc/ssh/sshd_config.d
printf '%s\n' "PasswordAuthentication no" "KbdInteractiveAuthentication no" \
    "PermitRootLogin prohibit-password" > /etc/ssh/sshd_config.d/10-buildfleet.conf
install -d -m 0700 /root/.ssh
printf '%s\n' "${BUILDFLEET_AUTHORIZED_KEY:?BUILDFLEET_AUTHORIZED_KEY is not set}" > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
if [ "${BUILDFLEET_INIT:-none}" = "systemd" ]; then
    exec /lib/systemd/systemd
fi
for service in /etc/buildfleet/boot.d/*; do
    [ -x "$service" ] && "$service" || true
done
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
