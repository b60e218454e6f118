"""The local target's registry process: started, found again, and stopped only if it is ours."""

import os
import signal
import subprocess
import time

import pytest
from integration.conftest import CACHE

from provisioning.targets.local.registry import LocalRegistry, registry_binary

pytestmark = pytest.mark.process  # every test here starts another program


def test_a_pidfile_naming_another_process_is_not_our_registry_and_that_process_is_left_alone(tmp_path):
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        registry = LocalRegistry(tmp_path / "registry")
        registry.directory.mkdir()
        registry.process.pidfile.write_text(str(other.pid))  # as after a reboot: the number now names another process
        assert registry.running() is False
        registry.stop()
        time.sleep(0.2)
        assert other.poll() is None, "stop signalled a process that was not the registry"
        assert not registry.process.pidfile.exists()
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()


def test_the_registry_we_started_is_found_running_and_stopped(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    address = registry.ensure("127.0.0.1", registry_binary(CACHE))
    pid = int(registry.process.pidfile.read_text())
    try:
        assert registry.running() and registry.answers(address)
        assert registry.ensure("127.0.0.1", registry_binary(CACHE)) == address  # found, not started again
    finally:
        registry.stop()
    assert not registry.running() and not os.path.exists(f"/proc/{pid}/cmdline")
