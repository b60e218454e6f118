"""One check's outcome as data (doctor and its pre-flight): what was checked, on what, whether it
passed, what was seen and what to do. Stages produce these; the CLI only renders them."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Check:
    node: str  # what was checked: a host, a pool, "this machine", "aws", ...
    check: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # not ok, but nothing buildfleet's own commands would fail on

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def passed(node: str, check: str, detail: str) -> Check:
    return Check(node, check, True, detail)


def failed(node: str, check: str, detail: str, fix: str) -> Check:
    return Check(node, check, False, detail, fix)
