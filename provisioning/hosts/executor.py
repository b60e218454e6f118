"""Runs steps on hosts: all hosts in parallel, each host's steps in order.

It decides nothing: facts go to each step's ``decide``, its actions are applied, then
the facts are read again and the step must ask for nothing more. Every outcome is data
(per host, per step: changed / unchanged / failed / skipped, with the command, exit code
and stderr tail of a failure); one host failing never hides another's result.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from provisioning.checks import Check
from provisioning.command import CommandResult
from provisioning.errors import BuildfleetError, tail
from provisioning.hosts.actions import Action, Decision, Run, Upload, WriteFile
from provisioning.hosts.operations import Step
from provisioning.hosts.rolling import Rolling
from provisioning.inventory import InventoryHost
from provisioning.remote.facts import gather
from provisioning.remote.fanout import describe, fan_out
from provisioning.remote.ssh import ConnectionFailed, Transport

CHANGED, UNCHANGED, FAILED, SKIPPED = "changed", "unchanged", "failed", "skipped"
DRIFT = "drift"  # check only: the step would change something
NO_WAIT = 0.0  # drain timeout when the caller gave none: a host with builds in flight is not restarted at all

# $1 sha256, $2 staged file, $3 destination, $4 mode: check, move into place, and remove the
# private staging directory whatever happened.
_INSTALL = (
    'trap \'rm -rf "$(dirname "$2")"\' EXIT; '
    'echo "$1  $2" | sha256sum -c --quiet - || { echo "checksum mismatch for $3" >&2; exit 1; }; '
    'mkdir -p "$(dirname "$3")" && install -m "$4" "$2" "$3"'
)
# A directory only the SSH user can enter (mktemp -d makes it 0700): a key staged there is
# never readable by another user of the host, whatever mode SFTP gives the file.
_STAGE_DIR = ("mktemp", "-d", "/tmp/buildfleet-stage.XXXXXXXX")


@dataclass(frozen=True)
class StepResult:
    host: str
    step: str
    status: str
    detail: str
    seconds: float
    command: str = ""
    exit_code: int | None = None
    stderr_tail: str = ""
    warning: str = ""  # the step is as wanted, but the host has something to act on (see Decision)


@dataclass(frozen=True)
class HostReport:
    host: str
    steps: tuple[StepResult, ...]

    @property
    def ok(self) -> bool:
        return all(s.status in (CHANGED, UNCHANGED) for s in self.steps)


@dataclass(frozen=True)
class FleetReport:
    hosts: tuple[HostReport, ...]

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    @property
    def changes(self) -> int:
        return sum(s.status == CHANGED for h in self.hosts for s in h.steps)

    def failures(self) -> list[StepResult]:
        return [s for h in self.hosts for s in h.steps if s.status == FAILED]


class ActionFailed(BuildfleetError):
    def __init__(self, action: Action, result: CommandResult):
        self.result = result
        super().__init__(f"{getattr(action, 'why', '') or 'command'} failed (exit {result.exit_code})")


def apply(transport: Transport, action: Action) -> None:
    result = transport.run(action.argv, sudo=True) if isinstance(action, Run) else _install(transport, action)
    if not result.ok:
        raise ActionFailed(action, result)


def _install(transport: Transport, action: Upload | WriteFile) -> CommandResult:
    """Stage in a private directory, then check and move into place as root; the staging
    directory goes whether that worked or not (unless the connection itself is gone)."""
    made = transport.run(_STAGE_DIR)
    if not made.ok:
        raise ActionFailed(action, made)
    directory = made.stdout.strip()
    if not re.fullmatch(r"/tmp/buildfleet-stage\.[A-Za-z0-9]{8}", directory):
        raise BuildfleetError(f"{transport.host.name}: mktemp gave {directory[:80]!r}, not a staging directory")
    staged = f"{directory}/file"
    try:
        if isinstance(action, Upload):
            transport.put(action.source, staged)
        else:
            transport.put_bytes(action.content, staged)
    except Exception:
        # when nothing reaches the host any more, the directory stays (0700; /tmp is cleared at boot)
        with contextlib.suppress(ConnectionFailed):
            transport.run(("rm", "-rf", "--", directory))
        raise
    return transport.run(("sh", "-c", _INSTALL, "install", action.sha256, staged, action.dest, action.mode), sudo=True)


def run_step(transport: Transport, step: Step, check_only: bool = False, rolling: Rolling | None = None) -> StepResult:
    """Decide, apply, decide again; ``check_only`` stops after the first decision (doctor).
    A decision that would interrupt the host's builds waits for ``rolling`` to let it
    through (the host drained), and is made again then: the wait may have been long."""
    start = time.monotonic()
    host = transport.host.name

    def result(status: str, detail: str, **extra: Any) -> StepResult:
        return StepResult(host, step.name, status, detail, round(time.monotonic() - start, 2), **extra)

    try:
        decision = step.decide(gather(transport, step.facts))
        if decision.error:
            return result(FAILED, decision.error)
        if not decision.changes:
            return result(UNCHANGED, f"no change: {decision.reason}", warning=decision.warning)
        if check_only:
            return result(DRIFT, _whys(decision.actions))
        if not any(isinstance(a, Run) and a.disrupts for a in decision.actions):
            return result(*_converge(transport, step, decision))
        with (rolling or Rolling(NO_WAIT)).disrupting(transport) as drained:
            status, detail = _converge(transport, step, step.decide(gather(transport, step.facts)))
        return result(status, f"{drained.describe()}; {detail}")
    except ActionFailed as error:
        return result(
            FAILED,
            str(error),
            command=error.result.command,
            exit_code=error.result.exit_code,
            stderr_tail=tail(error.result.stderr or error.result.stdout),
        )
    except BuildfleetError as error:  # the transport's failures among them (a channel dying mid-step)
        return result(FAILED, str(error))


def _whys(actions: Sequence[Action]) -> str:
    return "; ".join(getattr(a, "why", "") for a in actions)


def _converge(transport: Transport, step: Step, decision: Decision) -> tuple[str, str]:
    """Apply the decision's actions, then look again: the step must ask for nothing more."""
    if decision.error:
        return FAILED, decision.error
    for action in decision.actions:
        apply(transport, action)
    after = step.decide(gather(transport, step.facts))
    if after.error or after.changes:
        return FAILED, f"did not converge: still needs {after.error or _whys(after.actions)}"
    return (CHANGED, _whys(decision.actions)) if decision.changes else (UNCHANGED, f"no change: {decision.reason}")


# host, step now running ("" when finished), steps succeeded, total: finished with fewer
# succeeded than total means the host failed
Progress = Callable[[str, str, int, int], None]


def run_host(
    transport: Transport,
    steps: Sequence[Step],
    check_only: bool = False,
    progress: Progress = lambda host, step, done, total: None,
    rolling: Rolling | None = None,
) -> HostReport:
    """Steps in order; after a failure the rest are skipped (they build on it). A check
    changes nothing, so every step is checked whatever the one before found."""
    results: list[StepResult] = []

    def succeeded() -> int:  # a host whose step failed never shows as done n/n
        return sum(r.status in (CHANGED, UNCHANGED, DRIFT) for r in results)

    try:
        for step in steps:
            progress(transport.host.name, step.name, succeeded(), len(steps))
            if not check_only and results and results[-1].status in (FAILED, SKIPPED):
                results.append(
                    StepResult(
                        transport.host.name, step.name, SKIPPED, f"skipped: {results[-1].step} did not succeed", 0.0
                    )
                )
                continue
            results.append(run_step(transport, step, check_only, rolling))
        progress(transport.host.name, "", succeeded(), len(steps))
    finally:
        transport.close()
    return HostReport(transport.host.name, tuple(results))


def run_fleet(
    hosts: Sequence[InventoryHost],
    connect: Callable[[InventoryHost], Transport],
    steps_for: Callable[[InventoryHost], Sequence[Step]],
    check_only: bool = False,
    progress: Progress = lambda host, step, done, total: None,
    rolling: Rolling | None = None,
) -> FleetReport:
    """Every host at once, but their disruptive steps one after another (one ``rolling`` for
    the fleet); an exception on one host (no connection, no known_hosts) becomes that host's
    failed result."""
    rolling = rolling or Rolling(NO_WAIT)
    outcomes = fan_out(hosts, lambda host: run_host(connect(host), steps_for(host), check_only, progress, rolling))
    return FleetReport(
        tuple(
            outcome
            if isinstance(outcome, HostReport)
            else HostReport(name, (StepResult(name, "connect", FAILED, describe(outcome), 0.0),))
            for name, outcome in outcomes.items()
        )
    )


def report_checks(report: FleetReport) -> list[Check]:
    """A check-only run as doctor's checks: each step as wanted or not, with the fix, and each
    step's advisory (as configured, but something configure cannot change) as a warning."""
    checks = []
    for host in report.hosts:
        for step in host.steps:
            fix = {UNCHANGED: "", DRIFT: f"buildfleet configure (it would: {step.detail})"}.get(
                step.status, "see the detail; then buildfleet configure"
            )
            checks.append(Check(step.host, step.step, step.status == UNCHANGED, step.detail, fix))
            if step.warning:
                fix = "the detail says how; buildfleet configure does not change it"
                checks.append(Check(step.host, "advisory", False, step.warning, fix, warning=True))
    return checks
