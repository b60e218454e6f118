"""A binfmt_misc entry as the kernel shows it in /proc/sys/fs/binfmt_misc/NAME, and the line
that registers it again. Pure: read by the hosts' binfmt fact and by the local target's
machine-wide ledger alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BinfmtEntry:
    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int = 0
    magic: str = ""  # hex, as the kernel prints it ("" for an extension entry)
    mask: str = ""

    @classmethod
    def parse(cls, name: str, text: str) -> BinfmtEntry:
        """The kernel's lines: ``enabled``/``disabled``, then ``key value`` (``flags: OCF``)."""
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            fields.setdefault(key.rstrip(":"), value.strip())
        return cls(
            name,
            "enabled" in fields,
            fields.get("interpreter", ""),
            fields.get("flags", ""),
            int(fields.get("offset", "0") or "0"),
            fields.get("magic", ""),
            fields.get("mask", ""),
        )

    def registration(self) -> str:
        """The ``:name:M:offset:magic:mask:interpreter:flags`` line that registers it again."""

        def escaped(hexed: str) -> str:
            return "".join(f"\\x{hexed[i : i + 2]}" for i in range(0, len(hexed), 2))

        magic, mask = escaped(self.magic), escaped(self.mask)
        return ":" + ":".join((self.name, "M", str(self.offset), magic, mask, self.interpreter, self.flags))
