"""Wait for new machines: SSH answers some time after boot, and cloud-init may still be
installing packages then (apt holding the dpkg lock is normal, not a failure).

Refused connections, banner timeouts and not-yet-authorised keys are retried until the
deadline; a host key that differs from the pinned one is never retried.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from invoke.exceptions import CommandTimedOut

from provisioning.certs import TLSFiles
from provisioning.errors import BuildfleetError
from provisioning.inventory import InventoryHost, Pool
from provisioning.remote.fanout import fan_out
from provisioning.remote.ssh import ConnectionFailed, HostKeyRejected, Transport

# Where cloud-init exists, block until it has finished and report how: `cloud-init status`
# exits 0 when done, 2 when done "degraded" (recoverable errors: the host is usable, the user
# should know), 1 on an error (cloud-init 23.4+; docs.cloud-init.io "cloud-init status").
CLOUD_INIT_DONE = (
    "sh",
    "-c",
    "command -v cloud-init >/dev/null || { echo cloud-init=absent; exit 0; }; "
    "cloud-init status --wait >/dev/null 2>&1; rc=$?; echo cloud-init=$rc; "
    "[ $rc -eq 0 ] || cloud-init status --long 2>&1 | tail -n 8",
)


@dataclass(frozen=True)
class Waited:
    seconds: float
    warning: str = ""  # cloud-init finished degraded: shown to the user, not a failure


def cloud_init_outcome(host: str, stdout: str) -> str:
    """The warning for a degraded cloud-init ("" when clean or absent); an error status raises. Pure."""
    lines = stdout.strip().splitlines()
    status = next((line.split("=", 1)[1] for line in lines if line.startswith("cloud-init=")), "")
    detail = " ".join(line.strip() for line in lines if not line.startswith("cloud-init=") and line.strip())
    if status in ("0", "absent"):
        return ""
    if status == "2":
        return f"{host}: cloud-init finished degraded (recoverable errors): {detail}"
    raise CloudInitFailed(
        f"{host}: cloud-init reported an error (status {status or 'unknown'}): {detail}; "
        "see /var/log/cloud-init.log on the host"
    )


class CloudInitFailed(BuildfleetError):
    """cloud-init finished with an error status: the host's bootstrap (its host key) may be missing."""


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
) -> Waited:
    """How long until ``host`` answered over SSH with cloud-init done; one clear error after ``timeout``."""
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
                return Waited(round(clock() - start, 1), cloud_init_outcome(host.name, result.stdout))
            last = f"exit {result.exit_code}: {result.stderr.strip()}"
        except (HostKeyRejected, CloudInitFailed):
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
) -> dict[str, Waited]:
    """All hosts at once, each one's outcome reported; a rejected host key ends the others'
    waits at their next attempt instead of after their whole timeout."""
    stop = threading.Event()

    def one(host: InventoryHost) -> Waited:
        try:
            return wait_for_host(host, connect, timeout, stop=stop)
        except HostKeyRejected:
            stop.set()
            raise

    return fan_out(hosts, one).raise_failures("waiting for SSH and cloud-init")


# An HTTP/2 client preface and an empty SETTINGS frame: buildkitd (gRPC) answers with its own
# SETTINGS frame (type 4) once it serves; a refused client certificate ends in a TLS alert.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


@dataclass(frozen=True)
class BuildkitdEndpoint:
    """A buildkitd (or a pool's balancer in front of several) as a client dials it."""

    name: str  # the host's or pool's name, for messages
    address: str
    port: int

    @classmethod
    def of_host(cls, host: InventoryHost) -> BuildkitdEndpoint:
        return cls(host.name, host.address, host.buildkitd_port)

    @classmethod
    def of_pool(cls, pool: Pool) -> BuildkitdEndpoint:
        return cls(pool.name, pool.address, pool.port)


def buildkitd_answers(endpoint: BuildkitdEndpoint, tls: TLSFiles, timeout: float = 5.0) -> str:
    """ "" when the buildkitd behind ``endpoint`` serves gRPC to the fleet's client certificate, else why not."""
    context = ssl.create_default_context(cafile=tls.ca)
    context.load_cert_chain(tls.cert, tls.key)
    context.check_hostname = False  # the CA is the fleet's own: it alone signs the server certificates
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((endpoint.address, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(raw) as wrapped,
        ):
            wrapped.sendall(H2_PREFACE)
            frame = wrapped.recv(9)
    except (OSError, ssl.SSLError) as error:
        return f"{type(error).__name__}: {error}"
    return "" if len(frame) >= 4 and frame[3] == 4 else f"no HTTP/2 SETTINGS frame from it (got {frame!r})"


def wait_for_buildkitd(endpoints: Sequence[BuildkitdEndpoint], tls: TLSFiles, timeout: float) -> dict[str, float]:
    """Seconds until each buildkitd answered over mTLS; one error naming the silent ones."""

    def one(endpoint: BuildkitdEndpoint) -> float:
        start = time.monotonic()
        while True:
            why = buildkitd_answers(endpoint, tls)
            if not why:
                return round(time.monotonic() - start, 1)
            if time.monotonic() - start > timeout:
                raise BuildfleetError(
                    f"{endpoint.name}: buildkitd at {endpoint.address}:{endpoint.port} did not answer "
                    f"within {timeout:.0f} s; last: {why}"
                )
            time.sleep(0.5)

    return fan_out(endpoints, one).raise_failures("waiting for buildkitd")
