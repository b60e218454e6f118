"""A transport that runs each command on this machine, in a directory of the test's own: the
executor's whole path (facts, staging, the checked install) against a real shell, no SSH."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from provisioning.command import CommandResult
from provisioning.inventory import InventoryHost
from provisioning.remote.ssh import ConnectionLost


class LocalTransport:
    def __init__(self, host: InventoryHost, lose_on_put: bool = False):
        self.host = host
        self.lose_on_put = lose_on_put  # the host vanishes while a file is on its way, as SSH reports it
        self.commands: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], sudo: bool = False, timeout: float | None = None) -> CommandResult:
        self.commands.append(tuple(argv))
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout or 60)
        return CommandResult(" ".join(argv), done.returncode, done.stdout, done.stderr)

    def put(self, local: Path, remote: str) -> None:
        self._arrive(remote)
        shutil.copy(local, remote)

    def put_bytes(self, data: bytes, remote: str) -> None:
        self._arrive(remote)
        Path(remote).write_bytes(data)
        Path(remote).chmod(0o600)

    def _arrive(self, remote: str) -> None:
        if self.lose_on_put:
            raise ConnectionLost(f"{self.host.name}: the connection to the host was lost while writing {remote}")

    def close(self) -> None:
        pass
