"""Platforms: every spelling users type resolves to one canonical OCI platform."""

import pytest

from provisioning.errors import PlatformError
from provisioning.platforms import KNOWN, Platform, native_platforms, parse_platform, parse_platforms


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("arm64", "linux/arm64"),
        ("linux/arm64", "linux/arm64"),
        ("aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("amd64", "linux/amd64"),
        ("x86_64", "linux/amd64"),
        (" Linux/AMD64 ", "linux/amd64"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("arm", "linux/arm/v7"),
        ("armhf", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("armel", "linux/arm/v6"),
        ("386", "linux/386"),
        ("i386", "linux/386"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
        ("mips64le", "linux/mips64le"),
        ("mips64el", "linux/mips64le"),
        ("loong64", "linux/loong64"),
        ("loongarch64", "linux/loong64"),
    ],
)
def test_spellings_normalise_to_the_canonical_platform(text, canonical):
    assert str(parse_platform(text)) == canonical


def test_every_known_platform_round_trips():
    for platform in KNOWN:
        assert parse_platform(str(platform)) == platform


@pytest.mark.parametrize("text", ["", "linux/", "windows/amd64", "linux/arm/v5", "linux/sparc64", "arm64/v9", "/"])
def test_unknown_or_malformed_platform_error_lists_the_valid_ones(text):
    with pytest.raises(PlatformError) as error:
        parse_platform(text)
    message = str(error.value)
    assert repr(text) in message
    for platform in KNOWN:
        assert str(platform) in message


def test_a_list_keeps_request_order_and_drops_repeats():
    assert [str(p) for p in parse_platforms(["s390x", "linux/amd64", "x86_64", "arm64"])] == [
        "linux/s390x",
        "linux/amd64",
        "linux/arm64",
    ]


def test_an_empty_list_is_an_error():
    with pytest.raises(PlatformError, match="no platforms requested"):
        parse_platforms([])


def test_amd64_cpus_run_386_natively():
    assert native_platforms("amd64") == {Platform("linux", "amd64"), Platform("linux", "386")}


def test_arm64_runs_32_bit_arm_only_with_aarch32():
    with_32 = native_platforms("arm64", aarch32=True)
    without = native_platforms("arm64", aarch32=False)
    assert with_32 == {Platform("linux", "arm64"), Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6")}
    assert without == {Platform("linux", "arm64")}


def test_qemu_interpreter_names_match_binfmt_entries():
    names = {str(p): p.qemu_arch for p in KNOWN}
    assert names["linux/arm64"] == "aarch64"
    assert names["linux/arm/v7"] == names["linux/arm/v6"] == "arm"
    assert names["linux/386"] == "i386"
    assert names["linux/mips64le"] == "mips64el"
    assert names["linux/loong64"] == "loongarch64"
