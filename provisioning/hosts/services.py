"""Keeping daemons running: systemd where the host has it, a small supervisor where not.

Container hosts (the local target) have no init system. There a daemon runs under
``buildfleet-supervise``, a loop that restarts it when it exits, started at boot by the
host's /etc/buildfleet/boot.d scripts (run by the container's init on every start).

``init_system`` is the one place that tells the two apart (as pyinfra's service helper):
the steps ask it for a service's files, how to start, enable, check and remove it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from provisioning.hosts.actions import Run, Upload, WriteFile

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
        """The boot.d entry for hosts without systemd: a boot task runs once, a daemon starts
        under the supervisor."""
        if self.oneshot:
            return f"#!/bin/sh\nexec {shlex.join(self.argv)}\n".encode()
        return (
            "#!/bin/sh\n"
            f"# {self.description} (managed by buildfleet)\n"
            f"exec {SUPERVISE} {shlex.join([self.name, *self.argv])}\n"
        ).encode()

    def definition_path(self, init: str) -> str:
        return f"{UNIT_DIR}/{self.name}.service" if init == "systemd" else f"{BOOT_DIR}/50-{self.name}"


def differing(wanted: Sequence[Upload | WriteFile], digests: Mapping[str, str | None]) -> list[Upload | WriteFile]:
    """The uploads/files whose content on the host is not already the wanted one."""
    return [w for w in wanted if digests.get(w.dest) != w.sha256]


def wait_for(check: str, what: str, seconds: int = 60) -> str:
    """Shell that polls ``check`` every half second until it succeeds, for ``seconds`` at most."""
    return (
        f"i=0; until {check} >/dev/null 2>&1; do i=$((i+1)); "
        f"[ $i -ge {seconds * 2} ] && {{ echo '{what} did not come up' >&2; exit 1; }}; sleep 0.5; done"
    )


def started(script: str, service: Service, check: str, why: str) -> Run:
    """``script`` (which starts ``service``), then a wait until ``check`` passes: the step's
    second look sees the daemon running, never the one before it."""
    return Run(("sh", "-c", f"{script} && {wait_for(check, service.name)}"), why)


def service_paths(service: Service) -> tuple[str, ...]:
    """Every file either init system may write for ``service`` (the supervisor's among them)."""
    return (SUPERVISE, service.definition_path("none"), service.definition_path("systemd"))


@dataclass(frozen=True)
class Systemd:
    """Services as units systemd starts at boot and restarts on failure."""

    name: ClassVar[str] = "systemd"
    runs_package_daemons: ClassVar[bool] = True  # a package's own unit starts its daemon (docker.io's)

    def files(self, service: Service, digests: Mapping[str, str | None]) -> list[Upload | WriteFile]:
        unit = WriteFile(service.definition_path(self.name), service.unit(), "0644", f"install {service.name}'s unit")
        return differing([unit], digests)

    def start(self, service: Service, restart: bool, check: str, why: str) -> Run:
        """(Re)start, then wait until ``check`` passes: the step's second look sees the daemon running now."""
        verb = "restart" if restart else "start"
        script = f"systemctl daemon-reload && systemctl enable {service.name} && systemctl {verb} {service.name}"
        return started(script, service, check, why)

    def enable(self, service: Service) -> list[Run]:
        """A boot task's unit enabled, so it runs at the next boot (a daemon's start enables it)."""
        script = f"systemctl daemon-reload && systemctl enable {service.name}.service"
        return [Run(("sh", "-c", script), f"enable {service.name} at boot")]

    def replace(self, service: Service) -> list[Run]:
        """What a restart with a changed command line needs first: nothing, systemd reads the unit again."""
        return []

    def running(self, service: Service) -> str:
        return f"systemctl is-active --quiet {service.name}"

    def remove(self, service: Service, files: Sequence[str]) -> str:
        return f"systemctl disable --now {service.name}; rm -f {' '.join(files)}; systemctl daemon-reload"


@dataclass(frozen=True)
class Supervisor:
    """Services under buildfleet-supervise, started by the host's boot.d scripts."""

    name: ClassVar[str] = "none"
    runs_package_daemons: ClassVar[bool] = False  # nothing would: buildfleet supervises them itself

    def files(self, service: Service, digests: Mapping[str, str | None]) -> list[Upload | WriteFile]:
        entry = service.definition_path(self.name)
        if service.oneshot:
            return differing([WriteFile(entry, service.boot_script(), "0755", f"run {service.name} at boot")], digests)
        wanted = [
            WriteFile(SUPERVISE, SUPERVISE_SCRIPT, "0755", "install the buildfleet supervisor"),
            WriteFile(entry, service.boot_script(), "0755", f"start {service.name} at boot"),
        ]
        return differing(wanted, digests)

    def start(self, service: Service, restart: bool, check: str, why: str) -> Run:
        script = service.definition_path(self.name) + (f" && {SUPERVISE} restart {service.name}" if restart else "")
        return started(script, service, check, why)

    def enable(self, service: Service) -> list[Run]:
        return []  # the boot.d entry is what runs it at boot

    def replace(self, service: Service) -> list[Run]:
        """The supervisor's loop restarts the command line it was given: stop it, so the start runs the new one."""
        return [Run((SUPERVISE, "stop", service.name), f"stop the old {service.name}")]

    def running(self, service: Service) -> str:
        return f'kill -0 "$(cat /run/buildfleet/{service.name}.pid)"'

    def remove(self, service: Service, files: Sequence[str]) -> str:
        return f"{SUPERVISE} stop {service.name}; rm -f {' '.join(files)}"  # the supervisor stays: others use it


InitSystem = Systemd | Supervisor


def init_system(name: str) -> InitSystem:
    """The host's init system, from the InitSystem fact ("systemd", else none)."""
    return Systemd() if name == Systemd.name else Supervisor()
