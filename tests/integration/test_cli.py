"""The buildfleet command itself: up, status, configure again, down, as a user runs them."""

import json
import uuid

import pytest

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
        up = buildfleet("up", *one_host, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "amd64-0" in up.stdout and "changed" in up.stdout

        assert f"builder 'buildfleet-{fleet}': create node buildfleet-{fleet}-amd64-0" in up.stdout

        sample = buildfleet("sample", "--fleet", fleet, "--json", env=env)
        assert sample.returncode == 0, sample.stdout + sample.stderr
        built = json.loads(sample.stdout)
        assert [(p["platform"], p["ran_on"], p["ok"]) for p in built["platforms"]] == [
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

        again = buildfleet("configure", *one_host, "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["changes"] == 0
    finally:
        down = buildfleet("down", "--fleet", fleet, env=env)
    assert down.returncode == 0 and f"container buildfleet-{fleet}-amd64-0" in down.stdout
    assert f"builder buildfleet-{fleet}" in down.stdout and "registry process" in down.stdout
    assert f"builder {fleet}-extra" in down.stdout  # every builder made for the fleet goes with it
    assert leftovers(fleet) == [] and not (tmp_path / fleet).exists()
    gone = buildfleet("down", "--fleet", fleet, env=env)
    assert gone.returncode == 0 and "nothing to remove" in gone.stdout
