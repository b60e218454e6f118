"""Every read command's human output, not only its --json: each renders for the fleets users
make (pools among them) and names what the JSON names."""

import json

import pytest

from provisioning.cli import main
from provisioning.inventory import HostPlatform, Inventory, InventoryHost, Pool
from provisioning.settings import settings_from_mapping
from provisioning.state import FleetState


@pytest.mark.parametrize(
    ("args", "rows"),
    [
        ([], {"linux/amd64": "amd64-0", "linux/s390x": "emulation-0"}),
        (["--set", "amd64Count=2"], {"linux/amd64": "amd64-pool (amd64-0, amd64-1)", "linux/386": "amd64-pool"}),
        (["--set", "arm64Count=3"], {"linux/arm64": "arm64-pool (arm64-0, arm64-1, arm64-2)"}),
        (["--set", "emulationCount=2"], {"linux/ppc64le": "emulation-", "linux/riscv64": "emulation-"}),
        (["--target", "local", "--set", "amd64Count=2", "--set", "arm64Count=0"], {"linux/amd64": "amd64-pool"}),
    ],
)
def test_plan_table_shows_each_platforms_host_or_pool(capsys, tmp_path, args, rows):
    assert main(["plan", "--project-dir", str(tmp_path), *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    for platform, host in rows.items():
        (line,) = [line for line in lines if f" {platform} " in line]
        assert host in line, line
    assert main(["plan", "--json", "--project-dir", str(tmp_path), *args]) == 0
    placed = {row["platform"] for row in json.loads(capsys.readouterr().out)["placement"]}
    assert set(rows) <= placed


def test_cost_table_prices_every_pool_member(capsys, tmp_path):
    assert main(["cost", "--set", "amd64Count=2", "--build-hours-per-day", "4", "--project-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for host in ("amd64-0", "amd64-1", "arm64-0", "emulation-0"):
        assert host in out
    assert "a month at 4 build-hours a day" in out


@pytest.fixture
def pool_fleet(tmp_path, monkeypatch):
    """A static fleet with a pool, as up leaves it in the state directory (no host is reached)."""
    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(tmp_path / "state"))
    state = FleetState.for_fleet("p")
    amd64 = (HostPlatform("linux/amd64", True),)
    hosts = tuple(
        InventoryHost(
            f"amd64-{i}", "amd64", "amd64", f"192.0.2.{i + 1}", "", "admin", platforms=amd64, pool="amd64-pool"
        )
        for i in range(2)
    ) + (
        InventoryHost(
            "emulation-0",
            "emulation",
            "amd64",
            "192.0.2.9",
            "",
            "admin",
            platforms=(HostPlatform("linux/s390x", False),),
        ),
    )
    state.record_target("static")
    state.save_inventory(Inventory("static", hosts, pools=(Pool("amd64-pool", "192.0.2.100", 1234),)))
    state.save_settings(settings_from_mapping({"platforms": ["linux/amd64", "linux/s390x"]}).values)
    return state


def test_status_table_lists_every_host_with_its_pool_members(pool_fleet, capsys):
    assert main(["status", "--fleet", "p"]) == 0
    out = capsys.readouterr().out
    assert "fleet 'p' (static)" in out
    for host in ("amd64-0", "amd64-1", "emulation-0"):
        assert host in out
    assert "linux/s390x (QEMU)" in out


@pytest.mark.parametrize("form", ["github", "circleci", "shell"])
def test_ci_config_prints_a_file_and_its_secrets_for_a_pool_fleet(pool_fleet, capsys, form):
    assert main(["ci-config", "--fleet", "p", "--format", form]) == 0
    captured = capsys.readouterr()
    assert "192.0.2.100" in captured.out  # the pool's balancer is the node CI reaches
    assert "192.0.2.1:" not in captured.out  # never a member past it
    assert "# secrets to create" in captured.err
