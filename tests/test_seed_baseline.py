"""bench --baseline seed: what runs on the seed node, and how the fleet is compared with it."""

import pytest
from fleet_parts import measured as fleet_measured

from provisioning.bench.report import Measured
from provisioning.bench.runs import Run
from provisioning.bench.seed import SeedComparison, WholeBuild, foreign_arches, seed_host, seed_runs, speedups
from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory, InventoryHost
from provisioning.platforms import parse_platforms

EMULATION = InventoryHost("emulation-0", "emulation", "amd64", "127.0.0.1", "", "root")
AMD64 = InventoryHost("amd64-0", "amd64", "amd64", "127.0.0.1", "", "root")
PLATFORMS = parse_platforms(["amd64", "arm64", "arm/v7", "s390x"])


def measured(run: Run, *seconds: float) -> Measured:
    return fleet_measured(run, seconds, output="ok")


def test_the_seed_node_builds_everything_its_own_cpu_natively_and_the_rest_under_qemu():
    runs = seed_runs(EMULATION, PLATFORMS, ["c-compile"])
    assert [(r.platform, r.host, r.native, r.placed) for r in runs] == [
        ("linux/amd64", "emulation-0", True, False),
        ("linux/arm64", "emulation-0", False, False),
        ("linux/arm/v7", "emulation-0", False, False),
        ("linux/s390x", "emulation-0", False, False),
    ]
    assert foreign_arches(EMULATION, PLATFORMS) == ("aarch64", "arm", "s390x")


def test_a_fleet_without_an_emulation_host_has_no_seed_node():
    with pytest.raises(BuildfleetError, match="set emulationCount to 1"):
        seed_host(Inventory("local", (AMD64,)))


def test_the_speedup_is_the_seed_nodes_median_over_the_fleets_placed_run():
    native = Run("c-compile", "linux/arm64", "arm64-0", True, True)
    extra = Run("c-compile", "linux/arm64", "emulation-0", False, False)  # the bench's extra QEMU run: not the fleet's
    seed = Run("c-compile", "linux/arm64", "emulation-0", False, False, "seed")
    (row,) = speedups([measured(native, 1.0, 2.0, 3.0), measured(extra, 9.0)], [measured(seed, 40.0, 50.0, 60.0)])
    assert (row.fleet_host, row.fleet_mode, row.fleet_s, row.seed_s, row.speedup) == (
        "arm64-0",
        "native",
        2.0,
        50.0,
        25.0,
    )


def test_the_report_shows_each_platform_the_interpreters_and_the_whole_build():
    row = speedups(
        [measured(Run("c-compile", "linux/s390x", "emulation-0", False, True), 5.0)],
        [measured(Run("c-compile", "linux/s390x", "emulation-0", False, False), 10.0)],
    )
    comparison = SeedComparison(
        "emulation-0",
        tuple(row),
        WholeBuild(7, 11.0, 45.0),
        (),
        {"qemu-s390x": "/usr/libexec/qemu-binfmt/s390x-binfmt-P"},
    )
    text = comparison.markdown()
    assert "| c-compile | linux/s390x | emulation-0 (QEMU) | 5.0 | 10.0 | 2.0× |" in text
    assert "qemu-s390x /usr/libexec/qemu-binfmt/s390x-binfmt-P" in text
    assert "fleet 11.0, seed 45.0, speed-up 4.09×" in text
    assert comparison.as_dict()["whole_build"]["speedup"] == 4.09
