"""The vm target decided without booting anything: its QEMU command line, its plan, its seed."""

from pathlib import Path

import pytest
import yaml

from provisioning.cloudinit import (
    console_host_key_cloud_config,
    host_key_cloud_config,
    host_key_from_console,
    nocloud_meta_data,
)
from provisioning.errors import BuildfleetError
from provisioning.settings import settings_from_mapping
from provisioning.state import FleetState
from provisioning.targets.vm.qemu import VmImage, VmSpec, qemu_args
from provisioning.targets.vm.target import VmTarget, ensure_image, newest_image

SPEC = VmSpec("arm64-0", "arm64", VmImage(Path("/cache/vm/k/arm64")), Path("/state/vm/arm64-0"), 40022, 41234, 1234)


def option(args, flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_an_arm64_vm_is_tcg_with_a_graviton2_cpu_that_keeps_aarch32():
    args = qemu_args(SPEC)
    assert args[0] == "qemu-system-aarch64" and option(args, "-machine") == ["virt"]
    assert option(args, "-cpu") == ["neoverse-n1"] and option(args, "-accel") == ["tcg,thread=multi"]


def test_the_vm_boots_its_overlay_and_seed_and_forwards_only_on_loopback():
    args = qemu_args(SPEC)
    assert option(args, "-drive") == [
        "file=/state/vm/arm64-0/disk.qcow2,if=virtio,format=qcow2",
        "file=/state/vm/arm64-0/seed.img,if=virtio,format=raw,readonly=on",
    ]
    assert option(args, "-netdev") == ["user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:41234-:1234"]
    assert option(args, "-kernel") == ["/cache/vm/k/arm64/vmlinuz"] and "-daemonize" in args


def test_an_unknown_vm_cpu_is_named():
    with pytest.raises(BuildfleetError, match="no VM for CPU 'riscv64'"):
        qemu_args(VmSpec("x", "riscv64", SPEC.image, SPEC.directory, 1, 2, 3))


def test_the_plan_puts_arm_v7_and_v6_on_the_arm64_vm_and_the_rest_on_containers(tmp_path):
    plan = VmTarget("f", FleetState(tmp_path / "f"), tmp_path).plan(settings_from_mapping({}))
    placed = {str(a.platform): (a.host, a.native) for a in plan.placement.assignments}
    assert placed["linux/arm64"] == ("arm64-0", True)
    assert placed["linux/arm/v7"] == ("arm64-0", True) and placed["linux/arm/v6"] == ("arm64-0", True)
    assert placed["linux/amd64"] == ("amd64-0", True) and placed["linux/s390x"] == ("emulation-0", False)


def test_an_arm64_host_that_is_not_a_vm_is_refused_by_name(tmp_path):
    target = VmTarget("f", FleetState(tmp_path / "f"), tmp_path)
    with pytest.raises(BuildfleetError, match="buildfleet:arm64Count is 1, but this machine is amd64: add arm64"):
        target.plan(settings_from_mapping({"vmRoles": []}))


def test_a_missing_image_is_built_when_needed_and_missing_tools_are_named_first(tmp_path, monkeypatch):
    assert newest_image(tmp_path, "arm64") is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # none of the tools that build and run a VM
    said = []
    with pytest.raises(BuildfleetError) as error:
        ensure_image(tmp_path, "arm64", said.append)
    assert str(error.value) == (
        f"no arm64 VM image in {tmp_path / 'vm'}, and this machine lacks what builds and runs one: apt-get install "
        "arch-test cloud-image-utils mmdebstrap qemu-system-arm qemu-utils (as root), then run this again"
    )
    assert said == [] and not (tmp_path / "vm").exists()


# A first boot's serial console as Debian 12's cloud-init writes it (kernel and cloud-init lines
# around it, CRLF line ends): keys_to_console's block, then the login prompt.
FIRST_BOOT_CONSOLE = (
    "[   41.870312] cloud-init[402]: Cloud-init v. 22.4.2 running 'modules:final' at Thu, 03 Dec 2026\r\n"
    "<14>Dec  3 18:01:02 cloud-init: #############################################################\r\n"
    "-----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n"
    "256 SHA256:q9b6Vb4yXkQm3N0p2Qh3bO8C3g3y0kCz8c1mX2l0s0Q root@arm64-0 (ED25519)\r\n"
    "-----END SSH HOST KEY FINGERPRINTS-----\r\n"
    "-----BEGIN SSH HOST KEY KEYS-----\r\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMadeOnTheHostItself root@arm64-0\r\n"
    "-----END SSH HOST KEY KEYS-----\r\n"
    "Debian GNU/Linux 12 arm64-0 ttyAMA0\r\n"
)


def test_a_vm_makes_its_own_host_key_and_only_its_public_half_is_read_from_the_console():
    user_data = yaml.safe_load(console_host_key_cloud_config())
    assert "ssh_keys" not in user_data  # no private key travels in user data
    assert user_data["ssh_genkeytypes"] == ["ed25519"] and user_data["ssh_key_console_blacklist"] == []
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMadeOnTheHostItself"
    assert host_key_from_console(FIRST_BOOT_CONSOLE) == key
    half_way = FIRST_BOOT_CONSOLE[: FIRST_BOOT_CONSOLE.index("-----END SSH HOST KEY KEYS")]
    assert host_key_from_console(half_way) is None  # still printing: wait
    assert host_key_from_console("[    0.000000] Booting Linux on physical CPU 0x0\r\n") is None
    # a key without a comment runs into the end marker on one line (seen on this image's console)
    uncommented = "-----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAAC3Nz-----END SSH HOST KEY KEYS-----\r\n"
    assert host_key_from_console(uncommented) == "ssh-ed25519 AAAAC3Nz"


def test_the_seed_carries_the_user_data_ec2_gets_and_the_key_pair_as_meta_data():
    user_data = host_key_cloud_config("PRIVATE", "ssh-ed25519 AAAA host\n")
    assert yaml.safe_load(user_data)["ssh_keys"] == {
        "ed25519_private": "PRIVATE",
        "ed25519_public": "ssh-ed25519 AAAA host",
    }
    meta = yaml.safe_load(nocloud_meta_data("buildfleet-f-arm64-0", "arm64-0", "ssh-ed25519 BBBB buildfleet\n"))
    assert meta == {
        "instance-id": "buildfleet-f-arm64-0",
        "local-hostname": "arm64-0",
        "public-keys": ["ssh-ed25519 BBBB buildfleet"],
    }
