"""bench: which runs happen where, what each QEMU run is compared with, and the report."""

import dataclasses
import json

import pytest
from fleet_parts import inventory_host
from fleet_parts import measured as fleet_measured

from provisioning.bench.report import Measured, disagreements, markdown, rows, write
from provisioning.bench.runner import parse_report
from provisioning.bench.runs import Run, baseline_for, plan_runs
from provisioning.bench.session import catalog_prices
from provisioning.catalog import Catalog
from provisioning.inventory import Inventory
from provisioning.platforms import parse_platforms
from provisioning.settings import settings_from_mapping


def host(name, role, arch, *platforms):
    return inventory_host(name, role, *platforms, arch=arch)


LOCAL = Inventory(
    "local",
    (
        host("amd64-0", "amd64", "amd64", "linux/amd64", "linux/386"),
        host("emulation-0", "emulation", "amd64", "linux/arm64~", "linux/riscv64~"),
    ),
)
AWS = Inventory(
    "aws",
    (
        host("amd64-0", "amd64", "amd64", "linux/amd64"),
        host("arm64-0", "arm64", "arm64", "linux/arm64", "linux/arm/v7"),
        host("emulation-0", "emulation", "amd64", "linux/s390x~"),
    ),
)
ARCH = {h.name: h.arch for h in AWS.hosts}


def test_every_platform_runs_where_placed_and_native_ones_again_on_the_emulation_host():
    runs = plan_runs(AWS, parse_platforms(["amd64", "arm64", "s390x"]), ["c-compile"])
    assert [(r.platform, r.host, r.native, r.placed) for r in runs] == [
        ("linux/amd64", "amd64-0", True, True),
        ("linux/amd64", "emulation-0", True, False),
        ("linux/arm64", "arm64-0", True, True),
        ("linux/arm64", "emulation-0", False, False),
        ("linux/s390x", "emulation-0", False, True),
    ]


def test_the_emulation_hosts_own_cpu_is_native_and_says_so():
    extra = [r for r in plan_runs(LOCAL, parse_platforms(["386"]), ["python"]) if not r.placed]
    assert extra == [
        Run("python", "linux/386", "emulation-0", True, False, "the emulation host's own amd64 CPU runs it natively")
    ]


def test_qemu_is_compared_with_the_platforms_own_native_node_where_the_fleet_has_one():
    runs = plan_runs(AWS, parse_platforms(["amd64", "arm64", "s390x"]), ["c-compile"])
    emulated_arm64 = next(r for r in runs if r.platform == "linux/arm64" and not r.native)
    assert baseline_for(emulated_arm64, runs, ARCH).label == "linux/arm64 on arm64-0"
    s390x = next(r for r in runs if r.platform == "linux/s390x")
    assert baseline_for(s390x, runs, ARCH).label == ("linux/amd64 on emulation-0 (same machine)")


def test_foreign_platforms_alone_still_get_a_native_baseline_on_the_same_machine():
    runs = plan_runs(LOCAL, parse_platforms(["riscv64"]), ["c-compile"])
    assert [(r.platform, r.host, r.native, r.note) for r in runs] == [
        ("linux/riscv64", "emulation-0", False, ""),
        ("linux/amd64", "emulation-0", True, "baseline for the emulation penalty"),
    ]


def measured(run, seconds, build):
    return fleet_measured(run, seconds, build, "0094d6c6 4630b146e06717d1")


def test_penalty_is_the_ratio_of_medians_and_price_follows_the_build_wall_time():
    runs = plan_runs(LOCAL, parse_platforms(["riscv64"]), ["c-compile"])
    results = [measured(runs[0], (9.0, 10.0, 30.0), (12.0, 12.0, 40.0)), measured(runs[1], (0.5, 0.4, 0.6), (1, 1, 1))]
    c7i = Catalog().lookup("c7i.xlarge")
    table = rows(results, {"emulation-0": "amd64"}, {"emulation-0": c7i})
    riscv = table[0]
    assert (riscv.mode, riscv.median_s, riscv.min_s, riscv.penalty) == ("QEMU", 10.0, 9.0, 20.0)
    assert riscv.usd_per_build == round(12.0 / 60 * c7i.usd_per_hour / 60, 6)
    assert table[1].penalty is None and table[1].mode == "native"


def test_the_report_separates_measured_numbers_from_catalog_prices(tmp_path):
    runs = plan_runs(LOCAL, parse_platforms(["amd64", "arm64"]), ["c-compile"])
    results = [measured(r, (1.0, 2.0, 3.0), (2.0, 2.0, 2.0)) for r in runs]
    table = rows(results, {h.name: h.arch for h in LOCAL.hosts}, {})
    text = markdown(table, "bench", "Prices: none here.")
    assert "Measured in this run" in text and "From the catalog, not measured" in text
    assert (
        "| c-compile | linux/arm64 | emulation-0 | QEMU | 2.00 | 1.00 | 1.0x slower than native linux/amd64 on" in text
    )
    files = write(tmp_path / "out", table, results, {"fleet": "t"}, "bench", "Prices: none here.")
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(files["json"].read_text())
    assert data["fleet"] == "t" and data["raw"][0]["seconds"] == [1.0, 2.0, 3.0]
    assert files["csv"].read_text().splitlines()[1] == "c-compile,linux/amd64,amd64-0,native,1,1.0,2.0"


VM_FLEET = Inventory(
    "vm",
    (
        host("amd64-0", "amd64", "amd64", "linux/amd64"),
        dataclasses.replace(host("arm64-0", "arm64", "arm64", "linux/arm64"), full_system_emulation=True),
        host("emulation-0", "emulation", "amd64", "linux/s390x~"),
    ),
)


def test_a_vm_hosts_times_are_full_system_emulation_never_graviton_figures_and_the_ratio_stays():
    runs = plan_runs(VM_FLEET, parse_platforms(["arm64"]), ["c-compile"])
    on_vm, under_qemu = runs
    assert (on_vm.host, on_vm.mode, under_qemu.host, under_qemu.mode) == (
        "arm64-0",
        "full-system emulation",
        "emulation-0",
        "QEMU",
    )
    assert "not a Graviton figure" in on_vm.note
    results = [measured(on_vm, (4.0,), (5.0,)), measured(under_qemu, (2.0,), (3.0,))]
    prices, _ = catalog_prices(settings_from_mapping({}), VM_FLEET)
    assert "arm64-0" not in prices and "amd64-0" in prices  # the VM is never priced as a c7g
    table = rows(results, {h.name: h.arch for h in VM_FLEET.hosts}, prices)
    assert table[0].usd_per_build is None and table[1].penalty == 0.5  # user-mode QEMU / full-system QEMU
    text = markdown(table, "bench", "Prices.")
    assert "0.5x slower than linux/arm64 on arm64-0 (full-system emulation)" in text
    assert "never Graviton figures" in text and "slower than native linux/arm64" not in text


def test_a_platform_computing_a_different_result_is_named():
    runs = plan_runs(LOCAL, parse_platforms(["amd64", "arm64", "riscv64"]), ["c-compile"])
    results = [measured(r, (1.0,), (1.0,)) for r in runs]
    results[-1] = Measured(runs[-1], (1.0,), (1.0,), "gcc 14.2.0", "0094d6c6 0000000000000000", "riscv64")
    assert disagreements(results) == [
        "c-compile on linux/riscv64 (emulation-0) printed '0094d6c6 0000000000000000', "
        "the others '0094d6c6 4630b146e06717d1'"
    ]
    assert disagreements(results[:-1]) == []


def test_the_step_report_is_read_as_key_value_lines():
    assert parse_report("seconds=1.25\noutput=60 119995\ntool=Python 3.11.2\n") == {
        "seconds": "1.25",
        "output": "60 119995",
        "tool": "Python 3.11.2",
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--repeats", "0"], "must be at least 1"),
        (["bench", "--workload", "rust"], "invalid choice: 'rust'"),
    ],
)
def test_bad_bench_arguments_are_refused_by_name(argv, message, capsys):
    from provisioning.cli import main

    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
