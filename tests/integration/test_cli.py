"""The buildfleet command itself: up, status, configure again, down, as a user runs them."""

import json
import subprocess
import time
import uuid
from subprocess import PIPE

import pytest

from provisioning.state import FleetState

from .conftest import buildfleet, cli_env, leftovers

pytestmark = pytest.mark.integration


def test_up_status_configure_down(tmp_path, machine_ready):
    fleet = f"cli{uuid.uuid4().hex[:6]}"
    env = cli_env(tmp_path)
    one_host = [
        "--fleet",
        fleet,
        "--project-dir",
        str(tmp_path),
        "--set",
        "emulationCount=0",
        "--set",
        "platforms=linux/amd64,linux/386",
    ]
    try:
        first = subprocess.Popen(
            ["buildfleet", "up", *one_host, "--set", "buildkitdPort=1240"], env=env, stdout=PIPE, stderr=PIPE, text=True
        )
        lock = FleetState(tmp_path / fleet).lock_path
        deadline = time.monotonic() + 60
        while not (lock.exists() and "buildfleet up" in lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first up never took the fleet's lock"
            time.sleep(0.1)
        second = buildfleet("up", *one_host, env=env)  # while the first one runs
        assert second.returncode == 2 and f"fleet '{fleet}' is busy: buildfleet up (pid {first.pid})" in second.stderr
        out, err = first.communicate(timeout=600)
        up = subprocess.CompletedProcess(first.args, first.returncode, out, err)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "amd64-0" in up.stdout and "changed" in up.stdout

        assert f"builder 'buildfleet-{fleet}': create node buildfleet-{fleet}-amd64-0" in up.stdout

        sample = buildfleet("sample", "--fleet", fleet, "--json", env=env)
        assert sample.returncode == 0, sample.stdout + sample.stderr
        built = json.loads(sample.stdout)
        assert [(p["platform"], p["ranOn"], p["ok"]) for p in built["platforms"]] == [
            ("linux/amd64", "amd64-0", True),
            ("linux/386", "amd64-0", True),
        ]

        status = json.loads(buildfleet("status", "--fleet", fleet, "--json", env=env).stdout)
        assert status["builder"] == f"buildfleet-{fleet}" and status["registry"].count(":") == 1
        (host,) = status["inventory"]["hosts"]
        assert [p["platform"] for p in host["platforms"]] == ["linux/amd64", "linux/386"]
        assert status["resources"][0]["state"] == "running"

        extra = buildfleet(
            "builder", "create", "--fleet", fleet, "--builder", f"{fleet}-extra", "--no-bootstrap", env=env
        )
        assert extra.returncode == 0, extra.stderr

        # from another directory, with no configuration in reach: what up used, port 1240 included
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        again = buildfleet("configure", "--fleet", fleet, "--project-dir", str(elsewhere), "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["changes"] == 0
        doctor = buildfleet("doctor", "--fleet", fleet, "--project-dir", str(elsewhere), env=env)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    finally:
        down = buildfleet("down", "--fleet", fleet, env=env)
    assert down.returncode == 0 and f"container buildfleet-{fleet}-amd64-0" in down.stdout
    assert f"builder buildfleet-{fleet}" in down.stdout and "registry process" in down.stdout
    assert f"builder {fleet}-extra" in down.stdout  # every builder made for the fleet goes with it
    assert leftovers(fleet) == [] and not (tmp_path / fleet).exists()
    gone = buildfleet("down", "--fleet", fleet, env=env)
    assert gone.returncode == 0 and "nothing to remove" in gone.stdout
