"""Idle stop on the local target, for real: the host powers itself off after a minute unused,
``buildfleet wake`` brings it back, a build passes and what it cached before is still cached."""

import json
import subprocess
import time
import uuid

import pytest

from provisioning.remote.docker import Docker

from .conftest import amd64_build, buildfleet, cli_env, leftovers

pytestmark = pytest.mark.integration

# A step worth caching: it records when it ran, so a cached step shows the first run's time.
CACHED_STEP = (
    "FROM scratch\nCOPY --from=busybox busybox-amd64 /bin/busybox\n"
    'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox date +%s%N > /ran-at"]\n'
)


def run_step_cached(fleet: str, env: dict, context) -> bool:
    """Build the context on the fleet's builder; whether BuildKit took its RUN step from cache."""
    command = ["docker", *amd64_build(f"buildfleet-{fleet}", context)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    progress = result.stderr.splitlines()  # buildx writes its progress to stderr
    step = next(line.split()[0] for line in progress if line.startswith("#") and "RUN" in line and "ran-at" in line)
    return f"{step} CACHED" in progress


def test_an_idle_host_stops_by_itself_and_wake_brings_it_back_with_its_build_cache(tmp_path, machine_ready):
    fleet = f"idle{uuid.uuid4().hex[:6]}"
    env = cli_env(tmp_path)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(CACHED_STEP)
    container = f"buildfleet-{fleet}-amd64-0"
    args = ["--fleet", fleet, "--project-dir", str(tmp_path)]
    one_host = ["--set", "emulationCount=0", "--set", "platforms=linux/amd64", "--set", "idleStopMinutes=1"]
    try:
        up = buildfleet("up", *args, *one_host, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert not run_step_cached(fleet, env, context)
        counting = json.loads(buildfleet("status", "--fleet", fleet, "--json", env=env).stdout)
        assert isinstance(counting["idleSeconds"]["amd64-0"], int)  # the watcher's own count

        deadline = time.monotonic() + 240  # 1 minute idle, a 20 s tick, then the shutdown itself
        while Docker().inspect("container", container)["State"]["Running"]:
            assert time.monotonic() < deadline, "the idle host did not power itself off within 4 minutes"
            time.sleep(5)
        status = json.loads(buildfleet("status", "--fleet", fleet, "--json", env=env).stdout)
        assert [r["state"] for r in status["resources"]] == ["exited"] and status["idleSeconds"] == {"amd64-0": None}

        woken = buildfleet("wake", "--fleet", fleet, env=env)
        assert woken.returncode == 0, woken.stdout + woken.stderr
        assert "woke 1 host(s) in " in woken.stdout and "buildkitd answers on each" in woken.stdout
        print(woken.stdout.strip().splitlines()[-1])  # the wake time, for the note (pytest -s)

        assert run_step_cached(fleet, env, context)  # the build cache survived the power-off
    finally:
        down = buildfleet("down", "--fleet", fleet, env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(fleet) == []


def test_a_powered_off_host_is_a_state_to_doctor_and_woken_first_by_the_commands_that_use_it(tmp_path, machine_ready):
    """Stopped by hand here (the same state idle stop leaves, without the minute's wait): doctor
    says so and passes; configure and sample wake the fleet before they need its host."""
    fleet = f"off{uuid.uuid4().hex[:6]}"
    env = cli_env(tmp_path)
    container = f"buildfleet-{fleet}-amd64-0"
    args = ["--fleet", fleet, "--project-dir", str(tmp_path)]
    one_host = ["--set", "emulationCount=0", "--set", "platforms=linux/amd64"]
    docker = Docker()
    try:
        up = buildfleet("up", *args, *one_host, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        docker.run(["stop", container])

        doctor = buildfleet("doctor", "--fleet", fleet, "--json", env=env)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr  # a state, not a failure
        (power,) = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "power"]
        assert power["node"] == "amd64-0" and power["warning"] and power["detail"].startswith("stopped (idle)")
        assert not docker.inspect("container", container)["State"]["Running"]  # doctor changes nothing

        configure = buildfleet("configure", "--fleet", fleet, env=env)
        assert configure.returncode == 0, configure.stdout + configure.stderr
        assert "amd64-0: powered off (idle stop, or by hand); waking the fleet to configure it" in configure.stdout
        assert "nothing to change" in configure.stdout  # what it had survived the power-off

        docker.run(["stop", container])
        sample = buildfleet("sample", "--fleet", fleet, env=env)
        assert sample.returncode == 0, sample.stdout + sample.stderr
        assert "waking the fleet to build the sample" in sample.stdout
    finally:
        down = buildfleet("down", "--fleet", fleet, env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(fleet) == []
