"""The local Docker engine, driven through the docker CLI with argument lists."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provisioning.command import CommandResult, run_command
from provisioning.errors import BuildfleetError, tail


@dataclass(frozen=True)
class Docker:
    binary: str = "docker"

    def run(self, args: Sequence[str], check: bool = True, input_bytes: bytes | None = None) -> CommandResult:
        missing = "the local target needs the docker CLI"
        return run_command(
            [self.binary, *args], f"docker {' '.join(args[:2])}", check, missing, input_bytes=input_bytes
        )

    def ping(self) -> None:
        result = self.run(["version", "--format", "{{.Server.Version}}"], check=False)
        if result.returncode != 0:
            raise BuildfleetError(f"the local Docker engine does not answer: {tail(result.stderr)}")

    def image_exists(self, ref: str) -> bool:
        return self.run(["image", "inspect", ref], check=False).returncode == 0

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.run([kind, "inspect", name], check=False)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)[0]

    def names(self, kind: str, label: str) -> list[str]:
        """Names of containers / volumes / networks carrying ``label`` (key=value)."""
        if kind == "container":
            args = ["ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}"]
        else:
            args = [kind, "ls", "--filter", f"label={label}", "--format", "{{.Name}}"]
        return sorted(line for line in self.run(args).stdout.splitlines() if line)
