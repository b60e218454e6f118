"""Every secret buildfleet keeps is readable by its owner only: keys 0600, their directories 0700."""

import os
import stat
from pathlib import Path

import pytest

from provisioning.certs import FleetCA
from provisioning.private import write_private
from provisioning.state import FleetState


def secrets_in(root: Path) -> list[Path]:
    """Every private key under ``root``, found by content (PEM or OpenSSH), not by name."""
    return [p for p in root.rglob("*") if p.is_file() and b"PRIVATE KEY-----" in p.read_bytes()[:64]]


def loose(root: Path) -> list[str]:
    """Secrets (or their directories, or the root) that someone else could read."""
    found = []
    for secret in secrets_in(root):
        for path, mode in ((secret, 0o600), (secret.parent, 0o700), (root, 0o700)):
            if stat.S_IMODE(path.stat().st_mode) != mode:
                found.append(f"{path.relative_to(root.parent)} is {oct(stat.S_IMODE(path.stat().st_mode))}")
    return found


@pytest.fixture
def open_umask():
    previous = os.umask(0)  # the loosest an operator's shell could have
    yield
    os.umask(previous)


def test_every_key_a_fleet_makes_is_0600_in_a_0700_directory_whatever_the_umask(tmp_path, open_umask):
    state = FleetState(tmp_path / "fleet")
    state.ensure_ssh_key()
    ca = FleetCA(state.root / "tls")
    ca.server("amd64-0", ["127.0.0.1"])
    ca.client()
    assert len(secrets_in(state.root)) == 4  # ssh, CA, server, client (a VM makes its own host key)
    assert loose(state.root) == []


def test_a_key_file_that_exists_with_a_loose_mode_is_tightened_when_written(tmp_path):
    key = tmp_path / "d" / "key.pem"
    key.parent.mkdir(mode=0o755)
    key.write_text("old")
    key.chmod(0o644)
    write_private(key, b"-----BEGIN PRIVATE KEY-----\n")
    assert (stat.S_IMODE(key.stat().st_mode), stat.S_IMODE(key.parent.stat().st_mode)) == (0o600, 0o700)


def test_a_key_is_never_written_through_a_symlink(tmp_path):
    (tmp_path / "elsewhere").write_text("canary")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "key.pem").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        write_private(tmp_path / "d" / "key.pem", b"secret")
    assert (tmp_path / "elsewhere").read_text() == "canary"
