"""How commands reach a host: one small interface, an SSH implementation on Fabric.

Host keys are verified against the fleet's known_hosts (RejectPolicy): a host whose key
is not pinned is refused, never added on first sight.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import paramiko
from fabric import Connection

from provisioning.command import CommandResult
from provisioning.errors import BuildfleetError
from provisioning.inventory import InventoryHost
from provisioning.state import FleetState

# paramiko logs every refused or reset connection with a traceback on its transport thread;
# buildfleet reports each failure itself (ConnectionFailed, retried while a host boots).
logging.getLogger("paramiko").addHandler(logging.NullHandler())
# What paramiko raises when the channel to a host dies mid-command or mid-transfer.
CHANNEL_ERRORS = (paramiko.SSHException, EOFError, OSError)


class ConnectionFailed(BuildfleetError):
    """The host could not be reached or authenticated; the message says which and why."""


class ConnectionLost(ConnectionFailed):
    """The connection dropped while a command ran (the host stopped, rebooted or went off the network)."""


class SudoNeedsPassword(BuildfleetError):
    """sudo wants a password from the SSH user; buildfleet runs ``sudo -n`` and never types one."""


class HostKeyRejected(ConnectionFailed):
    """The host showed a key that is not the pinned one: never retried, never accepted."""


class Transport(Protocol):
    host: InventoryHost

    def run(self, argv: Sequence[str], sudo: bool = False, timeout: float | None = None) -> CommandResult: ...

    def put(self, local: Path, remote: str) -> None: ...

    def put_bytes(self, data: bytes, remote: str) -> None: ...

    def close(self) -> None: ...


class SSHTransport:
    """Fabric connection to one inventory host, keyed and pinned by the fleet's files."""

    def __init__(
        self,
        host: InventoryHost,
        key_file: Path,
        known_hosts: Path,
        connect_timeout: float = 15,
        agent: bool = False,
    ):
        self.host = host
        keys = {"key_filename": str(key_file), "look_for_keys": False, "allow_agent": agent}
        # A jump host (ProxyJump) is pinned and keyed exactly as the host itself: SSH to the host
        # then runs through a direct-tcpip channel the jump host opens.
        self._gateway = None
        if host.ssh_jump:
            user, address, port = split_jump(host.ssh_jump)
            self._gateway = _pinned(
                Connection(address, user=user, port=port, connect_timeout=connect_timeout, connect_kwargs=dict(keys)),
                known_hosts,
            )
        self._connection = _pinned(
            Connection(
                host.address,
                user=host.ssh_user,
                port=host.ssh_port,
                connect_timeout=connect_timeout,
                connect_kwargs=keys,
                gateway=self._gateway,
            ),
            known_hosts,
        )

    @property
    def _where(self) -> str:
        through = f" via {self.host.ssh_jump}" if self.host.ssh_jump else ""
        return f"{self.host.name} ({self.host.ssh_user}@{self.host.address}:{self.host.ssh_port}{through})"

    def _open(self) -> None:
        if self._connection.is_connected:
            return
        where = self._where
        try:
            self._connection.open()
        except paramiko.BadHostKeyException as error:
            raise HostKeyRejected(f"{where}: host key differs from the pinned one: {error}") from None
        except paramiko.SSHException as error:
            if "not found in known_hosts" in str(error):
                raise HostKeyRejected(f"{where}: host key is not pinned in known_hosts: {error}") from None
            raise ConnectionFailed(f"{where}: SSH refused: {error} (host keys are pinned in known_hosts)") from None
        except OSError as error:
            raise ConnectionFailed(f"{where}: cannot connect: {error}") from None

    def run(self, argv: Sequence[str], sudo: bool = False, timeout: float | None = None) -> CommandResult:
        self._open()
        command = shlex.join(argv)
        if sudo and self.host.ssh_user != "root":
            command = shlex.join(["sudo", "-n", "--", *argv])
        try:
            result = self._connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except CHANNEL_ERRORS as error:
            raise self._lost(command, f": {error}") from None
        # paramiko reports -1 when the channel closed without an exit status: nothing exited.
        if result.exited == -1:
            raise self._lost(command, "")
        if command.startswith("sudo -n ") and result.exited == 1 and "a password is required" in result.stderr:
            raise SudoNeedsPassword(
                f"{self._where}: sudo asks {self.host.ssh_user} for a password; buildfleet needs passwordless "
                f"sudo there (a sudoers line '{self.host.ssh_user} ALL=(ALL) NOPASSWD:ALL', as cloud images have)"
            )
        return CommandResult(command, result.exited, result.stdout, result.stderr)

    def _lost(self, command: str, why: str) -> ConnectionLost:
        shown = command if len(command) <= 120 else command[:117] + "..."
        return ConnectionLost(f"{self._where}: the connection to the host was lost while running {shown}{why}")

    def put(self, local: Path, remote: str) -> None:
        self._open()
        try:
            self._connection.put(str(local), remote)
        except CHANNEL_ERRORS as error:
            raise self._lost(f"sftp put {remote}", f": {error}") from None

    def put_bytes(self, data: bytes, remote: str) -> None:
        self._open()
        try:
            sftp = self._connection.sftp()
            with sftp.file(remote, "wb") as handle:
                handle.chmod(0o600)  # before any byte is written: it may be a private key
                handle.write(data)
        except CHANNEL_ERRORS as error:
            raise self._lost(f"sftp write {remote}", f": {error}") from None

    def close(self) -> None:
        self._connection.close()
        if self._gateway is not None:
            self._gateway.close()


def _pinned(connection: Connection, known_hosts: Path) -> Connection:
    """Host keys only from the fleet's known_hosts; anything else is refused, never added."""
    client = connection.client
    client.get_host_keys().clear()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return connection


def split_jump(jump: str) -> tuple[str, str, int]:
    """``user@address:port`` as ProxyJump writes it (user and port optional: root, 22)."""
    user, _, rest = jump.rpartition("@")
    address, _, port = rest.partition(":")
    return user or "root", address, int(port or 22)


def connect(host: InventoryHost, state: FleetState) -> SSHTransport:
    """A transport keyed by the host's own key (static hosts, which may also use the operator's
    ssh-agent) or the fleet's, pinned by the fleet."""
    key = Path(host.ssh_key).expanduser() if host.ssh_key else state.ssh_key
    return SSHTransport(host, key, state.known_hosts, agent=bool(host.ssh_key))
