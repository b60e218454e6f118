"""The sample's evidence rules and build command: what proves a platform was compiled
and run where it should have been."""

import struct

import pytest
from elf import aarch64_exit

from provisioning.builder.evidence import ELF_MACHINE, elf_identity, problems
from provisioning.builder.sample import SampleSources, build_args
from provisioning.platforms import parse_platforms


def elf_header(bits: int, order: str, machine: int) -> bytes:
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if order == "little" else 2, 1]) + bytes(9)
    return ident + struct.pack("<HH" if order == "little" else ">HH", 2, machine) + bytes(40)


def test_a_real_aarch64_program_is_recognised_as_arm64():
    assert elf_identity(aarch64_exit(0)) == ELF_MACHINE["linux/arm64"]
    assert problems("linux/arm64", "aarch64", "arm64 64-bit", aarch64_exit(0)) == []


def test_big_endian_s390x_is_read_in_its_own_byte_order():
    assert elf_identity(elf_header(64, "big", 22)) == (64, "big", 22)
    assert problems("linux/s390x", "s390x", "s390x 64-bit", elf_header(64, "big", 22)) == []


def test_an_amd64_program_in_the_arm64_image_is_caught_even_when_uname_agrees():
    assert problems("linux/arm64", "aarch64", "arm64 64-bit", elf_header(64, "little", 62)) == [
        "the compiled program is 64-bit little-endian ELF machine 62"
    ]


def test_every_disagreeing_sign_is_named():
    assert problems("linux/riscv64", "x86_64", "amd64 64-bit", b"#!/bin/sh\n") == [
        "uname -m says 'x86_64'",
        "the compiled program says 'amd64 64-bit'",
        "no compiled program in the image",
    ]


def test_arm_v6_accepts_debian_armel_code_which_targets_armv5te():
    armel = elf_header(32, "little", 40)
    assert problems("linux/arm/v6", "armv7l", "arm/v5 32-bit", armel) == []
    assert problems("linux/arm/v7", "armv7l", "arm/v5 32-bit", armel) == ["the compiled program says 'arm/v5 32-bit'"]


def test_32_bit_arm_run_natively_by_an_arm64_kernel_may_report_aarch64_but_not_under_qemu():
    armhf = elf_header(32, "little", 40)
    assert problems("linux/arm/v7", "aarch64", "arm/v7 32-bit", armhf, native_on="arm64") == []
    assert problems("linux/arm/v7", "aarch64", "arm/v7 32-bit", armhf) == ["uname -m says 'aarch64'"]
    assert problems("linux/arm/v6", "aarch64", "arm/v5 32-bit", armhf, native_on="amd64") == ["uname -m says 'aarch64'"]


@pytest.mark.parametrize("platform", ["linux/mips64le", "linux/loong64"])
def test_a_platform_without_evidence_rules_fails_instead_of_passing(platform):
    assert problems(platform, "x86_64", "amd64 64-bit", elf_header(64, "little", 62)) == [
        f"buildfleet has no evidence rules for {platform}: it cannot be checked"
    ]


def test_386_code_on_an_amd64_kernel_may_report_x86_64():
    assert problems("linux/386", "x86_64", "386 32-bit", elf_header(32, "little", 3)) == []


def sources(tmp_path, platforms):
    for name in ("userland", "busybox"):
        (tmp_path / name / "set").mkdir(parents=True)
        (tmp_path / name / "set" / "SHA256SUMS").write_text("")
    for platform in platforms:
        (tmp_path / "userland" / "set" / f"userland-{platform}.tar").write_bytes(b"")
        (tmp_path / "busybox" / "set" / f"busybox-{platform}").write_bytes(b"")
    return tmp_path


def test_the_build_reruns_only_the_compile_stage_and_reads_named_contexts(tmp_path):
    platforms = parse_platforms(["amd64", "arm/v7"])
    found = SampleSources.from_artifacts(sources(tmp_path, ["amd64", "armv7"]), platforms)
    args = build_args("b", platforms, "type=cacheonly", found)
    assert args[args.index("--no-cache-filter") + 1] == "compile" and "--no-cache" not in args
    assert args[args.index("--platform") + 1] == "linux/amd64,linux/arm/v7"
    assert f"busybox={tmp_path / 'busybox' / 'set'}" in args and args[-1] == str(tmp_path / "userland" / "set")
    assert (found.sample / "Dockerfile").is_file() and (found.sample / "hello.c").is_file()


def test_the_bench_and_the_sample_share_the_userland_stage_line_for_line(tmp_path):
    from provisioning.bench.runner import WORKLOADS_DIR

    def userland_stage(dockerfile):
        lines = dockerfile.read_text().splitlines()
        start = lines.index("FROM scratch AS userland")
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("FROM "))
        return [line for line in lines[start:end] if line.strip() and not line.startswith("#")]

    found = SampleSources.from_artifacts(sources(tmp_path, ["amd64"]), parse_platforms(["amd64"]))
    assert userland_stage(WORKLOADS_DIR / "Dockerfile") == userland_stage(found.sample / "Dockerfile")
