"""Whom a state bundle is sealed for, and the key that opens it: age recipients and identities
from the text a team already has -- SSH public keys (an ``id_ed25519.pub``, a
``github.com/USER.keys`` file), age's own ``age1...`` keys -- and the matching private key.

age (https://age-encryption.org/v1) rather than a format of our own: an SSH key needs no second
secret to hand over, and ``age -d -i ~/.ssh/id_ed25519 FILE`` opens the same file. pyrage binds
rage, age's Rust implementation; a passphrase-protected SSH key is opened with ``cryptography``
first, as rage takes only unprotected ones.
"""

from __future__ import annotations

from collections.abc import Callable

import pyrage
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pyrage import ssh, x25519

from provisioning.errors import ConfigError

MAGIC = b"age-encryption.org/v1\n"
SSH_TYPES = ("ssh-ed25519", "ssh-rsa")  # what age seals for; other SSH keys (ECDSA, security keys) it cannot

Recipient = ssh.Recipient | x25519.Recipient
Identity = ssh.Identity | x25519.Identity


def parse_recipients(text: str, source: str) -> list[Recipient]:
    """Each key ``text`` names, a line each ('#' comments and blank lines skipped); a line that is
    none refuses the whole list, naming it, so a bundle is never sealed for fewer than were meant."""
    found: list[Recipient] = []
    numbered = "\n" in text.strip()  # a file's lines are named by number, one key by its source alone
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found.append(_recipient(line, f"{source}:{number}" if numbered else source))
    if not found:
        raise ConfigError(f"{source} names no key: an SSH public key ({', '.join(SSH_TYPES)}) or an age1... key")
    return found


def _recipient(line: str, where: str) -> Recipient:
    kind = line.split(maxsplit=1)[0]
    try:
        if kind.startswith("age1"):
            return x25519.Recipient.from_str(kind)
        if kind in SSH_TYPES:
            return ssh.Recipient.from_str(line)
    except pyrage.RecipientError as error:
        raise ConfigError(f"{where}: not a valid {kind} key ({error})") from None
    raise ConfigError(
        f"{where}: {kind[:40]!r} is no key age seals for: an SSH public key ({', '.join(SSH_TYPES)}) or an age1... key"
    )


def parse_identity(data: bytes, source: str, ask: Callable[[], str]) -> list[Identity]:
    """The private keys a file holds: an OpenSSH (or PEM) private key, ``ask``-ing its passphrase
    when it has one, or age's identity file (``AGE-SECRET-KEY-1...`` lines)."""
    text = data.decode(errors="replace")
    if "AGE-SECRET-KEY-" in text:
        keys = [line.strip() for line in text.splitlines() if line.strip().startswith("AGE-SECRET-KEY-")]
        try:
            return [x25519.Identity.from_str(key) for key in keys]
        except pyrage.IdentityError as error:
            raise ConfigError(f"{source}: not a valid age identity ({error})") from None
    if "PRIVATE KEY-----" not in text:
        raise ConfigError(f"{source} is no private key: an SSH private key (ed25519, RSA) or an age identity file")
    return [ssh.Identity.from_buffer(_unprotected(data, source, ask))]


def _load(data: bytes, password: bytes | None) -> PrivateKeyTypes:
    if b"OPENSSH PRIVATE KEY" in data:
        return serialization.load_ssh_private_key(data, password)
    return serialization.load_pem_private_key(data, password)


def _unprotected(data: bytes, source: str, ask: Callable[[], str]) -> bytes:
    """The SSH private key without its passphrase, in memory only (rage reads no protected key)."""
    try:
        key = _load(data, None)
    except TypeError:  # protected: its passphrase, asked once
        try:
            key = _load(data, ask().encode())
        except ValueError:
            raise ConfigError(f"{source}: the passphrase does not open this key") from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ConfigError(f"{source}: not a private key cryptography reads ({error})") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        raise ConfigError(f"{source}: not an ed25519 or RSA key, the only SSH keys age opens bundles with")
    openssh = serialization.PrivateFormat.OpenSSH
    return key.private_bytes(serialization.Encoding.PEM, openssh, serialization.NoEncryption())


def seal_for(data: bytes, recipients: list[Recipient]) -> bytes:
    """``data`` as an age file any one of ``recipients`` opens."""
    return pyrage.encrypt(data, recipients)


def open_with(bundle: bytes, identities: list[Identity], source: str) -> bytes:
    """What an age file holds, opened with ``identities``; one sealed for others, or changed since,
    is refused (nothing read from it)."""
    try:
        return pyrage.decrypt(bundle, identities)
    except pyrage.DecryptError as error:
        if "No matching keys" in str(error):
            raise ConfigError(
                f"the bundle was sealed for other keys than {source}'s: nothing was written "
                "(another key of yours: --identity FILE)"
            ) from None
        raise ConfigError(f"the bundle does not open with {source} (it was changed since export: {error})") from None
