"""The local Docker engine, driven through the docker CLI with argument lists."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provisioning.errors import BuildfleetError, tail


@dataclass(frozen=True)
class Docker:
    binary: str = "docker"

    def run(
        self, args: Sequence[str], check: bool = True, input_bytes: bytes | None = None
    ) -> subprocess.CompletedProcess:
        command = [self.binary, *args]
        try:
            if input_bytes is None:
                result = subprocess.run(command, capture_output=True, text=True)
            else:
                raw = subprocess.run(command, capture_output=True, input=input_bytes)
                result = subprocess.CompletedProcess(
                    command, raw.returncode, raw.stdout.decode(errors="replace"), raw.stderr.decode(errors="replace")
                )
        except FileNotFoundError:
            raise BuildfleetError(f"{self.binary} not found: the local target needs the docker CLI") from None
        if check and result.returncode != 0:
            output = tail(result.stderr) or tail(result.stdout)
            raise BuildfleetError(f"docker {' '.join(args[:2])} failed (exit {result.returncode}): {output}")
        return result

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
