"""One changing command per fleet at a time, across processes (the real buildfleet command)."""

import os
import subprocess
import sys

import pytest
from snapshot import snapshot

from provisioning.state import FleetState

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from provisioning.state import FleetState\n"
    "with FleetState(Path(sys.argv[1])).locked('up'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(30)\n"
)


@pytest.mark.process
def test_a_second_changing_command_is_refused_while_one_runs_and_the_state_is_left_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDFLEET_RUN_DIR", str(tmp_path / "run"))
    env = {**os.environ, "BUILDFLEET_STATE_DIR": str(tmp_path / "state")}
    state = FleetState(tmp_path / "state" / "busy")
    state.ensure_ssh_key()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(state.root)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(tmp_path / "state")
        for command in (["up", "--project-dir", str(tmp_path)], ["configure"], ["bench"], ["down"]):
            refused = subprocess.run(
                ["buildfleet", *command, "--fleet", "busy"], env=env, capture_output=True, text=True, timeout=60
            )
            assert refused.returncode == 2, refused.stderr
            assert f"fleet 'busy' is busy: buildfleet up (pid {holder.pid}) is changing it" in refused.stderr
            assert snapshot(tmp_path / "state") == before
        status = subprocess.run(["buildfleet", "status", "--fleet", "busy"], env=env, capture_output=True, text=True)
        assert status.returncode == 0, status.stderr  # reading is never locked out
        show = subprocess.run(
            ["buildfleet", "builder", "show", "--fleet", "busy"], env=env, capture_output=True, text=True
        )
        assert "is busy" not in show.stderr  # nor is showing the builder (it fails here for want of hosts)
    finally:
        holder.kill()
        holder.wait()
    with state.locked("configure"):  # free again once the holder is gone (never blocks: it would raise)
        pass


def test_a_fleet_taken_down_leaves_no_lock_file_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDFLEET_RUN_DIR", str(tmp_path / "run"))
    canary = tmp_path / "run" / "locks" / "other-fleet.lock"
    canary.parent.mkdir(parents=True)
    canary.write_text("another fleet's lock")
    state = FleetState(tmp_path / "state" / "gone")
    state.ensure_ssh_key()
    with state.locked("down"):
        assert state.lock_path.exists()
        state.remove()
    assert not state.lock_path.exists() and canary.read_text() == "another fleet's lock"
    kept = FleetState(tmp_path / "state" / "kept")
    kept.ensure_ssh_key()
    with kept.locked("configure"):
        pass
    assert kept.lock_path.exists()  # a fleet that is still there keeps its lock file
