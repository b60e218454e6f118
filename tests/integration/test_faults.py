"""Faults a real host shows, and what buildfleet does about them (bounded: each stops by itself)."""

import dataclasses
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from provisioning.hosts.actions import Upload, WriteFile
from provisioning.hosts.configure import configure
from provisioning.hosts.executor import _STAGE_DIR, CHANGED, FAILED, SKIPPED, UNCHANGED, ActionFailed, apply, run_step
from provisioning.hosts.operations import apt_install
from provisioning.hosts.operations.docker import DockerDesired, docker_step
from provisioning.inventory import Inventory
from provisioning.remote import facts as f
from provisioning.remote.ssh import connect

from .conftest import (
    amd64_build,
    amd64_only_builder,
    binfmt_not_restored,
    buildctl,
    leftovers,
    make_fleet,
    mtls_flags,
    qemu_entries,
)

pytestmark = pytest.mark.integration

# Another apt holding a lock, as cloud-init's does on a new VM: a POSIX (fcntl) lock, the kind
# apt and dpkg take, held for 8 seconds, then released when the holder exits.
HOLD_LOCK = (
    "import fcntl, sys, time\n"
    "lock = open(sys.argv[1], 'w')\n"
    "fcntl.lockf(lock, fcntl.LOCK_EX)\n"
    "open('/tmp/lock-held', 'w').close()\n"
    "time.sleep(8)\n"
    "lock.close()\n"
    "open('/tmp/lock-released', 'w').close()\n"
)


@pytest.mark.parametrize(
    "lock",
    ["/var/lib/apt/lists/lock", "/var/lib/dpkg/lock-frontend"],
    ids=["apt-lists-lock", "dpkg-frontend-lock"],
)
def test_apt_waits_for_a_lock_another_apt_holds_then_goes_on(fleet, lock):
    fleet.exec("amd64-0", "rm", "-f", "/tmp/lock-held", "/tmp/lock-released")
    container = fleet.target.container("amd64-0")
    fleet.target.docker.run(["exec", "--detach", container, "python3", "-c", HOLD_LOCK, lock])
    deadline = time.monotonic() + 10
    while "held" not in fleet.exec("amd64-0", "sh", "-c", "[ -f /tmp/lock-held ] && echo held || true"):
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.2)
    transport = connect(fleet.inventory.host("amd64-0"), fleet.state)
    try:
        start = time.monotonic()
        # installed already: apt-get update, then an install that still takes dpkg's frontend lock
        result = transport.run(apt_install("ca-certificates"), sudo=True, timeout=300)
        waited = time.monotonic() - start
    finally:
        transport.close()
    assert result.ok, result.stderr  # no "Could not get lock"
    released = fleet.exec("amd64-0", "sh", "-c", "[ -f /tmp/lock-released ] && echo released || true")
    assert waited > 4 and "released" in released  # it waited for the holder, which let go before apt ended


def _wait_until_running(fleet, host: str, pattern: str, seconds: float, still_going) -> None:
    """Until a process matching ``pattern`` runs on the host (or the run it belongs to ended)."""
    deadline = time.monotonic() + seconds
    pgrep = ["exec", fleet.target.container(host), "pgrep", "-f", pattern]
    while fleet.target.docker.run(pgrep, check=False).returncode:
        assert still_going(), f"the run ended before {pattern!r} ran on {host}"
        assert time.monotonic() < deadline, f"{pattern!r} did not start on {host} within {seconds}s"
        time.sleep(0.2)


def test_a_host_stopped_mid_install_is_named_the_others_finish_and_a_rerun_completes(tmp_path_factory, machine_ready):
    before, said = qemu_entries(), []
    live = make_fleet(tmp_path_factory, machine_ready, {}, say=said.append)
    victim, other = "emulation-0", "amd64-0"
    (notice,) = said  # up says, before any host exists, that it changes the machine's binfmt table
    assert "registers qemu-aarch64, qemu-arm, qemu-ppc64le, qemu-riscv64, qemu-s390x in this machine's kernel" in notice
    try:
        finished: dict[str, tuple[str, int, int]] = {}

        def progress(host: str, step: str, done: int, total: int) -> None:
            if not step:
                finished[host] = (step, done, total)

        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(configure, live.inventory, live.state, live.artifacts, progress=progress)
            # dpkg unpacking docker.io: the moment a stop leaves dpkg interrupted (apt refuses after)
            _wait_until_running(live, victim, "dpkg .*--unpack", 300, lambda: not run.done())
            live.target.docker.run(["kill", live.target.container(victim)])
            report = run.result(timeout=600)

        hosts = {h.host: h for h in report.hosts}
        assert hosts[other].ok, hosts[other]
        stopped = hosts[victim].steps
        assert [s.status for s in stopped] == [UNCHANGED, FAILED] + [SKIPPED] * 8  # the fleet check, then docker
        assert "the connection to the host was lost while running" in stopped[1].detail, stopped[1].detail
        assert "exit -1" not in stopped[1].detail
        assert finished[other][1] == finished[other][2] == 9  # done 9/9
        assert finished[victim][1:] == (1, 10)  # never "done 10/10"

        inventory = live.target.up(live.settings)  # the re-run: the stopped host starts again
        left = live.exec(victim, *f.DpkgInterrupted().argv)
        assert left.strip(), "the stop did not leave dpkg interrupted: this test proved nothing"
        again = configure(inventory, live.state, live.artifacts)
        assert again.ok, again.failures()
        docker = next(s for h in again.hosts if h.host == victim for s in h.steps if s.step == "docker")
        assert docker.status == CHANGED and "finish the dpkg run" in docker.detail, docker
        assert not live.exec(victim, *f.DpkgInterrupted().argv).strip()
    finally:
        removed = live.target.down()
    assert leftovers(live.target.fleet) == []
    assert any(line.startswith("binfmt qemu-aarch64 ") for line in removed), removed
    assert binfmt_not_restored(live.target, before) == []


# What dpkg leaves when it is stopped while unpacking a library that an unpacked program needs:
# the library "half-installed, reinstall required", the program unconfigured (as CI once saw
# when the stop landed in runc under docker.io).
CUT_OFF_MID_UNPACK = (
    "import re, sys\n"
    "status = open('/var/lib/dpkg/status').read()\n"
    "def mark(package, state):\n"
    "    global status\n"
    "    pattern = r'(Package: %s\\n(?:.+\\n)*?)Status: install ok installed' % re.escape(package)\n"
    "    status, count = re.subn(pattern, r'\\1Status: ' + state, status)\n"
    "    assert count == 1, package\n"
    "mark(sys.argv[1], 'install reinstreq half-installed')\n"
    "mark(sys.argv[2], 'install ok unpacked')\n"
    "open('/var/lib/dpkg/status', 'w').write(status)\n"
)


def test_a_package_cut_off_mid_unpack_is_reinstalled_and_what_needs_it_configured(fleet):
    host = "amd64-0"
    fleet.exec(host, *apt_install("jq"))  # jq needs libjq1: a small pair to cut off
    fleet.exec(host, "python3", "-c", CUT_OFF_MID_UNPACK, "libjq1", "jq")
    assert "libjq1" in fleet.exec(host, *f.DpkgInterrupted().argv)
    refused = fleet.target.docker.run(["exec", fleet.target.container(host), "dpkg", "--configure", "-a"], check=False)
    assert refused.returncode != 0  # dpkg alone cannot finish it
    transport = connect(fleet.inventory.host(host), fleet.state)
    try:
        result = run_step(transport, docker_step(DockerDesired(fleet.inventory.host(host).ssh_user)))
    finally:
        transport.close()
    assert result.status == CHANGED and "finish the dpkg run" in result.detail, result
    assert not fleet.exec(host, *f.DpkgInterrupted().argv).strip()
    query = ("dpkg-query", "-W", "-f=${db:Status-Abbrev}\n", "jq", "libjq1")
    assert fleet.exec(host, *query).split() == ["ii", "ii"]


def _staged(fleet, host: str) -> str:
    return fleet.exec(host, "sh", "-c", "ls -d /tmp/buildfleet-stage.* 2>/dev/null || true").strip()


def test_a_file_is_staged_in_a_private_directory_that_goes_whether_the_install_worked_or_not(fleet, tmp_path):
    transport = connect(fleet.inventory.host("amd64-0"), fleet.state)
    try:
        made = transport.run(_STAGE_DIR).stdout.strip()
        assert transport.run(("stat", "-c", "%a %U", made)).stdout.split() == ["700", "root"]
        transport.run(("rmdir", made))
        key = WriteFile("/etc/buildfleet-test/key.pem", b"secret\n", "0600", "a key")
        apply(transport, key)
        assert transport.run(("stat", "-c", "%a", key.dest)).stdout.strip() == "600"
        assert _staged(fleet, "amd64-0") == ""
        source = tmp_path / "other.pem"
        source.write_bytes(b"changed on the way")
        damaged = Upload(source, "/etc/buildfleet-test/other.pem", "0" * 64, "0600", "a key")  # sha256 won't match
        with pytest.raises(ActionFailed) as failed:
            apply(transport, damaged)
        assert "checksum mismatch for /etc/buildfleet-test/other.pem" in failed.value.result.stderr
        assert _staged(fleet, "amd64-0") == ""
    finally:
        transport.run(("rm", "-rf", "/etc/buildfleet-test"))
        transport.close()


def test_sudo_that_wants_a_password_is_one_clear_line_naming_host_and_user(fleet):
    user = "bfpw"
    fleet.exec(
        "amd64-0",
        "sh",
        "-c",
        f"id {user} >/dev/null 2>&1 || useradd -m {user}; install -d -o {user} -m 700 /home/{user}/.ssh; "
        f"install -o {user} -m 600 /root/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys; "
        f"echo '{user} ALL=(ALL) ALL' > /etc/sudoers.d/{user}",  # sudo, but with a password
    )
    host = dataclasses.replace(fleet.inventory.host("amd64-0"), ssh_user=user)
    try:
        report = configure(Inventory("static", (host,)), fleet.state, fleet.artifacts)
    finally:
        fleet.exec("amd64-0", "sh", "-c", f"rm -f /etc/sudoers.d/{user}; userdel -r {user} 2>/dev/null || true")
    (failure,) = report.failures()
    assert failure.detail == (
        f"amd64-0 ({user}@127.0.0.1:{host.ssh_port}): sudo asks {user} for a password; buildfleet needs "
        f"passwordless sudo there (a sudoers line '{user} ALL=(ALL) NOPASSWD:ALL', as cloud images have)"
    )


# One step that runs long enough to be cut off: busybox's sleep, on the node's own CPU.
SLOW_BUILD = (
    'FROM scratch\nCOPY --from=busybox busybox-amd64 /bin/busybox\nRUN ["/bin/busybox", "sleep", "{seconds}"]\n'
)


def _sleeping_build(builder: str, context, seconds: int) -> list[str]:
    (context / "Dockerfile").write_text(SLOW_BUILD.format(seconds=seconds))
    return amd64_build(builder, context)


def test_buildkitd_killed_mid_build_fails_that_build_comes_back_by_itself_and_the_next_build_passes(fleet, tmp_path):
    buildx, builder = amd64_only_builder(fleet, tmp_path)
    try:
        context = tmp_path / "context"
        context.mkdir()
        command = [buildx.docker, *_sleeping_build(builder.name, context, 60)]
        running = subprocess.Popen(command, env=buildx.full_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait_until_running(fleet, "amd64-0", "busybox sleep 60", 120, lambda: running.poll() is None)
            fleet.exec("amd64-0", "pkill", "-KILL", "-x", "buildkitd")
            output, _ = running.communicate(timeout=120)
        finally:
            running.kill()
        assert running.returncode != 0, output.decode(errors="replace")[-2000:]
        mtls = mtls_flags(fleet.state.root / "tls")
        deadline = time.monotonic() + 60  # systemd (Restart=always) or the supervisor restarts it
        while buildctl(fleet.inventory.host("amd64-0"), *mtls).returncode != 0:
            assert time.monotonic() < deadline, "buildkitd did not come back within 60 s"
            time.sleep(1)
        again = buildx.run(_sleeping_build(builder.name, context, 1), check=False)
        assert again.returncode == 0, again.stderr[-2000:]
    finally:
        builder.remove()
