"""The vm target for real: an arm64 Debian VM under QEMU (TCG) booted from the cached image
with the user data EC2 hosts get, configured over SSH as a non-root user, joined to the
builder, and building arm64, arm/v7 and arm/v6 natively on its arm64 kernel."""

import json
import subprocess
import time
import uuid

import pytest

from provisioning.cloudinit import host_key_from_console
from provisioning.remote.ssh import connect
from provisioning.state import FleetState

from .conftest import CACHE, buildfleet, cli_env, leftovers

pytestmark = pytest.mark.integration

ARM = ["linux/arm64", "linux/arm/v7", "linux/arm/v6"]


@pytest.fixture(scope="module")
def vm_fleet(tmp_path_factory, machine_ready):
    if not list(CACHE.glob("vm/*/arm64/SHA256SUMS")):
        pytest.fail(f"no arm64 VM image in {CACHE}/vm: .ci/prepare makes it (vm-image.sh)")
    root = tmp_path_factory.mktemp("vm-state")
    fleet = f"vm{uuid.uuid4().hex[:6]}"
    env = cli_env(root)
    args = [
        "--fleet",
        fleet,
        "--project-dir",
        str(root),
        "--cache-dir",
        str(CACHE),
        "--artifacts",
        str(CACHE),
        "--set",
        "amd64Count=0",
        "--set",
        "emulationCount=0",
        "--set",
        f"platforms=[{', '.join(ARM)}]",
    ]
    up = buildfleet("up", "--target", "vm", *args, env=env, timeout=1800)
    try:
        yield fleet, env, up, FleetState(root / fleet), args
    finally:
        down = buildfleet("down", "--fleet", fleet, env=env, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "vm arm64-0" in down.stdout and not (root / fleet).exists()
        assert leftovers(fleet) == []
        assert not [
            line
            for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
            if str(root / fleet) in line
        ], "the VM's QEMU is still running"


def test_up_boots_the_vm_which_makes_its_own_host_key_pinned_from_its_console_and_configures_it(vm_fleet):
    fleet, env, up, state, _ = vm_fleet
    assert up.returncode == 0, up.stdout + up.stderr
    inventory = state.load_inventory()
    (host,) = inventory.hosts
    assert (host.name, host.arch, host.ssh_user, host.address) == ("arm64-0", "arm64", "admin", "127.0.0.1")
    assert host.full_system_emulation  # so bench never shows its times as a Graviton's
    # the VM made its host key itself: no private key in its seed, no key file here; the public half
    # it printed on its serial console is the one pinned before the first connection (and it serves)
    vm_dir = state.root / "vm" / "arm64-0"
    assert not (vm_dir / "ssh_host_ed25519_key").exists()
    shown = host_key_from_console((vm_dir / "console.log").read_text(errors="replace"))
    assert (
        shown
        and shown.startswith("ssh-ed25519 ")
        and f"[127.0.0.1]:{host.ssh_port} {shown}" in (state.known_hosts.read_text())
    )


def test_aarch32_is_detected_over_ssh_and_arm_v7_v6_are_placed_natively(vm_fleet):
    _, _, _, state, _ = vm_fleet
    (host,) = state.load_inventory().hosts
    assert [(p.platform, p.native) for p in host.platforms] == [(p, True) for p in ARM]


def test_the_vm_runs_an_arm64_kernel_and_no_binfmt_interpreter(vm_fleet):
    _, _, _, state, _ = vm_fleet
    (host,) = state.load_inventory().hosts
    transport = connect(host, state)
    try:
        kernel = transport.run(["cat", "/proc/version"]).stdout
        binfmt = transport.run(["sh", "-c", "ls /proc/sys/fs/binfmt_misc/ | grep qemu || true"]).stdout
    finally:
        transport.close()
    assert "arm64" in kernel or "aarch64" in kernel, kernel
    assert binfmt.strip() == ""


def test_the_sample_runs_each_arm_platform_natively_on_the_vm(vm_fleet):
    fleet, env, _, _, _ = vm_fleet
    sample = buildfleet("sample", "--fleet", fleet, "--artifacts", str(CACHE), "--json", env=env, timeout=1800)
    assert sample.returncode == 0, sample.stdout + sample.stderr
    built = json.loads(sample.stdout)["platforms"]
    assert [(p["platform"], p["ranOn"], p["native"], p["ok"]) for p in built] == [
        (p, "arm64-0", True, True) for p in ARM
    ]


def boot_id(host, state) -> str:
    transport = connect(host, state)
    try:
        return transport.run(["cat", "/proc/sys/kernel/random/boot_id"], timeout=30).stdout.strip()
    finally:
        transport.close()


def test_after_a_reboot_buildkitd_and_the_builder_node_come_back_and_a_build_passes(vm_fleet):
    fleet, env, _, state, _ = vm_fleet
    (host,) = state.load_inventory().hosts
    before = boot_id(host, state)
    transport = connect(host, state)
    try:
        transport.run(["systemd-run", "--on-active=2", "systemctl", "reboot"], sudo=True, timeout=30)
    finally:
        transport.close()
    deadline = time.monotonic() + 600
    while True:  # bounded: the VM must be back, with a new boot, within 10 minutes
        assert time.monotonic() < deadline, "the VM did not come back within 600 s"
        try:
            if boot_id(host, state) not in ("", before):
                break
        except Exception:  # refused or reset while it reboots
            pass
        time.sleep(5)
    doctor = buildfleet("doctor", "--fleet", fleet, "--artifacts", str(CACHE), "--json", env=env, timeout=600)
    checks = json.loads(doctor.stdout)["checks"]  # read-only: nothing restarted them but the VM's own boot
    assert doctor.returncode == 0 and all(c["ok"] or c.get("warning") for c in checks), [
        c for c in checks if not c["ok"]
    ]
    assert {c["check"] for c in checks} >= {"docker", "buildkitd", "builder node"}
    sample = buildfleet("sample", "--fleet", fleet, "--artifacts", str(CACHE), "--json", env=env, timeout=1800)
    assert sample.returncode == 0 and all(p["ok"] for p in json.loads(sample.stdout)["platforms"]), sample.stdout


def test_a_second_up_changes_nothing(vm_fleet):
    fleet, env, _, _, args = vm_fleet
    again = buildfleet("up", "--target", "vm", *args, env=env, timeout=1800)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change: the fleet is configured" in again.stdout
