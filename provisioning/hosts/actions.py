"""What an operation asks the executor to do; plain data, so decisions are testable."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """Run a command (argument list) as root on the host."""

    argv: tuple[str, ...]
    why: str
    disrupts: bool = False  # interrupts what the host serves (restarts buildkitd): run drained, one host at a time


@dataclass(frozen=True)
class Upload:
    """Copy a local file to ``dest``; the host checks ``sha256`` before it is moved in place."""

    source: Path
    dest: str
    sha256: str
    mode: str = "0755"
    why: str = ""


@dataclass(frozen=True)
class WriteFile:
    """Write ``content`` to ``dest`` (same checked path as an upload)."""

    dest: str
    content: bytes = field(repr=False)
    mode: str = "0644"
    why: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


Action = Run | Upload | WriteFile


def disruptive(run: Run) -> Run:
    """``run`` (a restart) marked as interrupting the host's builds."""
    return replace(run, disrupts=True)


@dataclass(frozen=True)
class Decision:
    """An operation's answer: the actions needed, or why none are; or why it cannot proceed."""

    actions: tuple[Action, ...] = ()
    reason: str = ""
    error: str = ""
    warning: str = ""  # something to act on that configure cannot change (an open advisory), with the fix

    @property
    def changes(self) -> bool:
        return bool(self.actions)


def no_change(reason: str, warning: str = "") -> Decision:
    return Decision((), reason, warning=warning)


def refuse(error: str) -> Decision:
    return Decision((), "", error)
