"""Keeping daemons running: systemd where the host has it, a small supervisor where not.

Container hosts (the local target) have no init system. There a daemon runs under
``buildfleet-supervise``, a loop that restarts it when it exits, started at boot by the
host's /etc/buildfleet/boot.d scripts (run by the container's init on every start).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

SUPERVISE = "/usr/local/sbin/buildfleet-supervise"
BOOT_DIR = "/etc/buildfleet/boot.d"
UNIT_DIR = "/etc/systemd/system"

SUPERVISE_SCRIPT = b"""#!/bin/sh
# buildfleet-supervise NAME COMMAND...: keep COMMAND running without an init system.
# Starts a restart loop once (pid in /run/buildfleet/NAME.pid); `restart` kills the
# daemon so the loop starts it again; `stop` ends loop and daemon.
set -eu
action=start
case "$1" in restart|stop) action=$1; shift ;; esac
name=$1; shift
run=/run/buildfleet; log=/var/log/buildfleet
pidfile=$run/$name.pid
mkdir -p "$run" "$log"
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
# Kill the daemon (the loop's child) and wait until it is gone, so whoever waits for the
# service next sees the new daemon, never the old one still answering.
kill_daemon() {
    children=$(pgrep -P "$(cat "$pidfile")" || true)
    [ -n "$children" ] || return 0
    kill $children 2>/dev/null || true
    for _ in $(seq 60); do
        alive=0; for c in $children; do kill -0 "$c" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && return 0; sleep 0.5
    done
    kill -9 $children 2>/dev/null || true
}
case "$action" in
stop)
    if running; then loop=$(cat "$pidfile"); children=$(pgrep -P "$loop" || true); kill "$loop" || true
        [ -z "$children" ] || kill $children 2>/dev/null || true; fi
    rm -f "$pidfile"; exit 0 ;;
restart)
    if running; then kill_daemon; exit 0; fi ;;
esac
running && exit 0
nohup setsid sh -c 'while :; do "$@"; echo "buildfleet-supervise: exited with $?, restarting in 1s"; sleep 1; done' \\
    "supervise-$name" "$@" >>"$log/$name.log" 2>&1 </dev/null &
echo $! > "$pidfile"
"""


@dataclass(frozen=True)
class Service:
    """A daemon buildfleet keeps running: its name, command and what it needs first."""

    name: str
    argv: tuple[str, ...]
    description: str
    after: tuple[str, ...] = ("network-online.target",)
    oneshot: bool = False  # a boot-time task rather than a daemon
    before: tuple[str, ...] = ()  # units that must wait for it

    def unit(self) -> bytes:
        """A systemd unit that starts at boot and, for a daemon, restarts on failure."""
        lifecycle = (
            "Type=oneshot\nRemainAfterExit=yes\n"
            if self.oneshot
            else "Restart=always\nRestartSec=2\nLimitNOFILE=infinity\n"
        )
        return (
            "[Unit]\n"
            f"Description={self.description} (managed by buildfleet)\n"
            f"After={' '.join(self.after)}\n"
            f"Wants={' '.join(self.after)}\n" + (f"Before={' '.join(self.before)}\n" if self.before else "") + "\n"
            "[Service]\n"
            f"ExecStart={shlex.join(self.argv)}\n"
            f"{lifecycle}\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ).encode()

    def boot_script(self) -> bytes:
        """The boot.d entry for hosts without systemd: start under the supervisor."""
        return (
            "#!/bin/sh\n"
            f"# {self.description} (managed by buildfleet)\n"
            f"exec {SUPERVISE} {shlex.join([self.name, *self.argv])}\n"
        ).encode()

    def definition_path(self, init: str) -> str:
        return f"{UNIT_DIR}/{self.name}.service" if init == "systemd" else f"{BOOT_DIR}/50-{self.name}"

    def definition(self, init: str) -> bytes:
        return self.unit() if init == "systemd" else self.boot_script()

    def start_argv(self, init: str, restart: bool) -> tuple[str, ...]:
        if init == "systemd":
            verb = "restart" if restart else "start"
            script = f"systemctl daemon-reload && systemctl enable {self.name} && systemctl {verb} {self.name}"
        else:
            script = f"{BOOT_DIR}/50-{self.name}" + (f" && {SUPERVISE} restart {self.name}" if restart else "")
        return ("sh", "-c", script)
