"""A process of this machine a target owns (the local registry, a pool's balancer, a vm
target's QEMU): found again by its pidfile, and only trusted, signalled or stopped when the
process behind that pid is still ours, as its command line shows."""

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
    directory: Path  # the process's own directory in the fleet's state: pid, log, config
    marker: str  # an argument only our process has on its command line (its config file, its disk)
    pidfile_name: str = "pid"
    own_session: bool = True  # started here in a session of its own: its children are stopped with it

    @property
    def pidfile(self) -> Path:
        return self.directory / self.pidfile_name

    @property
    def log(self) -> Path:
        return self.directory / "log"

    def pid(self) -> int | None:
        """The process's pid, only if that process is ours: the pidfile outlives a reboot,
        and its number may since belong to anything."""
        try:
            pid = int(self.pidfile.read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if self.marker.encode() in argv else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start ``argv`` (which holds ``marker``) and record its pid; the caller waits for it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                list(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pidfile.write_text(str(process.pid))
        return process

    def log_tail(self, size: int = 500) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def stop(self, timeout: float = 5.0) -> bool:
        """SIGTERM, wait up to ``timeout`` seconds for it to go, then SIGKILL; False if it was not running."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self._gone(pid):
                time.sleep(0.1)
            if not self._gone(pid):
                self._signal(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and not self._gone(pid):
                    time.sleep(0.05)
        unlink_inside(self.pidfile, self.directory)
        return pid is not None

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        if self.own_session:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)

    def _gone(self, pid: int) -> bool:
        """Gone once reaped, when it is our child (its command line is empty as a zombie, which
        must not pass for gone: it would stay one); otherwise once its pid no longer names it."""
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # started by an earlier buildfleet process, or reaped already
            return self.pid() != pid
        return reaped == pid
