"""A client credential per consumer (a CI system, a developer), each one revocable alone.

buildkitd checks client certificates against the CAs in its ``--tlscacert`` and knows no
revocation list. So each consumer's certificate is signed by an issuing CA of its own, and the
hosts trust the bundle of the fleet's CA and every active consumer's CA (configure rolls it
out, one host at a time, drained). Revoking a consumer removes its CA from the bundle and its
keys from this machine: after the next configure no host accepts anything it ever signed.
Renewing issues a new certificate under the same CA: the hosts need no change, nothing
restarts. What a consumer trusts of the hosts is the fleet's own CA (``trust.pem``), as the
builder does.

Layout, in ``<state>/tls/consumers/<name>/``: ``ca/`` (its issuing CA), ``cert.pem`` and
``key.pem`` (its client certificate), ``revoked`` once revoked (the certificate stays, for
``client list``; the keys go). A consumer whose CA lives elsewhere (the OIDC token exchange's,
made on its host) has only ``ca/cert.pem`` here: in the bundle like the others, revoked alike,
and renewed by retiring that CA (``retired/<sha256>.pem``) for its host to make a new one.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from provisioning.certs import TRUST_FILE, Pem, TLSFiles, issue, load_pem, make_ca, save_pem
from provisioning.errors import BuildfleetError
from provisioning.names import FLEET_NAME, check_client_name
from provisioning.removal import unlink_inside

CLIENT_DAYS = 90  # a consumer's certificate; renewed in place, its CA stays
REVOKED = "revoked"
RETIRED = "retired"  # an adopted consumer's CA certificates set aside for good, by their sha256


@dataclass(frozen=True)
class Consumer:
    name: str
    not_after: datetime.datetime
    revoked: bool

    def state(self, now: datetime.datetime) -> str:
        if self.revoked:
            return "revoked"
        return "expired" if self.not_after <= now else f"valid, {(self.not_after - now).days} days left"


@dataclass(frozen=True)
class Consumers:
    tls: Path  # <state>/tls

    @property
    def directory(self) -> Path:
        return self.tls / "consumers"

    def _dir(self, name: str) -> Path:
        return self.directory / check_client_name(name)

    def add(self, name: str, days: float = CLIENT_DAYS, now: datetime.datetime | None = None) -> TLSFiles:
        """A new consumer: its issuing CA and a client certificate of it. A name in use (or
        revoked: its certificates may still be out there) is refused."""
        directory = self._dir(name)
        if directory.exists():
            raise BuildfleetError(
                f"client {name!r} exists already"
                + (" (revoked: choose another name)" if (directory / REVOKED).exists() else ": renew it instead")
            )
        save_pem(directory / "ca", make_ca(f"buildfleet client CA {name}"))
        return self.renew(name, days, now)

    def renew(self, name: str, days: float = CLIENT_DAYS, now: datetime.datetime | None = None) -> TLSFiles:
        """A new certificate under the consumer's own CA: the hosts trust it already."""
        ca = self._active_ca(name)
        save_pem(
            self._dir(name), issue(ca, f"buildfleet client {name}", ExtendedKeyUsageOID.CLIENT_AUTH, days=days, now=now)
        )
        return self.files(name)

    def revoke(self, name: str) -> None:
        """Out of the bundle the hosts trust (at their next configure), its keys gone from here (an
        adopted CA's certificate stays: it is public, and what the exchange's host must not sign
        with again)."""
        directory = self._dir(name)
        if self.trust_of(name) is None:
            self._active_ca(name)  # the error naming what there is
        adopted = self.adopted(name)
        (directory / REVOKED).write_text("revoked: no host trusts its CA after the next configure\n")
        for path in (directory / "ca" / "key.pem", directory / "ca" / "cert.pem", directory / "key.pem"):
            if not (adopted and path.name == "cert.pem"):
                unlink_inside(path, directory)

    def adopted(self, name: str) -> bool:
        """Whether ``name``'s CA lives elsewhere (the token exchange's): its certificate alone is here."""
        ca = self._dir(name) / "ca"
        return (ca / "cert.pem").exists() and not (ca / "key.pem").exists()

    def retire(self, name: str) -> None:
        """An adopted consumer's CA set aside for good (revoked or not): it leaves the bundle, its
        host makes a new CA at the next configure, and that one is adopted in its place."""
        if not self.adopted(name):
            self._active_ca(name)  # made here: the error naming what there is
            raise BuildfleetError(f"client {name!r} was made here: renew gives it a new certificate instead")
        directory = self._dir(name)
        cert = (directory / "ca" / "cert.pem").read_bytes()
        retired = directory / RETIRED
        retired.mkdir(mode=0o700, exist_ok=True)
        (retired / f"{hashlib.sha256(cert).hexdigest()}.pem").write_bytes(cert)
        unlink_inside(directory / "ca" / "cert.pem", directory / "ca")
        unlink_inside(directory / REVOKED, directory)

    def retired(self, name: str) -> tuple[str, ...]:
        """The sha256 of each CA certificate of ``name`` retired: never adopted, nor signed with, again."""
        directory = self._dir(name) / RETIRED
        return tuple(sorted(p.stem for p in directory.glob("*.pem"))) if directory.is_dir() else ()

    def adopt(self, name: str, ca_cert: bytes) -> None:
        """A consumer whose issuing CA lives elsewhere (the token exchange's, whose key never
        leaves its host): its CA certificate joins the bundle. Refused for a revoked name and
        for a consumer made here (its certificates are not the exchange's)."""
        directory = self._dir(name)
        if (directory / REVOKED).exists():
            raise BuildfleetError(
                f"client {name!r} is revoked: its certificates may still be out there; use another name"
            )
        if (directory / "ca" / "key.pem").exists():
            raise BuildfleetError(f"client {name!r} was made here, not by the token exchange: use another name")
        if hashlib.sha256(ca_cert).hexdigest() in self.retired(name):
            raise BuildfleetError(
                f"client {name!r}: its host still has the CA that was retired; configure makes it a new one"
            )
        (directory / "ca").mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / "ca" / "cert.pem").write_bytes(ca_cert)

    def files(self, name: str) -> TLSFiles:
        """What the consumer uses: the fleet's trust for the hosts, its own certificate and key."""
        self._active_ca(name)
        directory = self._dir(name)
        return TLSFiles(self.tls / TRUST_FILE, directory / "cert.pem", directory / "key.pem")

    def trust(self) -> bytes:
        """The CAs of every consumer not revoked, for the hosts' bundle."""
        return b"".join(cert for cert in (self.trust_of(name) for name in self.names()) if cert is not None)

    def revoked(self, name: str) -> bool:
        return (self._dir(name) / REVOKED).exists()

    def trust_of(self, name: str) -> bytes | None:
        """The CA certificate of ``name`` the hosts trust, None when revoked or unknown."""
        cert = self._dir(name) / "ca" / "cert.pem"
        return None if (self._dir(name) / REVOKED).exists() or not cert.exists() else cert.read_bytes()

    def names(self) -> list[str]:
        if not self.directory.exists():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_dir() and FLEET_NAME.fullmatch(p.name))

    def listed(self) -> list[Consumer]:
        found = []
        for name in self.names():
            cert = self._dir(name) / "cert.pem"
            if not cert.exists():  # the token exchange's: its CA is what it has here
                cert = self._dir(name) / "ca" / "cert.pem"
            if cert.exists():
                not_after = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
                found.append(Consumer(name, not_after, (self._dir(name) / REVOKED).exists()))
        return found

    def _ca(self, name: str) -> Pem | None:
        directory = self._dir(name)
        return None if (directory / REVOKED).exists() else load_pem(directory / "ca")

    def _active_ca(self, name: str) -> Pem:
        ca = self._ca(name)
        if ca is None and self.trust_of(name) is not None:
            raise BuildfleetError(
                f"client {name!r} is the token exchange's: its CA's key stays on the exchange's host, which "
                "issues each job its own hour's certificate (client revoke ends them all)"
            )
        if ca is None:
            known = ", ".join(self.names()) or "none"
            state = "is revoked" if (self._dir(name) / REVOKED).exists() else "does not exist"
            raise BuildfleetError(f"client {name!r} {state} (clients: {known}; buildfleet client add NAME)")
        return ca
