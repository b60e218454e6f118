"""Placement: native hardware first, QEMU on the emulation host otherwise, deterministic."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.errors import PlacementError
from provisioning.placement import EMULATION, NATIVE, QEMU, HostSpec, place
from provisioning.platforms import KNOWN, parse_platforms

AMD64 = HostSpec("amd64-0", "amd64", "amd64")
GRAVITON3 = HostSpec("arm64-0", "arm64", "arm64", aarch32=True)
GRAVITON4 = HostSpec("arm64-0", "arm64", "arm64", aarch32=False)
EMU = HostSpec("emulation-0", EMULATION, "amd64")


def placed(platforms, hosts):
    return {str(a.platform): (a.host, a.mode) for a in place(parse_platforms(platforms), hosts).assignments}


def test_default_fleet_builds_32_bit_arm_natively_on_graviton3():
    result = placed(["amd64", "arm64", "arm/v7", "arm/v6", "386", "s390x"], [AMD64, GRAVITON3, EMU])
    assert result == {
        "linux/amd64": ("amd64-0", NATIVE),
        "linux/arm64": ("arm64-0", NATIVE),
        "linux/arm/v7": ("arm64-0", NATIVE),
        "linux/arm/v6": ("arm64-0", NATIVE),
        "linux/386": ("amd64-0", NATIVE),
        "linux/s390x": ("emulation-0", QEMU),
    }


def test_graviton4_sends_32_bit_arm_to_qemu():
    result = placed(["arm64", "arm/v7", "arm/v6"], [AMD64, GRAVITON4, EMU])
    assert result == {
        "linux/arm64": ("arm64-0", NATIVE),
        "linux/arm/v7": ("emulation-0", QEMU),
        "linux/arm/v6": ("emulation-0", QEMU),
    }


def test_without_native_arm64_the_emulation_host_runs_it_under_qemu():
    assert placed(["amd64", "arm64"], [AMD64, EMU]) == {
        "linux/amd64": ("amd64-0", NATIVE),
        "linux/arm64": ("emulation-0", QEMU),
    }


def test_emulation_host_builds_its_own_arch_natively_when_no_native_host_does():
    assert placed(["amd64", "386", "arm64"], [EMU]) == {
        "linux/amd64": ("emulation-0", NATIVE),
        "linux/386": ("emulation-0", NATIVE),
        "linux/arm64": ("emulation-0", QEMU),
    }


def test_extra_hosts_of_a_role_share_the_platforms():
    emus = [HostSpec(f"emulation-{i}", EMULATION, "amd64") for i in range(2)]
    result = placed(["ppc64le", "s390x", "riscv64"], [AMD64, *emus])
    assert [host for host, _ in result.values()] == ["emulation-0", "emulation-1", "emulation-0"]


def test_unplaceable_platforms_are_all_named_in_one_error():
    with pytest.raises(PlacementError) as error:
        placed(["amd64", "s390x", "ppc64le"], [AMD64])
    assert "linux/s390x, linux/ppc64le" in str(error.value)
    assert "emulation" in str(error.value)


def test_repeated_host_names_are_refused():
    with pytest.raises(PlacementError, match="amd64-0"):
        placed(["amd64"], [AMD64, AMD64])


# --- invariants, for any fleet and any request --------------------------------------

hosts_strategy = st.lists(
    st.tuples(st.sampled_from(["amd64", "arm64", EMULATION]), st.sampled_from(["amd64", "arm64"]), st.booleans()),
    min_size=1,
    max_size=6,
).map(
    lambda rows: [
        HostSpec(f"h{i}", role, role if role != EMULATION else arch, aarch32=aarch32)
        for i, (role, arch, aarch32) in enumerate(rows)
    ]
)
platforms_strategy = st.lists(st.sampled_from(KNOWN), min_size=1, max_size=len(KNOWN), unique=True)


def placeable(platform, hosts):
    return any(h.emulates or platform in h.native for h in hosts)


@given(platforms_strategy, hosts_strategy)
def test_invariants_hold_for_any_fleet(platforms, hosts):
    if not all(placeable(p, hosts) for p in platforms):
        with pytest.raises(PlacementError):
            place(platforms, hosts)
        return
    placement = place(platforms, hosts)
    by_name = {h.name: h for h in hosts}
    # every requested platform is placed exactly once, in request order
    assert [a.platform for a in placement.assignments] == platforms
    for a in placement.assignments:
        host = by_name[a.host]
        has_native = any(a.platform in h.native for h in hosts)
        # native is chosen whenever some host runs the platform natively
        assert (a.mode == NATIVE) == has_native
        # a native assignment really is native on that host
        if a.mode == NATIVE:
            assert a.platform in host.native
        # QEMU only ever runs on an emulation host
        if a.mode == QEMU:
            assert host.emulates
        # a native-role host wins over an emulation host that also runs it natively
        if a.mode == NATIVE and host.emulates:
            assert not any(a.platform in h.native for h in hosts if not h.emulates)
    # deterministic: the same question gives the same answer
    assert place(platforms, hosts) == placement
