"""Idle stop: each host powers itself off when nobody has used it for a while.

The host decides alone (no operator needs to be around): a small service looks every
20 seconds for established connections to buildkitd (every build holds one for its whole
life) and to sshd (someone configuring or looking). When there were none for
``idleStopMinutes``, it powers the host off: ``systemctl poweroff`` where systemd runs
(an EC2 instance, set to *stop* on shutdown, keeps its disks; a VM's QEMU exits), else it
ends PID 1, which stops a local host container. The clock is seconds since boot and the
mark lives in /run, so a host that was woken counts afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.hosts.actions import Decision, Run, WriteFile, no_change
from provisioning.hosts.operations import Step
from provisioning.hosts.services import Service, differing, init_system, service_paths
from provisioning.remote import facts as f

IDLE_SCRIPT = "/usr/local/lib/buildfleet/idle-stop"
IDLE_MARK = "/run/buildfleet/last-active"
TICK_SECONDS = 20

SCRIPT = f"""#!/bin/sh
# buildfleet idle stop (managed by buildfleet): idle-stop MINUTES PORT powers this host off
# once nothing was connected to buildkitd (PORT) or sshd for MINUTES.
set -u
minutes=$1; port=$2; mark={IDLE_MARK}
mkdir -p "${{mark%/*}}"
now=$(cut -d. -f1 /proc/uptime)
clients=$(ss -Htn state established "( sport = :$port or sport = :22 )" | wc -l)
if [ "$clients" -gt 0 ] || [ ! -s "$mark" ]; then echo "$now" > "$mark"; exit 0; fi
idle=$((now - $(cat "$mark")))
[ "$idle" -ge $((minutes * 60)) ] || exit 0
echo "buildfleet: idle for ${{idle}}s (limit $minutes min): powering off"
if [ "$(cat /proc/1/comm)" = systemd ]; then exec systemctl poweroff; fi
exec kill -TERM 1
""".encode()


def idle_service(minutes: int, port: int) -> Service:
    loop = f"while :; do {IDLE_SCRIPT} {minutes} {port}; sleep {TICK_SECONDS}; done"
    return Service("buildfleet-idle", ("sh", "-c", loop), "Power the host off when idle")


@dataclass(frozen=True)
class IdleDesired:
    minutes: int  # 0: never (and any watcher from before is removed)
    port: int  # buildkitd's port on the host


def idle_step(desired: IdleDesired) -> Step:
    service = idle_service(desired.minutes, desired.port)
    facts: dict[str, f.Fact[Any]] = {
        "init": f.InitSystem(),
        "files": f.FileDigests((IDLE_SCRIPT, *service_paths(service))),
        "running": f.ServiceRunning(service.name),
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        init, digests = init_system(got["init"]), got["files"]
        ours = (IDLE_SCRIPT, service.definition_path("none"), service.definition_path("systemd"))
        if desired.minutes == 0:
            if not got["running"] and not any(digests[p] for p in ours):
                return no_change("idle stop is off")
            return Decision((Run(("sh", "-c", init.remove(service, ours)), "turn idle stop off"),))
        wanted = [WriteFile(IDLE_SCRIPT, SCRIPT, "0755", "install the idle watcher")]
        actions: list = [*differing(wanted, digests), *init.files(service, digests)]
        if actions or not got["running"]:
            restart = bool(actions) and got["running"]
            replaced = init.replace(service) if restart else []  # the supervisor's old loop stops first
            actions.extend(replaced)
            actions.append(init.start(service, restart and not replaced, init.running(service), "(re)start it"))
        if not actions:
            return no_change(f"powers off after {desired.minutes} min without a buildkitd client or SSH session")
        return Decision(tuple(actions))

    return Step("idle-stop", facts, decide)
