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

EXEC_SECONDS = 5.0  # a started program shows its arguments within this; one that never does is not ours


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
        except (OSError, ValueError):
            return None
        return pid if self._ours(pid) else None

    def _ours(self, pid: int) -> bool:
        try:
            return self.marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False

    def running(self) -> bool:
        return self.pid() is not None

    @property
    def retiring_file(self) -> Path:
        return self.directory / f"{self.pidfile_name}.retiring"

    def start(self, argv: Sequence[str], succeeding: int | None = None) -> subprocess.Popen:
        """Start ``argv`` (which holds ``marker``) and record its pid; the caller waits for it.
        ``succeeding``: the pid of the process this one takes over from (HAProxy's ``-sf``: the
        old one finishes its connections, then exits); it stays on record until it is gone."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if succeeding is not None:
            self._retire(succeeding)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                list(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pidfile.write_text(str(process.pid))
        self._await_exec(process)
        return process

    def _await_exec(self, process: subprocess.Popen) -> None:
        """Return once the new program's command line shows ``marker``. Popen returns when the
        kernel has closed the child's close-on-exec pipe, before it has filled in the new
        program's arguments: in that window ``/proc/<pid>/cmdline`` is empty, so ``pid()`` would
        disown the process and a ``stop()`` at once leave it running (seen with HAProxy's ``-sf``)."""
        deadline = time.monotonic() + EXEC_SECONDS
        while not self._ours(process.pid) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)

    def retiring(self) -> list[int]:
        """Earlier processes still finishing their work; a pid that no longer names ours is dropped."""
        try:
            pids = [int(line) for line in self.retiring_file.read_text().split()]
        except (OSError, ValueError):
            return []
        return [pid for pid in pids if not self._gone(pid)]  # gone: reaped, or its pid no longer ours

    def _retire(self, pid: int) -> None:
        self.retiring_file.write_text("".join(f"{p}\n" for p in [*self.retiring(), pid]))

    def log_tail(self, size: int = 500) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    def stop(self, timeout: float = 5.0) -> bool:
        """The process and any it took over from: SIGTERM, wait up to ``timeout`` seconds for
        each to go, then SIGKILL; False if it was not running."""
        pid = self.pid()
        for ours in [*self.retiring(), *([pid] if pid is not None else [])]:
            self._end(ours, timeout)
        unlink_inside(self.pidfile, self.directory)
        unlink_inside(self.retiring_file, self.directory)
        return pid is not None

    def _end(self, pid: int, timeout: float) -> None:
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._gone(pid):
            time.sleep(0.1)
        if not self._gone(pid):
            self._signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self._gone(pid):
                time.sleep(0.05)

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
            return not self._ours(pid)
        return reaped == pid
