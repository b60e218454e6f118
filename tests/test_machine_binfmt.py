"""This machine's binfmt_misc table is put back as the local target found it, per entry, once
no fleet uses it. Run against the real kernel table with throwaway entries of the test's own
(a magic number no binary has), which the test removes whatever happens."""

import json
import uuid
from pathlib import Path

import pytest

from provisioning.targets.local.binfmt import TABLE, Entry, MachineBinfmt

QEMU_AARCH64 = (
    "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n"
    "magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
)


def test_an_entry_as_the_kernel_shows_it_becomes_the_line_that_registers_it_again():
    entry = Entry.parse("qemu-aarch64", QEMU_AARCH64)
    assert (entry.enabled, entry.interpreter, entry.flags, entry.offset) == (
        True,
        "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
        "POCF",
        0,
    )
    assert entry.registration() == (
        ":qemu-aarch64:M:0:"
        "\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:"
        "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:"
        "/usr/libexec/qemu-binfmt/aarch64-binfmt-P:POCF"
    )


@pytest.fixture
def throwaway():
    """A name of the test's own in the real table, removed afterwards whatever happened."""
    if not (TABLE / "register").exists():
        pytest.fail("binfmt_misc is not mounted: .ci/prepare mounts it")
    name = f"bftest-{uuid.uuid4().hex[:8]}"
    yield name
    if (TABLE / name).exists():
        (TABLE / name).write_text("-1")


def register(name: str, interpreter: str) -> None:
    magic, mask = "\\x00\\x01BFTEST", "\\xff" * 8  # no binary starts with these bytes
    (TABLE / "register").write_text(f":{name}:M:0:{magic}:{mask}:{interpreter}:F")


def others() -> dict[str, str]:
    return {p.name: p.read_text() for p in TABLE.iterdir() if p.name != "register" and not p.name.startswith("bftest-")}


@pytest.mark.integration  # writes into this machine's kernel binfmt table
def test_two_fleets_share_an_entry_and_the_last_one_down_puts_back_what_was_there(throwaway, tmp_path):
    machine, untouched = MachineBinfmt(ledger_dir=tmp_path / "run"), others()
    register(throwaway, "/bin/true")  # what the machine had
    original = machine.entry(throwaway)
    machine.claim("a", [throwaway])
    (TABLE / throwaway).write_text("-1")  # fleet a's emulation host registers its own QEMU
    register(throwaway, "/bin/false")
    machine.claim("b", [throwaway])
    assert machine.release("a").done == [f"binfmt {throwaway} kept: fleet b still uses it"]
    assert machine.entry(throwaway).interpreter == "/bin/false"  # b's builds keep working
    assert machine.release("b").done == [f"binfmt {throwaway} restored to /bin/true"]
    assert machine.entry(throwaway) == original
    assert machine.ledger.read_text().strip() == "{}"
    assert others() == untouched


@pytest.mark.integration  # writes into this machine's kernel binfmt table
def test_an_entry_that_was_not_there_before_is_unregistered(throwaway, tmp_path):
    machine = MachineBinfmt(ledger_dir=tmp_path / "run")
    machine.claim("a", [throwaway])
    register(throwaway, "/bin/false")
    assert machine.release("a").done == [f"binfmt {throwaway} unregistered (there was none before)"]
    assert machine.entry(throwaway) is None


@pytest.mark.integration  # writes into this machine's kernel binfmt table
def test_an_original_registered_from_inside_a_container_is_left_rather_than_lost(throwaway, tmp_path):
    machine = MachineBinfmt(ledger_dir=tmp_path / "run")
    gone = tmp_path / "interpreter"
    gone.write_text("#!/bin/sh\n")
    gone.chmod(0o755)
    register(throwaway, str(gone))  # F: the kernel holds it open after the file is gone
    machine.claim("a", [throwaway])
    gone.unlink()
    (TABLE / throwaway).write_text("-1")
    register(throwaway, "/bin/false")
    (line,) = machine.release("a").done
    assert line == f"binfmt {throwaway} left as it is: {gone}, there before, is not on this machine"
    assert machine.entry(throwaway).interpreter == "/bin/false"  # still a working entry


def test_a_fleet_that_holds_nothing_releases_nothing(tmp_path):
    assert MachineBinfmt(ledger_dir=tmp_path / "run").release("nobody").done == []
    assert Path(tmp_path / "run" / "binfmt.json").read_text().strip() == "{}"


def test_an_entry_that_cannot_be_put_back_is_reported_and_kept_for_the_next_release(tmp_path):
    """A table of the test's own (a directory like the kernel's), whose register file refuses writes."""
    table = tmp_path / "table"
    (table / "register").mkdir(parents=True)  # writing to it fails with an OSError, as without root
    machine = MachineBinfmt(table=table, ledger_dir=tmp_path / "run")
    before = QEMU_AARCH64.replace("flags: POCF", "flags: OC")
    fleets = before.replace("aarch64-binfmt-P", "qemu-aarch64-static")
    (table / "qemu-aarch64").write_text(before)
    machine.claim("a", ["qemu-aarch64"])
    (table / "qemu-aarch64").write_text(fleets)
    released = machine.release("a")
    assert released.failed == [
        "binfmt qemu-aarch64: could not put back /usr/libexec/qemu-binfmt/aarch64-binfmt-P (Is a directory)"
    ]
    ledger = json.loads((tmp_path / "run" / "binfmt.json").read_text())
    assert ledger["qemu-aarch64"]["holders"] == ["a"]  # still held: a later down tries again
    (table / "register").rmdir()  # the operator fixed it (root)
    (table / "qemu-aarch64").write_text(fleets)
    again = machine.release("a")
    assert again.failed == [] and again.done == [
        "binfmt qemu-aarch64 restored to /usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    ]
    assert json.loads((tmp_path / "run" / "binfmt.json").read_text()) == {}
