"""The local target's registry: Debian's docker-registry (distribution v2), run as a process.

Both sides must reach it under one name, because buildx pushes the multi-platform
manifest list from the operator's side while every node pushes its own image: so it
listens on the fleet network's gateway address, which the operator has on its bridge
and every host container routes to (127.0.0.1 inside a host is the host itself).
Plain HTTP on that private bridge only; nodes are told it is insecure.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import BuildfleetError
from provisioning.remote.machine import free_port
from provisioning.removal import unlink_inside
from provisioning.targets.process import OwnedProcess

BINARY = "docker-registry"


def registry_binary(cache_dir: Path) -> str:
    """Debian's docker-registry: on PATH, or unpacked into the cache by .ci/prepare."""
    cached = cache_dir / "bin" / BINARY
    found = shutil.which(BINARY) or (str(cached) if cached.exists() else None)
    if found is None:
        raise BuildfleetError(
            f"{BINARY} not found on PATH or in {cached}: run .ci/prepare "
            "(it unpacks Debian's docker-registry package there)"
        )
    return found


@dataclass(frozen=True)
class LocalRegistry:
    directory: Path  # <state>/registry: config, data, pid, log

    @property
    def record(self) -> Path:
        return self.directory / "address"

    def address(self) -> str | None:
        return self.record.read_text().strip() if self.record.exists() else None

    @property
    def config(self) -> Path:
        return self.directory / "config.yml"

    @property
    def process(self) -> OwnedProcess:
        return OwnedProcess(self.directory, str(self.config))

    def running(self) -> bool:
        return self.process.running()

    def answers(self, address: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def ensure(self, host: str, binary: str) -> str:
        """Start the registry on ``host`` (a free port) unless it already runs there."""
        current = self.address()
        if current and current.rsplit(":", 1)[0] == host and self.running() and self.answers(current):
            return current
        self.stop()
        self.directory.mkdir(parents=True, exist_ok=True)
        address = f"{host}:{free_port(host)}"
        config = self.config
        config.write_text(
            json.dumps(
                {  # YAML is a superset of JSON
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(self.directory / "data")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": address},
                }
            )
        )
        process = self.process.start([binary, "serve", str(config)])
        self.record.write_text(address)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.answers(address):
                return address
            if process.poll() is not None:
                break
            time.sleep(0.2)
        last = self.process.log_tail()
        self.stop()
        raise BuildfleetError(f"the local registry did not start on {address}: {last}")

    def stop(self) -> None:
        self.process.stop()
        unlink_inside(self.record, self.directory)
