"""A fleet name is a path component that `down` deletes: only safe names get in, and nothing
outside `<state root>/<fleet>` is ever removed. Every deletion here runs inside tmp_path,
with canary files beside what is removed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from snapshot import snapshot

from provisioning.errors import ConfigError
from provisioning.inventory import Inventory, InventoryHost
from provisioning.names import check_builder_name, check_fleet_name
from provisioning.removal import UnsafeRemoval, remove_owned_tree, unlink_inside
from provisioning.state import FleetState

PROJECT = Path(__file__).resolve().parent.parent
BAD_FLEET_NAMES = [
    "",
    ".",
    "..",
    "/",
    "a/b",
    "../x",
    "./x",
    "x/..",
    "-x",
    "Default",
    "a_b",
    "a b",
    "a\nb",
    "a" * 64,
    "~",
    "$HOME",
    "*",
]


def buildfleet(*args: str, state_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUILDFLEET_STATE_DIR": str(state_root), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from provisioning.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        timeout=120,
    )


def static_fleet(state_root: Path, fleet: str) -> FleetState:
    """A fleet's state as `up --target static` leaves it: keys, known_hosts, inventory."""
    state = FleetState.for_fleet(fleet, state_root)
    state.ensure_ssh_key()
    state.write_known_hosts({("127.0.0.1", 2222): "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"})
    host = InventoryHost("amd64-0", "amd64", "amd64", "127.0.0.1", "127.0.0.1", "root", 2222)
    state.save_inventory(Inventory("static", (host,)))
    return state


@pytest.fixture
def machine(tmp_path):
    """A state root inside tmp_path, with canaries beside it and inside it."""
    root = tmp_path / "state"
    root.mkdir()
    (tmp_path / "canary").write_text("beside the state root\n")
    (root / "canary").write_text("in the state root\n")
    static_fleet(root, "other")
    return root


@pytest.mark.parametrize("name", ["default", "a", "ci-7", "x" * 63, "0fleet"])
def test_fleet_names_of_lower_case_letters_digits_and_dashes_are_accepted(name):
    assert check_fleet_name(name) == name


@pytest.mark.parametrize("name", BAD_FLEET_NAMES)
def test_fleet_names_that_could_leave_the_state_root_are_refused(name):
    with pytest.raises(ConfigError, match="fleet name"):
        check_fleet_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "-b", "a b"])
def test_builder_names_that_could_leave_the_records_directory_are_refused(name):
    with pytest.raises(ConfigError, match="builder name"):
        check_builder_name(name)


@pytest.mark.parametrize("name", BAD_FLEET_NAMES)
@pytest.mark.process
def test_down_with_a_bad_fleet_name_stops_at_parsing_and_touches_nothing(tmp_path, machine, name):
    before = snapshot(tmp_path)
    result = buildfleet("down", f"--fleet={name}", state_root=machine)
    assert result.returncode == 2
    assert "argument --fleet: fleet name" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.process
def test_down_with_a_bad_builder_name_stops_at_parsing(tmp_path, machine):
    before = snapshot(tmp_path)
    result = buildfleet("down", "--fleet", "other", "--builder", "../../canary", state_root=machine)
    assert result.returncode == 2 and "argument --builder: builder name" in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.process
def test_down_removes_its_own_fleet_state_and_nothing_beside_it(tmp_path, machine):
    static_fleet(machine, "mine")
    before = snapshot(tmp_path)
    result = buildfleet("down", "--fleet", "mine", state_root=machine)
    assert result.returncode == 0, result.stderr
    after = snapshot(tmp_path)
    assert not (machine / "mine").exists()
    assert after == {path: entry for path, entry in before.items() if not path.startswith("state/mine")}


@pytest.mark.process
def test_down_refuses_a_fleet_directory_holding_files_buildfleet_never_writes(tmp_path, machine):
    state = static_fleet(machine, "mine")
    (state.root / "notes.txt").write_text("mine, not buildfleet's\n")
    before = snapshot(tmp_path)
    result = buildfleet("down", "--fleet", "mine", state_root=machine)
    assert result.returncode == 2
    assert result.stderr.count("error:") == 1 and "notes.txt" in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.process
def test_down_refuses_a_fleet_directory_that_is_a_symlink(tmp_path, machine):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inventory.json").write_text(json.dumps(Inventory("static", ()).to_dict()))
    (machine / "linked").symlink_to(elsewhere)
    before = snapshot(tmp_path)
    result = buildfleet("down", "--fleet", "linked", state_root=machine)
    assert result.returncode == 2 and "symlink" in result.stderr
    assert snapshot(tmp_path) == before


def test_remove_owned_tree_refuses_a_directory_outside_its_owner(tmp_path):
    owner, outside = tmp_path / "owner", tmp_path / "outside"
    owner.mkdir()
    outside.mkdir()
    (outside / "ssh").mkdir()
    with pytest.raises(UnsafeRemoval, match="outside"):
        remove_owned_tree(owner / ".." / "outside", owner, {"ssh"})
    with pytest.raises(UnsafeRemoval, match="outside"):
        remove_owned_tree(owner, owner, {"ssh"})
    assert (outside / "ssh").is_dir() and owner.is_dir()


def test_fleet_state_remove_refuses_a_root_that_is_not_a_fleet_name(tmp_path):
    odd = tmp_path / "Not_A_Fleet"
    odd.mkdir()
    with pytest.raises(UnsafeRemoval, match="not a fleet name"):
        FleetState(odd).remove()
    assert odd.is_dir()


def test_unlink_inside_removes_a_link_not_its_target_and_refuses_paths_outside(tmp_path):
    owner = tmp_path / "owner"
    owner.mkdir()
    canary = tmp_path / "canary"
    canary.write_text("keep\n")
    (owner / "link").symlink_to(canary)
    assert unlink_inside(owner / "link", owner) and canary.read_text() == "keep\n"
    assert not unlink_inside(owner / "absent", owner)
    for path in (owner / ".." / "canary", owner / "..", tmp_path / "canary"):
        with pytest.raises(UnsafeRemoval):
            unlink_inside(path, owner)
    assert canary.read_text() == "keep\n"
