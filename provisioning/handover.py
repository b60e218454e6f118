"""A fleet's identity sealed for another operator: ``state export`` / ``state import``.

What makes a fleet one fleet is in its state directory: the fleet CA and every certificate it
issued (consumers' CAs too), the SSH key its hosts accept and the keys they are pinned by, the
settings ``up`` used and the inventory. A teammate who has those runs ``configure`` and changes
nothing; one who has not would mint a second CA and lock the first operator out. The bundle
carries exactly those files (never what is one operator's own: builders, a registry's or a
VM's files) as a tar archive sealed with AES-256-GCM under a key scrypt derives from a
passphrase, so the file can travel by any channel the team has.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import os
import secrets
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from provisioning.errors import BuildfleetError, ConfigError
from provisioning.private import private_dir, write_private
from provisioning.removal import unlink_inside
from provisioning.state import FleetState

MAGIC = b"buildfleet-state-1\n"
SALT_BYTES, NONCE_BYTES = 16, 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # ~32 MiB and a fraction of a second per try: costly to guess
MIN_PASSPHRASE = 12
STACK_PREFIX = "buildfleet-identity-1:"
# Linux takes one argument or environment string of 128 KiB at most (MAX_ARG_STRLEN): the CLI gets
# the value as an argument, and the program gets all of the stack's config in one variable
STACK_LIMIT = 96 * 1024

# The fleet's identity, relative to its state directory: files, or directories taken whole.
PUBLIC = (
    "target",
    "aws-stack",
    "settings.json",
    "inventory.json",
    "ssh/id_ed25519.pub",
    "ssh/known_hosts",
    "ssh/console-keys.json",  # AWS host keys read from the consoles, which show them only once
)
IDENTITY_FILES = (*PUBLIC, "ssh/id_ed25519")
IDENTITY_DIRS = ("tls",)  # the fleet CA, a rotation's previous one, hosts', the client's and consumers' files


def identity_files(state: FleetState) -> list[str]:
    """The fleet's identity files that exist, relative to its state directory, sorted."""
    root = state.root
    found = [name for name in IDENTITY_FILES if (root / name).is_file()]
    for directory in IDENTITY_DIRS:
        found += [
            p.relative_to(root).as_posix()
            for p in (root / directory).rglob("*")
            if p.is_file() and not p.is_symlink() and not p.name.startswith(".")  # .NAME.new: a write cut short
        ]
    return sorted(found)


def _key(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())


def pack(state: FleetState) -> bytes:
    """The fleet's identity files as one gzipped tar archive, unencrypted: ``seal`` encrypts it
    for a file, a Pulumi stack's secrets provider for the stack (refused for a fleet with no CA yet)."""
    names = identity_files(state)
    if not any(name.startswith("tls/ca/") for name in names):
        raise BuildfleetError(f"fleet {state.root.name!r} has no fleet CA in {state.root}: nothing to hand over yet")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name in names:
            data = (state.root / name).read_bytes()
            info = tarfile.TarInfo(name)  # mtime 0, no owner: the same files make the same bytes
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(archive.getvalue(), mtime=0)  # so an unchanged identity is an unchanged stack value


def unpack(archive: bytes) -> dict[str, bytes]:
    """The files an archive of ``pack``'s holds, by their place in the state directory."""
    try:
        return dict(_members(archive))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ConfigError(f"the fleet identity is no archive buildfleet wrote: {error}") from None


def to_stack(state: FleetState) -> str:
    """The identity as a Pulumi config value: text, and small (a few KB; the CLI takes it as an argument)."""
    value = STACK_PREFIX + base64.b64encode(pack(state)).decode()
    if len(value) > STACK_LIMIT:
        raise BuildfleetError(
            f"fleet {state.root.name!r}'s identity is {len(value) // 1024} KB, more than the Pulumi CLI takes as "
            f"one argument ({STACK_LIMIT // 1024} KB): revoke and remove consumers no longer used (buildfleet client)"
        )
    return value


def digest(value: str) -> str:
    """What tells two stack values apart (kept beside the state: the value itself is secret)."""
    return hashlib.sha256(value.encode()).hexdigest()


def from_stack(value: str) -> dict[str, bytes]:
    """The files a stack's ``fleetIdentity`` holds (see to_stack)."""
    if not value.startswith(STACK_PREFIX):
        raise ConfigError("the stack's fleetIdentity is not one buildfleet wrote (it does not begin as to_stack's)")
    try:
        archive = base64.b64decode(value[len(STACK_PREFIX) :], validate=True)
    except binascii.Error as error:
        raise ConfigError(f"the stack's fleetIdentity is not valid base64: {error}") from None
    return unpack(archive)


def seal(state: FleetState, passphrase: str) -> bytes:
    """The fleet's identity as one sealed bundle (refused for a fleet that has none yet)."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise ConfigError(f"the passphrase is shorter than {MIN_PASSPHRASE} characters: choose a longer one")
    archive = pack(state)
    salt, nonce = secrets.token_bytes(SALT_BYTES), secrets.token_bytes(NONCE_BYTES)
    return MAGIC + salt + nonce + AESGCM(_key(passphrase, salt)).encrypt(nonce, archive, MAGIC)


def unseal(bundle: bytes, passphrase: str) -> dict[str, bytes]:
    """The files a bundle holds, by their place in the state directory; a wrong passphrase or a
    changed byte is refused before anything is written."""
    if not bundle.startswith(MAGIC):
        raise ConfigError("not a buildfleet state bundle (it does not begin as buildfleet state export writes one)")
    body = bundle[len(MAGIC) :]
    salt, nonce, sealed = (
        body[:SALT_BYTES],
        body[SALT_BYTES : SALT_BYTES + NONCE_BYTES],
        body[SALT_BYTES + NONCE_BYTES :],
    )
    try:
        plain = AESGCM(_key(passphrase, salt)).decrypt(nonce, sealed, MAGIC)
    except InvalidTag:
        raise ConfigError("the bundle does not open with this passphrase (or it was changed since export)") from None
    return unpack(plain)


def _members(plain: bytes) -> Iterator[tuple[str, bytes]]:
    """Each regular file of the archive whose name is an identity path: anything else (a link,
    an absolute path, ``..``, a file of no identity) refuses the whole bundle."""
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = PurePosixPath(member.name)
            wanted = member.name in IDENTITY_FILES or (
                len(name.parts) > 1 and name.parts[0] in IDENTITY_DIRS and ".." not in name.parts
            )
            if not member.isfile() or name.is_absolute() or not wanted:
                raise ConfigError(f"the bundle holds {member.name!r}, which is no part of a fleet's identity: refused")
            extracted = tar.extractfile(member)
            assert extracted is not None  # a regular file
            yield member.name, extracted.read()


def require_new(state: FleetState) -> None:
    """An operator's own fleet of that name is never overwritten by a teammate's identity."""
    root = state.root
    if root.exists() and any(root.iterdir()):
        raise BuildfleetError(
            f"fleet {root.name!r} already has state here ({root}): take it in under another name "
            "(--fleet NAME), or take the fleet down here first"
        )


def install(state: FleetState, files: dict[str, bytes]) -> list[str]:
    """The bundle's files written into a fleet state directory that does not exist yet (an
    operator's own fleet of that name is never overwritten); what was written."""
    require_new(state)
    root = state.root
    inside = root.resolve() if root.exists() else root.parent.resolve() / root.name
    _write(inside, files)
    return sorted(files)


def replace_identity(state: FleetState, files: dict[str, bytes]) -> list[str]:
    """The fleet's identity files here made exactly ``files`` (a newer copy of the same fleet's,
    which the caller checked): identity files it lacks are removed (a revoked consumer's, a
    retired CA's), the rest written over; nothing else of the state is touched. What was written."""
    root = state.root.resolve()
    _write(root, files)
    for name in identity_files(state):
        if name not in files:
            unlink_inside(root / name, root)
    return sorted(files)


def _write(inside: Path, files: dict[str, bytes]) -> None:
    """Every file checked to land inside the state directory before the first is written; each
    written whole (a new file moved into place), public ones readable, the rest the owner's only."""
    for name in sorted(files):
        if not (inside / name).resolve().is_relative_to(inside):  # a member name can never climb out
            raise ConfigError(f"the fleet identity's {name!r} would be written outside {inside}: refused")
    private_dir(inside)
    for name, data in sorted(files.items()):
        path = inside / name
        private_dir(path.parent)
        staged = path.with_name(f".{path.name}.new")
        write_private(staged, data)
        if name in PUBLIC:
            os.chmod(staged, 0o644)
        staged.replace(path)


def read_bundle(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
