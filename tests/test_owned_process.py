"""A process a target owns is stopped for good: signalled, waited for, and never left behind."""

import os
import sys
import time

import pytest

from provisioning.targets.process import OwnedProcess

pytestmark = pytest.mark.process  # every test here starts another program

READY = "print('ready', flush=True); time.sleep(60)"
DEAF_TO_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + READY
STOPS_ON_SIGTERM = "import time; " + READY


def started(tmp_path, program: str) -> tuple[OwnedProcess, int]:
    process = OwnedProcess(tmp_path / "owned", marker="buildfleet-test-owned")
    child = process.start([sys.executable, "-c", program, "buildfleet-test-owned"])
    deadline = time.monotonic() + 10
    while "ready" not in process.log_tail() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.running()
    return process, child.pid


@pytest.mark.parametrize("program", [STOPS_ON_SIGTERM, DEAF_TO_SIGTERM], ids=["stops-on-sigterm", "deaf-to-sigterm"])
def test_a_stopped_process_is_gone_and_reaped_when_stop_returns(tmp_path, program):
    process, pid = started(tmp_path, program)
    assert process.stop(timeout=0.5) is True
    assert not os.path.exists(f"/proc/{pid}"), "stop returned while its process was still there (or a zombie)"
    assert not process.pidfile.exists()


def test_stopping_what_is_not_running_says_so(tmp_path):
    process, _ = started(tmp_path, STOPS_ON_SIGTERM)
    process.stop(timeout=0.5)
    assert process.stop(timeout=0.5) is False


def test_a_process_is_ours_the_moment_start_returns(tmp_path):
    """Popen returns before the kernel has filled in the new program's command line; a stop()
    right then must still find the process (a balancer handed over and stopped at once once
    left its new HAProxy running)."""
    for attempt in range(30):
        process = OwnedProcess(tmp_path / f"owned-{attempt}", marker="buildfleet-test-owned")
        child = process.start([sys.executable, "-c", "import time; time.sleep(30)", "buildfleet-test-owned"])
        try:
            assert process.pid() == child.pid, f"attempt {attempt}: the new process was not ours yet"
        finally:
            process.stop(timeout=0.5)
        assert child.poll() is not None
