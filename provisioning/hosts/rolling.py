"""Changes that never cancel a build: a step that would interrupt buildkitd (a restart) runs
on one host at a time, after that host has drained.

Draining: a pool member is first taken out of its balancer, so new builds go to the other
members; then every host waits until buildkitd runs no build (its history API lists the
builds in flight as STARTED records) and, in a pool, until the balancer holds no session to
it. Only then are the step's files written and buildkitd restarted; the member is put back
once the balancer's own checks pass again. A host still busy after ``drain_timeout`` is not
touched at all: its step fails naming the builds, and a later configure finds the same
change still to do (nothing half-written, nothing cancelled).

buildkitd itself would wait for running builds on SIGTERM (grpc GracefulStop in
cmd/buildkitd/main.go), but it refuses every new connection meanwhile, and both init
systems kill it after a time of their own; draining first keeps both from mattering.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from provisioning.errors import BuildfleetError
from provisioning.remote import facts as f
from provisioning.remote.facts import gather
from provisioning.remote.ssh import Transport
from provisioning.targets.base import PoolMembers

QUIET_READS = 2  # a host is idle after this many readings in a row with nothing in flight
BACK_IN_SECONDS = 60.0  # a restarted member's balancer checks pass within seconds (HAProxy: 2 passes, 2 s apart)


@dataclass(frozen=True)
class Drained:
    """What a host's drain took: shown in configure's report beside the step it let through."""

    host: str
    seconds: float
    builds: int  # builds in flight when the drain began
    pool: str = ""  # the pool whose balancer it was taken out of ("" when none was steered)

    def describe(self) -> str:
        waited = f"waited {self.seconds:.1f} s for {self.builds} build(s)" if self.builds else "no build in flight"
        return f"drained ({'out of ' + self.pool + ', ' if self.pool else ''}{waited})"


@dataclass
class Rolling:
    """One disruptive step at a time across the fleet (hosts are configured in parallel
    otherwise); each host drained first."""

    drain_timeout: float  # seconds a host may take to finish its builds before its restart is given up
    members: PoolMembers | None = None  # None: the target cannot steer its pools' balancers
    poll: float = 1.0
    waiting: Callable[[str, str], None] = lambda host, what: None  # (host, what it waits for): progress
    _one_at_a_time: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def disrupting(self, transport: Transport) -> Iterator[Drained]:
        host = transport.host
        steer = self.members if host.pool else None
        self.waiting(host.name, "waiting for its turn to restart buildkitd")
        with self._one_at_a_time:
            if steer is not None:
                steer.take_out(host.pool, host.name)
            try:
                yield self._drain(transport, steer)
            finally:
                if steer is not None:
                    steer.put_back(host.pool, host.name, BACK_IN_SECONDS)

    def _drain(self, transport: Transport, steer: PoolMembers | None) -> Drained:
        host = transport.host
        start = time.monotonic()
        first: int | None = None
        quiet = 0
        while True:
            running = in_flight(transport)
            sessions = steer.sessions(host.pool, host.name) if steer is not None else 0
            if first is None:
                first = len(running)
            quiet = quiet + 1 if not running and not sessions else 0
            self.waiting(host.name, f"draining: {len(running)} build(s) in flight" if running else "draining")
            if quiet >= QUIET_READS:
                steered = host.pool if steer is not None else ""
                return Drained(host.name, round(time.monotonic() - start, 1), first, steered)
            waited = time.monotonic() - start
            if not quiet and waited >= self.drain_timeout:
                what = f"{len(running)} build(s) ({', '.join(running[:3])})" if running else f"{sessions} session(s)"
                raise BuildfleetError(
                    f"{host.name}: {what} still running after {waited:.0f} s of draining; buildkitd was not "
                    "restarted and nothing was changed: run configure again when they end, or give "
                    "--drain-timeout more seconds"
                )
            time.sleep(self.poll)


def in_flight(transport: Transport) -> tuple[str, ...]:
    """The builds buildkitd on the host runs now; none when it does not answer (nothing to wait for)."""
    return gather(transport, {"builds": f.BuildsInFlight()})["builds"] or ()
