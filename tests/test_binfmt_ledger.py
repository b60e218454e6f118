"""The machine-wide binfmt ledger never outlives the fleets holding it: a failed first up
holds nothing, and a holder whose fleet is gone is dropped. The kernel's table is stood in
for by a directory of the test's own (its entries as the kernel prints them)."""

import json

import pytest

from provisioning.errors import BuildfleetError
from provisioning.remote.docker import Docker
from provisioning.settings import settings_from_mapping
from provisioning.state import FleetState
from provisioning.targets.local.binfmt import MachineBinfmt
from provisioning.targets.local.target import LocalTarget, holder_alive

QEMU_AARCH64 = (
    "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n"
    "magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
)


@pytest.fixture
def machine(tmp_path):
    table = tmp_path / "binfmt_misc"
    table.mkdir()
    (table / "qemu-aarch64").write_text(QEMU_AARCH64)
    return MachineBinfmt(table=table, ledger_dir=tmp_path / "run")


def holders(machine: MachineBinfmt) -> dict[str, list[str]]:
    ledger = json.loads(machine.ledger.read_text()) if machine.ledger.exists() else {}
    return {name: record["holders"] for name, record in ledger.items()}


def a_fleet(tmp_path, name: str) -> FleetState:
    state = FleetState(tmp_path / "state" / name)
    state.root.mkdir(parents=True)
    state.record_target("local")
    return state


def test_a_holder_whose_fleet_state_is_gone_is_dropped_and_the_last_one_gone_frees_the_entry(machine, tmp_path):
    live = a_fleet(tmp_path, "live")
    machine.claim(f"live ({live.root})", ["qemu-aarch64"])
    machine.claim(f"ghost ({tmp_path / 'state' / 'ghost'})", ["qemu-aarch64"])
    pruned = machine.prune(holder_alive)
    assert holders(machine) == {"qemu-aarch64": [f"live ({live.root})"]}
    assert pruned.done[0].startswith("binfmt holder ghost (") and not pruned.failed
    (live.target_file).unlink()
    assert machine.prune(holder_alive).done[-1] == "binfmt qemu-aarch64 is as it was before"
    assert holders(machine) == {}


def test_a_holder_written_another_way_or_out_of_reach_counts_as_alive(tmp_path):
    assert holder_alive("someone else's")
    assert not holder_alive(f"gone ({tmp_path / 'nothing'})")
    assert holder_alive(f"live ({a_fleet(tmp_path, 'live').root})")


@pytest.mark.process  # asks a docker CLI that is not there
def test_a_first_up_that_fails_before_any_host_exists_holds_no_binfmt_entry(machine, tmp_path):
    state = FleetState(tmp_path / "state" / "new")
    said: list[str] = []
    target = LocalTarget("new", state, tmp_path / "cache", docker=Docker(str(tmp_path / "no-docker")), say=said.append,
                         binfmt=machine)  # fmt: skip
    with pytest.raises(BuildfleetError, match="not installed"):
        target.up(settings_from_mapping({**LocalTarget.defaults}))
    assert "registers qemu-" in said[0]  # it said it would, before it knew the engine would not answer
    assert holders(machine) == {}


def test_doctor_drops_the_holds_of_fleets_that_are_gone_and_says_so(machine, tmp_path):
    """What a failed up of an older buildfleet left, or a state directory removed by hand: doctor
    (the local and vm targets' drop_stale_holds) frees it, so the last real fleet's down puts
    the table back."""
    live = a_fleet(tmp_path, "live")
    target = LocalTarget("live", live, tmp_path / "cache", binfmt=machine)
    machine.claim(target.binfmt_holder, ["qemu-aarch64"])
    machine.claim(f"ghost ({tmp_path / 'state' / 'ghost'})", ["qemu-aarch64"])
    (dropped,) = target.drop_stale_holds()
    assert dropped.ok and dropped.check == "binfmt holders" and dropped.detail.startswith("binfmt holder ghost (")
    assert holders(machine) == {"qemu-aarch64": [target.binfmt_holder]}
    (again,) = target.drop_stale_holds()
    assert again.ok and again.detail == "every holder is a fleet that exists"
    assert (machine.table / "qemu-aarch64").read_text() == QEMU_AARCH64  # held still: as it was
