"""Faults a real host shows, and what buildfleet does about them (bounded: each stops by itself)."""

import time

import pytest

from provisioning.hosts.operations import apt_install
from provisioning.remote.ssh import connect

pytestmark = pytest.mark.integration

# Another apt holding the lists lock, as cloud-init's does on a new VM: a POSIX (fcntl) lock,
# the kind apt takes, held for 8 seconds, then released when the holder exits.
HOLD_LISTS_LOCK = (
    "import fcntl, time\n"
    "lock = open('/var/lib/apt/lists/lock', 'w')\n"
    "fcntl.lockf(lock, fcntl.LOCK_EX)\n"
    "open('/tmp/lists-lock-held', 'w').close()\n"
    "time.sleep(8)\n"
)


def test_apt_waits_for_the_lists_lock_another_apt_holds_then_goes_on(fleet):
    fleet.exec("amd64-0", "rm", "-f", "/tmp/lists-lock-held")
    fleet.target.docker.run(["exec", "--detach", fleet.target.container("amd64-0"), "python3", "-c", HOLD_LISTS_LOCK])
    deadline = time.monotonic() + 10
    while "held" not in fleet.exec("amd64-0", "sh", "-c", "ls /tmp/lists-lock-held >/dev/null 2>&1 && echo held"):
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.2)
    transport = connect(fleet.inventory.host("amd64-0"), fleet.state)
    try:
        start = time.monotonic()
        result = transport.run(apt_install("ca-certificates"), sudo=True, timeout=300)  # installed: only update runs
        waited = time.monotonic() - start
    finally:
        transport.close()
    assert result.ok, result.stderr
    assert waited > 4  # it waited for the holder instead of failing at once ("Could not get lock")
