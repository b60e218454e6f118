"""What an engine run would change, shown before it changes anything (Pulumi's and
Terraform's plan-then-apply): counts per operation, every replacement and deletion by name.

Built from the engine's own events (``resourcePreEvent`` steps and the ``summaryEvent``
counts, as pulumi/pulumi's sdk/go/common/apitype/events.go defines them), never from its
display text, so the summary means the same on every CLI version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioning.errors import NotConfirmed

# deploy.StepOp values (pkg/resource/deploy/step.go) that replace a resource, in the order
# the engine emits them for one replacement; each is one replacement of that URN.
REPLACING = frozenset({"replace", "create-replacement", "delete-replaced"})
NO_CHANGE = frozenset({"same", "read", "refresh", "discard"})


def resource_name(urn: str) -> str:
    """``type name`` out of ``urn:pulumi:stack::project::parent$type::name``."""
    head, _, name = urn.rpartition("::")
    kind = head.rpartition("::")[2].rpartition("$")[2]
    return f"{kind} {name}" if kind else name


@dataclass
class ChangePreview:
    """One preview's outcome; ``add_step`` takes each step the engine announced."""

    what: str  # "pulumi up" / "pulumi destroy"
    stack: str
    counts: dict[str, int] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def add_step(self, op: str, urn: str) -> None:
        name = resource_name(urn)
        if op in REPLACING and name not in self.replaced:
            self.replaced.append(name)
        elif op == "delete" and name not in self.deleted:
            self.deleted.append(name)

    def add_summary(self, resource_changes: Mapping[object, int]) -> None:
        for op, count in resource_changes.items():
            key = str(getattr(op, "value", op))
            self.counts[key] = self.counts.get(key, 0) + int(count)

    @property
    def changes(self) -> bool:
        """Whether applying it would change anything at all (else there is nothing to ask)."""
        changing = {op: n for op, n in self.counts.items() if op not in NO_CHANGE and n}
        return bool(changing or self.replaced or self.deleted)

    def lines(self) -> list[str]:
        order = ("create", "update", "replace", "delete", "same")
        counted = [op for op in order if self.counts.get(op)] + sorted(
            op for op in self.counts if op not in order and self.counts[op]
        )
        summary = ", ".join(f"{self.counts[op]} to {op}" for op in counted) or "no resources"
        lines = [f"{self.what} on stack {self.stack!r} would change: {summary}"]
        lines += [f"  replace: {name}" for name in self.replaced]
        lines += [f"  delete: {name}" for name in self.deleted]
        if not self.changes:
            lines.append("  nothing to change")
        return lines


def refuse_changes(preview: ChangePreview) -> None:
    """The confirmation when nobody can be asked: nothing changes unapproved."""
    if preview.changes:
        raise NotConfirmed(f"{preview.what} on stack {preview.stack!r} not run: nobody approved its changes")
