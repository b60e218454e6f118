"""The fleet's mTLS material for buildkitd: one CA, a server cert per host, a client cert.

Made with ``cryptography`` (EC P-256, as shown to work with buildkitd here). Files are
kept in the fleet's state directory and reused, so a re-run writes identical bytes and
no host restarts buildkitd for nothing. A server cert is remade only when the names it
must carry change.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.checks import Check
from provisioning.errors import BuildfleetError
from provisioning.private import write_private

VALID_DAYS = 825


@dataclass(frozen=True)
class TLSFiles:
    """The fleet CA and the client certificate and key a client (buildx, a CI job, a wait) presents."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_state(cls, tls_dir: Path) -> TLSFiles:
        return cls(tls_dir / "ca" / "cert.pem", tls_dir / "client" / "cert.pem", tls_dir / "client" / "key.pem")


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


def _load(directory: Path) -> Pem | None:
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return Pem(cert.read_bytes(), key.read_bytes())
    return None


def _save(directory: Path, pem: Pem) -> Pem:
    write_private(directory / "key.pem", pem.key)  # makes the directory 0700
    (directory / "cert.pem").write_bytes(pem.cert)
    return pem


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=VALID_DAYS)
    )


@dataclass(frozen=True)
class FleetCA:
    directory: Path  # <state>/tls

    def ca(self) -> Pem:
        existing = _load(self.directory / "ca")
        return existing or self._new_ca()

    def renew_authority(self) -> Pem:
        """A new CA and client certificate in place of the old ones (rotate-certs): every
        server certificate the old CA signed is then issued again by the next configure."""
        ca = self._new_ca()
        self._new_client()
        return ca

    def _new_ca(self) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _validity(
            x509.CertificateBuilder()
            .subject_name(_name("buildfleet CA"))
            .issuer_name(_name("buildfleet CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        cert = builder.sign(key, hashes.SHA256())
        return _save(self.directory / "ca", Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)))

    def _issue(self, common_name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> Pem:
        ca = self.ca()
        ca_cert = x509.load_pem_x509_certificate(ca.cert)
        ca_key = serialization.load_pem_private_key(ca.key, None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise BuildfleetError(f"the fleet CA's key in {self.directory / 'ca'} is not the EC key buildfleet made")
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _validity(
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def server(self, host: str, names: Iterable[str]) -> Pem:
        """Server cert for ``host`` valid for every address/name the operator may dial."""
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys(n for n in names if n):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        directory = self.directory / "hosts" / host
        existing = _load(directory)
        if existing and _sans(existing.cert) == set(sans) and _issued_by(existing.cert, self.ca().cert):
            return existing
        return _save(directory, self._issue(host, ExtendedKeyUsageOID.SERVER_AUTH, sans))

    def client(self) -> Pem:
        """The certificate buildx (the operator, or a CI job) presents to every node."""
        return _load(self.directory / "client") or self._new_client()

    def _new_client(self) -> Pem:
        return _save(self.directory / "client", self._issue("buildfleet client", ExtendedKeyUsageOID.CLIENT_AUTH, []))


def _issued_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


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
    ca_pem = ca_file.read_bytes()
    found = []
    for cert_file in [ca_file, directory / "client" / "cert.pem", *sorted((directory / "hosts").glob("*/cert.pem"))]:
        if not cert_file.exists():
            continue
        pem = cert_file.read_bytes()
        not_after = x509.load_pem_x509_certificate(pem).not_valid_after_utc
        name = str(cert_file.parent.relative_to(directory))
        found.append(CertStatus(name, not_after, (not_after - now).days, _issued_by(pem, ca_pem)))
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
