"""Files a fleet keeps on the operator's machine: SSH keys, known_hosts, certs, inventory.

Private keys never leave this directory (mode 0700) except the buildkitd server key,
which goes to its own host. Default location: ~/.local/state/buildfleet/<fleet>
(override with BUILDFLEET_STATE_DIR).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provisioning.errors import BuildfleetError, ConfigError
from provisioning.inventory import Declared, Inventory
from provisioning.names import FLEET_NAME, check_fleet_name
from provisioning.private import private_dir, write_private
from provisioning.removal import UnsafeRemoval, remove_owned_tree, unlink_inside

# Every entry buildfleet writes directly in a fleet's state directory (ssh keys, the docker
# client's ssh wrapper, TLS material, builder records, the local registry and pool balancer, the inventory, the
# docker-container driver's buildkitd config, the aws stack name, which target made the fleet,
# the settings ``up`` used, the aws project directory and the digest of the identity its stack keeps,
# the vm target's VM disks and seeds). ``remove`` refuses any other.
STATE_ENTRIES = frozenset(
    {
        "ssh",
        "ssh-client",
        "tls",
        "builders",
        "registry",
        "balancer",
        "inventory.json",
        "settings.json",
        "buildkitd-docker-container.toml",
        "aws-stack",
        "aws-project",
        "stack-identity.sha256",
        "target",
        "vm",
    }
)


def default_state_root() -> Path:
    env = os.environ.get("BUILDFLEET_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "buildfleet"


def runtime_dir() -> Path:
    """Where buildfleet keeps what lives only while the machine runs (locks): /run/buildfleet
    for root, else a private directory of the user's."""
    env = os.environ.get("BUILDFLEET_RUN_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/buildfleet")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/buildfleet-{os.geteuid()}") / "buildfleet"


def _json_object(path: Path, what: str, fix: str) -> dict[str, Any] | None:
    """A state file holding one JSON object; None when absent, an error naming the fix when damaged."""
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text())
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise ConfigError(f"{path} is damaged (not a JSON object of {what}); {fix}")
    return found


def known_hosts_name(address: str, port: int) -> str:
    """How known_hosts names a host: bare on port 22, ``[address]:port`` elsewhere."""
    return address if port == 22 else f"[{address}]:{port}"


def ensure_ed25519_pair(private: Path, comment: str = "") -> str:
    """An Ed25519 key pair in OpenSSH form, made once (private half 0600, public at
    ``<private>.pub``); returns the public line."""
    public = private.with_suffix(".pub")
    if not private.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        write_private(
            private,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ),
        )
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        public.write_text(line.decode() + comment + "\n")
    return public.read_text().strip()


@dataclass(frozen=True)
class FleetState:
    root: Path

    @classmethod
    def for_fleet(cls, fleet: str, base: Path | None = None) -> FleetState:
        return cls((base or default_state_root()) / check_fleet_name(fleet))

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    @property
    def target_file(self) -> Path:
        return self.root / "target"

    def record_target(self, kind: str) -> None:
        """Which target made this fleet, written before it makes anything: a failed up is
        still taken down by the same target."""
        self.ensure()
        self.target_file.write_text(kind + "\n")

    def recorded_target(self) -> str | None:
        return self.target_file.read_text().strip() if self.target_file.exists() else None

    @property
    def stack_file(self) -> Path:
        """Which Pulumi stack holds the fleet's hosts (written by a target that has one): what down destroys."""
        return self.root / "aws-stack"

    def record_stack(self, stack: str) -> None:
        self.ensure()
        self.stack_file.write_text(stack + "\n")

    def recorded_stack(self) -> str | None:
        return self.stack_file.read_text().strip() if self.stack_file.exists() else None

    @property
    def project_file(self) -> Path:
        """Where this machine keeps the stack's Pulumi.yaml and stack file (this operator's own
        directory, never handed over): later commands find the stack from anywhere."""
        return self.root / "aws-project"

    def record_project(self, directory: Path) -> None:
        self.ensure()
        self.project_file.write_text(str(directory.resolve()) + "\n")

    def recorded_project(self) -> Path | None:
        return Path(self.project_file.read_text().strip()) if self.project_file.exists() else None

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.json"

    def save_settings(self, values: Mapping[str, Any]) -> None:
        """The effective settings ``up`` used (every key, validated): configure and doctor read
        them back, so a custom buildkitdPort never reverts to the default from another directory."""
        self.ensure()
        self.settings_file.write_text(json.dumps(dict(values), indent=2, sort_keys=True) + "\n")

    def saved_settings(self) -> dict[str, Any] | None:
        return _json_object(self.settings_file, "settings", "buildfleet up rewrites it from your configuration")

    @property
    def inventory_file(self) -> Path:
        return self.root / "inventory.json"

    def ensure(self) -> None:
        private_dir(self.root)
        private_dir(self.root / "ssh")

    def ensure_ssh_key(self) -> str:
        """Create the fleet's Ed25519 key once; return its OpenSSH public line."""
        self.ensure()
        return ensure_ed25519_pair(self.ssh_key, " buildfleet")

    def write_known_hosts(self, entries: dict[tuple[str, int], str]) -> None:
        """Pin each host key as reported by the target: ``(address, port) -> 'type base64'``."""
        self.ensure()
        lines = [f"{known_hosts_name(address, port)} {key}\n" for (address, port), key in sorted(entries.items())]
        self.known_hosts.write_text("".join(lines))

    @property
    def console_keys_file(self) -> Path:
        return self.root / "ssh" / "console-keys.json"

    def console_keys(self) -> dict[str, dict[str, str]]:
        """host -> its instance and the host key its console showed ("" until read): a console
        shows the key once, in the instance's first boot, so it is kept from then on."""
        found = _json_object(
            self.console_keys_file, "host keys", "remove it and run buildfleet up to read the keys again"
        )
        return {} if found is None else found

    def save_console_keys(self, entries: Mapping[str, Mapping[str, str]]) -> None:
        self.ensure()
        self.console_keys_file.write_text(json.dumps(dict(entries), indent=2, sort_keys=True) + "\n")

    @property
    def published_identity_file(self) -> Path:
        """The digest of the fleet identity the stack last kept (aws), so a command that changed
        the identity here knows to hand it over, and one that did not asks the stack nothing."""
        return self.root / "stack-identity.sha256"

    def published_identity(self) -> str:
        path = self.published_identity_file
        return path.read_text().strip() if path.exists() else ""

    def save_published_identity(self, digest: str) -> None:
        self.published_identity_file.write_text(digest + "\n")

    @property
    def lock_path(self) -> Path:
        digest = hashlib.sha256(str(self.root.absolute()).encode()).hexdigest()[:16]
        return runtime_dir() / "locks" / f"{self.root.name}-{digest}.lock"

    @contextmanager
    def locked(self, command: str) -> Iterator[None]:
        """One changing command per fleet at a time: a second ``up`` (or configure, down) while
        one runs is refused at once, naming the one that holds the fleet. The lock lives outside
        the state directory, so a refused command leaves that directory exactly as it was."""
        path = self.lock_path
        private_dir(path.parent)
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another buildfleet command"
                raise BuildfleetError(
                    f"fleet {self.root.name!r} is busy: {holder} is changing it (lock {path}); "
                    "run this again when it has finished"
                ) from None
            try:
                handle.truncate(0)
                handle.write(f"buildfleet {command} (pid {os.getpid()})\n")
                handle.flush()
                yield
            finally:
                if not self.root.exists():  # taken down (or never made): no lock file stays behind
                    unlink_inside(path, path.parent)

    def known_host_keys(self) -> dict[tuple[str, int], str]:
        """The pinned keys, as ``write_known_hosts`` takes them."""
        entries = {}
        for line in self.known_hosts.read_text().splitlines() if self.known_hosts.exists() else []:
            name, _, key = line.partition(" ")
            if name.startswith("["):
                address, _, port = name[1:].partition("]:")
                entries[(address, int(port))] = key.strip()
            elif name:
                entries[(name, 22)] = key.strip()
        return entries

    def remove(self) -> bool:
        """Delete this fleet's state directory, and nothing else; False if there was none."""
        if not FLEET_NAME.fullmatch(self.root.name):
            raise UnsafeRemoval(f"refusing to remove {self.root}: {self.root.name!r} is not a fleet name")
        return remove_owned_tree(self.root, self.root.parent, STATE_ENTRIES)

    def save_inventory(self, inventory: Inventory) -> None:
        self.ensure()
        self.inventory_file.write_text(json.dumps(inventory.to_dict(), indent=2) + "\n")

    def load_inventory(self, declared: Declared | None = None) -> Inventory | None:
        """``declared``: the features of an inventory saved before they were recorded (see Inventory)."""
        if not self.inventory_file.exists():
            return None
        try:
            return Inventory.from_dict(json.loads(self.inventory_file.read_text()), declared)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigError(
                f"{self.inventory_file} is damaged ({type(error).__name__}: {error}); buildfleet up rewrites it"
            ) from None
