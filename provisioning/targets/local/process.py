"""A service the local target runs as a process of this machine (the registry, the pools'
balancer): started in its own session, found again by its pidfile, stopped only if the
process behind that pid is still ours."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioning.removal import unlink_inside


@dataclass(frozen=True)
class OwnedProcess:
    directory: Path  # the service's own directory in the fleet's state: pid, log, config
    config: Path  # its config file: a process whose command line names it is ours

    @property
    def pidfile(self) -> Path:
        return self.directory / "pid"

    @property
    def log(self) -> Path:
        return self.directory / "log"

    def pid(self) -> int | None:
        """The service's pid, only if that process is ours: the pidfile outlives a reboot,
        and its number may since belong to anything."""
        try:
            pid = int(self.pidfile.read_text())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.config).encode() in argv else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start ``argv`` (which names ``config``) and record its pid; the caller waits for it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                list(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pidfile.write_text(str(process.pid))
        return process

    def log_tail(self, size: int = 500) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def stop(self) -> None:
        """End the service and wait up to 5 s for it to go."""
        pid = self.pid()
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:  # reaped: it was our child
                        break
                except ChildProcessError:
                    pass  # started by an earlier buildfleet process
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        unlink_inside(self.pidfile, self.directory)
