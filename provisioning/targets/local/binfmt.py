"""This machine's binfmt_misc table, which the local target's emulation hosts write to.

binfmt_misc is one table per kernel: a QEMU registration made inside a host container is
this machine's, and outlives the container (with the F flag the kernel keeps the
interpreter open). So the local target keeps a machine-wide ledger beside the table
(/run, cleared at boot as the table is): for each entry its fleets touch, what was there
before the first of them and which fleets still use it. ``down`` of the last fleet using
an entry puts the original back (or removes the entry if there was none); while another
fleet still uses it, it stays, so two local fleets never break each other.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioning.binfmt import BinfmtEntry as Entry
from provisioning.errors import BuildfleetError
from provisioning.state import runtime_dir

TABLE = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class MachineBinfmt:
    table: Path = TABLE
    ledger_dir: Path = field(default_factory=runtime_dir)  # /run/buildfleet for root

    @property
    def ledger(self) -> Path:
        return self.ledger_dir / "binfmt.json"

    def entry(self, name: str) -> Entry | None:
        try:
            text = (self.table / name).read_text()
        except FileNotFoundError:
            return None
        entry = Entry.parse(name, text)
        if not entry.magic:
            raise BuildfleetError(f"binfmt_misc entry {name} is not a magic-number entry: {text.strip()[:120]!r}")
        return entry

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The ledger, read and written under an exclusive lock (two ``up``/``down`` at once)."""
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        with (self.ledger_dir / "binfmt.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ledger = json.loads(self.ledger.read_text()) if self.ledger.exists() else {}
            yield ledger
            temporary = self.ledger.with_suffix(".tmp")
            temporary.write_text(json.dumps(ledger, indent=2, sort_keys=True) + "\n")
            os.replace(temporary, self.ledger)

    def claim(self, holder: str, names: Iterable[str]) -> None:
        """Record what each entry is now (unless a fleet already did) and that ``holder`` uses it."""
        with self._locked() as ledger:
            for name in names:
                record = ledger.setdefault(name, {"before": _as_record(self.entry(name)), "holders": []})
                if holder not in record["holders"]:
                    record["holders"].append(holder)

    def prune(self, alive: Callable[[str], bool]) -> Released:
        """Drop holders that no longer exist (a fleet whose state is gone: a failed ``up`` of an
        older buildfleet, a state directory removed by hand), putting back each entry none holds."""
        with self._locked() as ledger:
            stale = sorted({h for record in ledger.values() for h in record["holders"] if not alive(h)})
        released = Released()
        for holder in stale:
            once = self.release(holder)
            released.done += [f"binfmt holder {holder} is gone: released", *once.done]
            released.failed += once.failed
        return released

    def release(self, holder: str) -> Released:
        """``holder`` no longer uses its entries: each one no other fleet uses is put back as it
        was before. One that cannot be stays in the ledger, held, so a later release tries again."""
        released = Released()
        with self._locked() as ledger:
            for name in sorted(ledger):
                record = ledger[name]
                if holder not in record["holders"]:
                    continue
                record["holders"].remove(holder)
                if record["holders"]:
                    released.done.append(f"binfmt {name} kept: fleet {', '.join(record['holders'])} still uses it")
                    continue
                failure = self._restore(name, _from_record(name, record["before"]), released.done)
                if failure:
                    released.failed.append(failure)
                    record["holders"].append(holder)
                else:
                    del ledger[name]
        return released

    def _restore(self, name: str, before: Entry | None, done: list[str]) -> str:
        """Put ``name`` back; what was done goes to ``done``, and what could not be is returned."""
        now = self.entry(name)
        if now == before:
            done.append(f"binfmt {name} is as it was before")
            return ""
        if before is not None and "F" in before.flags and not Path(before.interpreter).exists():
            # registered from inside some container: the kernel cannot open it from here again
            done.append(f"binfmt {name} left as it is: {before.interpreter}, there before, is not on this machine")
            return ""
        try:
            if now is not None:
                (self.table / name).write_text("-1")
            if before is None:
                done.append(f"binfmt {name} unregistered (there was none before)")
                return ""
            (self.table / "register").write_text(before.registration())
            if not before.enabled:
                (self.table / name).write_text("0")
        except OSError as error:
            what = f"put back {before.interpreter}" if before else "unregister it"
            return f"binfmt {name}: could not {what} ({error.strerror})"
        done.append(f"binfmt {name} restored to {before.interpreter}")
        return ""


@dataclass
class Released:
    """What release did, and the entries it could not put back (kept in the ledger)."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _as_record(entry: Entry | None) -> dict[str, Any] | None:
    return None if entry is None else {k: v for k, v in entry.__dict__.items() if k != "name"}


def _from_record(name: str, record: dict[str, Any] | None) -> Entry | None:
    return None if record is None else Entry(name, **record)
