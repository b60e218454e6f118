"""Restarts that never cancel a build, on a lone node: configure waits for the builds buildkitd
runs before it restarts it, and leaves a host alone that is still busy when --drain-timeout ends."""

import json
import re
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import CACHE, buildctl, mtls_flags

pytestmark = pytest.mark.integration

TOML = "/etc/buildkit/buildkitd.toml"
DRIFT = "# changed by hand: configure writes it back and restarts buildkitd\n"


def slow_build(fleet, tmp_path, seconds: int) -> subprocess.CompletedProcess:
    """A build on amd64-0 whose one step sleeps ``seconds``, straight to its buildkitd over mTLS."""
    context = tmp_path / f"context-{uuid.uuid4().hex[:6]}"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY --from=busybox busybox-amd64 /bin/busybox\nARG BUILD_ID\n"
        f'RUN ["/bin/busybox", "sleep", "{seconds}"]\n'
    )
    busybox = next((CACHE / "busybox").glob("*/busybox-amd64")).parent
    command = (
        *("build", "--frontend", "dockerfile.v0", "--local", f"context={context}", "--local", f"dockerfile={context}"),
        *("--local", f"busybox={busybox}", "--opt", "context:busybox=local:busybox"),
        *("--opt", f"build-arg:BUILD_ID={uuid.uuid4().hex}", "--opt", "platform=linux/amd64"),
    )
    return buildctl(fleet.inventory.host("amd64-0"), *mtls_flags(fleet.state.root / "tls"), command=command)


def in_flight(fleet) -> list[str]:
    listed = fleet.exec(
        "amd64-0",
        "buildctl",
        "--addr",
        "unix:///run/buildkit/buildkitd.sock",
        "debug",
        "histories",
        "--format",
        "{{.Type}} {{.Record.Ref}}",
    )
    return [line for line in listed.splitlines() if line.startswith("STARTED")]


def started(fleet, background, tmp_path, seconds: int):
    build = background.submit(slow_build, fleet, tmp_path, seconds)
    deadline = time.monotonic() + 60
    while not in_flight(fleet):
        assert time.monotonic() < deadline and not build.done(), build.result() if build.done() else "never started"
        time.sleep(0.2)
    return build


def buildkitd_step(configured: subprocess.CompletedProcess, host: str = "amd64-0") -> dict:
    (report,) = [h for h in json.loads(configured.stdout)["hosts"] if h["host"] == host]
    return next(s for s in report["steps"] if s["step"] == "buildkitd")


def drift(fleet) -> None:
    fleet.exec("amd64-0", "sh", "-c", f"printf '{DRIFT}' >> {TOML}")


def test_configure_restarts_a_busy_buildkitd_only_after_its_build_has_finished(fleet, run, tmp_path):
    drift(fleet)
    with ThreadPoolExecutor(1) as background:
        build = started(fleet, background, tmp_path, 12)
        configured = run("configure", "--json", "--drain-timeout", "120")
        finished = build.result()
    assert finished.returncode == 0, finished.stderr[-1500:]  # not CANCELED
    assert configured.returncode == 0, configured.stdout + configured.stderr
    step = buildkitd_step(configured)
    assert step["status"] == "changed" and re.match(r"drained \(waited [\d.]+ s for 1 build\(s\)\); ", step["detail"])
    assert "restart buildkitd" in step["detail"], step
    assert DRIFT not in fleet.exec("amd64-0", "cat", TOML)


def test_a_host_still_busy_when_the_drain_timeout_ends_is_left_as_it_was_and_a_later_configure_rolls_it(
    fleet, run, tmp_path
):
    drift(fleet)
    try:
        with ThreadPoolExecutor(1) as background:
            build = started(fleet, background, tmp_path, 15)
            configured = run("configure", "--json", "--drain-timeout", "2")
            assert DRIFT in fleet.exec("amd64-0", "cat", TOML)  # nothing written while the build runs
            finished = build.result()
        assert finished.returncode == 0, finished.stderr[-1500:]
        assert configured.returncode == 1
        step = buildkitd_step(configured)
        assert step["status"] == "failed" and step["detail"].startswith("amd64-0: 1 build(s) ("), step
        assert "still running after" in step["detail"] and "--drain-timeout" in step["detail"]
    finally:
        again = run("configure")
    assert again.returncode == 0, again.stdout + again.stderr
    assert DRIFT not in fleet.exec("amd64-0", "cat", TOML)
