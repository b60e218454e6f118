"""Wait for new machines: SSH answers some time after boot, and cloud-init may still be
installing packages then (apt holding the dpkg lock is normal, not a failure).

Refused connections, banner timeouts and not-yet-authorised keys are retried until the
deadline; a host key that differs from the pinned one is never retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from invoke.exceptions import CommandTimedOut

from provisioning.errors import BuildfleetError
from provisioning.inventory import InventoryHost
from provisioning.remote.fanout import fan_out
from provisioning.remote.ssh import ConnectionFailed, HostKeyRejected, Transport

# Where cloud-init exists, block until it has finished (its own exit status is not ours:
# a degraded cloud-init still leaves a usable host, which configure then checks).
CLOUD_INIT_DONE = (
    "sh",
    "-c",
    "if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null; fi; true",
)


class WaitStopped(BuildfleetError):
    """Another host failed for good (a wrong host key), so waiting for this one stopped."""


def wait_for_host(
    host: InventoryHost,
    connect: Callable[[InventoryHost], Transport],
    timeout: float,
    interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> float:
    """Seconds until ``host`` answered over SSH with cloud-init done; one clear error after ``timeout``."""
    start = clock()
    while True:
        if stop is not None and stop.is_set():
            raise WaitStopped("stopped waiting: another host's SSH key was rejected")
        try:
            transport = connect(host)
            try:
                result = transport.run(CLOUD_INIT_DONE, timeout=max(1.0, timeout - (clock() - start)))
            finally:
                transport.close()
            if result.ok:
                return round(clock() - start, 1)
            last = f"exit {result.exit_code}: {result.stderr.strip()}"
        except HostKeyRejected:
            raise
        except ConnectionFailed as error:
            last = str(error)
        except CommandTimedOut:
            last = "cloud-init was still running"
        if clock() - start + interval > timeout:
            raise BuildfleetError(f"{host.name} did not answer over SSH within {timeout:.0f} s; last: {last}")
        sleep(interval)


def wait_for_hosts(
    hosts: Sequence[InventoryHost], connect: Callable[[InventoryHost], Transport], timeout: float
) -> dict[str, float]:
    """All hosts at once, each one's outcome reported; a rejected host key ends the others'
    waits at their next attempt instead of after their whole timeout."""
    stop = threading.Event()

    def one(host: InventoryHost) -> float:
        try:
            return wait_for_host(host, connect, timeout, stop=stop)
        except HostKeyRejected:
            stop.set()
            raise

    return fan_out(hosts, one).raise_failures("waiting for SSH and cloud-init")
