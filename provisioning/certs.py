"""The fleet's mTLS material for buildkitd: one CA, a server cert per host, a client cert.

Made with ``cryptography`` (EC P-256, as shown to work with buildkitd here). Files are
kept in the fleet's state directory and reused, so a re-run writes identical bytes and
no host restarts buildkitd for nothing. A server cert is remade only when the names it
must carry change.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.checks import Check
from provisioning.errors import BuildfleetError
from provisioning.exchange.service import sign_ca, sign_for
from provisioning.private import write_private
from provisioning.removal import unlink_inside

VALID_DAYS = 825
TRUST_FILE = "trust.pem"  # the CAs every client and host trusts: the fleet's, and during a rotation the one it replaces
RETIRED = "retired"  # in ca-previous/: the rotation's last phase has begun, the old CA is trusted no more


@dataclass(frozen=True)
class TLSFiles:
    """The fleet CA and the client certificate and key a client (buildx, a CI job, a wait) presents."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_state(cls, tls_dir: Path) -> TLSFiles:
        """The client's files in ``<state>/tls``; ``ca`` is what it trusts (the CAs of ``trust.pem``)."""
        FleetCA(tls_dir).write_trust()  # a state directory from before trust.pem has only ca/cert.pem
        return cls(tls_dir / TRUST_FILE, tls_dir / "client" / "cert.pem", tls_dir / "client" / "key.pem")


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "buildfleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_pem(directory: Path) -> Pem | None:
    """The certificate and key kept in ``directory``, if both are there."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return Pem(cert.read_bytes(), key.read_bytes())
    return None


def save_pem(directory: Path, pem: Pem) -> Pem:
    """``pem`` kept in ``directory``: the key private (0600 in a 0700 directory)."""
    write_private(directory / "key.pem", pem.key)  # makes the directory 0700
    (directory / "cert.pem").write_bytes(pem.cert)
    return pem


def make_ca(label: str) -> Pem:
    """A CA named apart from every earlier one (``label``, the day, a random tag), with a key
    identifier: peers that trust several CAs (a rotation's two, the consumers') find the issuer
    by name and key identifier, and OpenSSL (HAProxy's checks) tries only the first that matches."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = _name(f"{label} {now:%Y-%m-%d} {secrets.token_hex(4)}")
    cert = sign_ca(key, name, now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS))
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: Pem,
    common_name: str,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName] = (),
    days: float = VALID_DAYS,
    now: datetime.datetime | None = None,
) -> Pem:
    """A leaf certificate for ``common_name`` signed by ``ca``, for ``usage`` (server or client),
    with a key made here."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_for(ca, key.public_key(), common_name, usage, sans, days, now)
    return Pem(cert, _key_pem(key))


def issue_for(
    ca: Pem,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName] = (),
    days: float = VALID_DAYS,
    now: datetime.datetime | None = None,
) -> bytes:
    """A certificate for a key held elsewhere (a CI job's, from its CSR): its PEM. Signed as the
    token exchange signs on its host: one signer for both."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise BuildfleetError(f"the key of {ca_cert.subject.rfc4514_string()} is not the EC key buildfleet made")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    return sign_for(ca_cert, ca_key, public_key, common_name, usage, not_before, not_after, sans)


@dataclass(frozen=True)
class FleetCA:
    directory: Path  # <state>/tls

    def ca(self) -> Pem:
        existing = load_pem(self.directory / "ca")
        return existing or self._new_ca()

    def made(self) -> bool:
        """Whether the fleet has its CA yet (ca() makes one when it has not)."""
        return (self.directory / "ca" / "cert.pem").exists()

    # --- rotation (rotate-certs): a new CA without a moment when a client and a host
    # disagree. Phases, each safe to run again: begin (the new CA is made; everyone trusts
    # old and new; configure gives each host a server certificate of the new one), switch the
    # client to a certificate of the new CA, retire (the old CA trusted no more; configure
    # again), end (the old CA removed).

    @property
    def previous_dir(self) -> Path:
        return self.directory / "ca-previous"

    def rotating(self) -> bool:
        return (self.previous_dir / "cert.pem").exists()

    def retiring(self) -> bool:
        return (self.previous_dir / RETIRED).exists()

    def begin_rotation(self) -> bool:
        """The current CA kept as the previous one and a new CA made; False when a rotation
        is already under way (it goes on from where it stopped)."""
        if self.rotating():
            return False
        current = self.ca()
        save_pem(self.previous_dir, current)
        self._new_ca()
        return True

    def switch_client(self) -> Pem:
        """The client's certificate from the current CA (new, unless it already is)."""
        client = self.client()
        return client if issued_by_any(client.cert, self.ca().cert) else self._new_client()

    def retire_previous(self) -> None:
        """From now on only the current CA is trusted (trust.pem, and each host at its next configure)."""
        if self.rotating():
            (self.previous_dir / RETIRED).write_text("the previous CA is no longer trusted\n")
        self.write_trust()

    def end_rotation(self) -> None:
        """The previous CA's files removed, once every host trusts the current one alone."""
        for name in ("cert.pem", "key.pem", RETIRED):
            unlink_inside(self.previous_dir / name, self.previous_dir)
        if self.previous_dir.exists():
            self.previous_dir.rmdir()

    def trust(self) -> bytes:
        """What clients and hosts trust: the current CA, and the previous one while a rotation
        has not retired it."""
        previous = load_pem(self.previous_dir) if self.rotating() and not self.retiring() else None
        return self.ca().cert + (previous.cert if previous else b"")

    def held(self) -> bytes:
        """Every CA this state holds (the previous one until a rotation ends, retired or not): a
        host serving a certificate of none of them is another copy of the fleet's (fleet_step)."""
        previous = load_pem(self.previous_dir) if self.rotating() else None
        return self.ca().cert + (previous.cert if previous else b"")

    def write_trust(self) -> None:
        """``trust.pem`` as ``trust`` has it, rewritten only when that differs (once a CA exists)."""
        if not self.made():
            return
        path, wanted = self.directory / TRUST_FILE, self.trust()
        if not path.exists() or path.read_bytes() != wanted:
            path.write_bytes(wanted)

    def _new_ca(self) -> Pem:
        made = save_pem(self.directory / "ca", make_ca("buildfleet CA"))
        self.write_trust()
        return made

    def _issue(self, common_name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> Pem:
        return issue(self.ca(), common_name, usage, sans)

    def server(self, host: str, names: Iterable[str]) -> Pem:
        """Server cert for ``host`` valid for every address/name the operator may dial."""
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys(n for n in names if n):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        directory = self.directory / "hosts" / host
        existing = load_pem(directory)
        if existing and _sans(existing.cert) == set(sans) and issued_by_any(existing.cert, self.ca().cert):
            return existing
        return save_pem(directory, self._issue(host, ExtendedKeyUsageOID.SERVER_AUTH, sans))

    def client(self) -> Pem:
        """The certificate buildx (the operator, or a CI job) presents to every node."""
        return load_pem(self.directory / "client") or self._new_client()

    def _new_client(self) -> Pem:
        return save_pem(
            self.directory / "client", self._issue("buildfleet client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
        )


def _issued_by_cert(cert_pem: bytes, ca: x509.Certificate) -> bool:
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issued_by_any(cert_pem: bytes, bundle: bytes) -> bool:
    """Whether a certificate was signed by one of the CAs in a PEM bundle (a host's served one
    against the CAs this state holds: another operator's fleet is never taken over)."""
    try:
        cas = x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return False
    return any(_issued_by_cert(cert_pem, ca) for ca in cas)


def _sans(cert_pem: bytes) -> set[x509.GeneralName]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()


RENEW_DAYS = 30  # doctor warns this long before a certificate expires


@dataclass(frozen=True)
class CertStatus:
    """One certificate of the fleet as doctor shows it: when it expires, and who issued it."""

    name: str  # ca, client, or hosts/<host>
    not_after: datetime.datetime
    days_left: int
    issued_by_ca: bool

    @property
    def ok(self) -> bool:
        return self.issued_by_ca and self.days_left >= RENEW_DAYS

    def describe(self) -> str:
        issuer = "" if self.issued_by_ca else ", not issued by the fleet's CA"
        return f"{self.name} expires {self.not_after:%Y-%m-%d} ({self.days_left} days){issuer}"


def certificate_status(directory: Path, now: datetime.datetime) -> list[CertStatus]:
    """Every certificate in ``<state>/tls``: expiry, and whether the fleet's CA signed it."""
    ca_file = directory / "ca" / "cert.pem"
    if not ca_file.exists():
        return []
    ca = FleetCA(directory)
    trusted = x509.load_pem_x509_certificates(ca.trust())  # a rotation's old CA too
    found = []
    for cert_file in [ca_file, directory / "client" / "cert.pem", *sorted((directory / "hosts").glob("*/cert.pem"))]:
        if not cert_file.exists():
            continue
        pem = cert_file.read_bytes()
        not_after = x509.load_pem_x509_certificate(pem).not_valid_after_utc
        name = str(cert_file.parent.relative_to(directory))
        issued = any(_issued_by_cert(pem, authority) for authority in trusted)
        found.append(CertStatus(name, not_after, (not_after - now).days, issued))
    return found


def certificate_checks(directory: Path, now: datetime.datetime) -> list[Check]:
    """doctor's view of ``certificate_status``: each certificate's expiry and issuer, with how to renew it."""
    checks = []
    for cert in certificate_status(directory, now):
        if cert.name.startswith("hosts/"):
            fix = (
                f"remove {directory / cert.name}, then buildfleet configure (issues it again, restarts that buildkitd)"
            )
        else:  # the CA or the client: every certificate goes with it
            fix = f"remove {directory}, then buildfleet configure, buildfleet builder rm and buildfleet builder create"
        node = cert.name.removeprefix("hosts/")  # ca, client, or the host's name
        checks.append(Check(node, "certificate", cert.ok, cert.describe(), "" if cert.ok else fix))
    return checks
