"""The token exchange: a CI job trades its OIDC token for a client certificate valid for an hour,
so no long-lived secret sits in CI. It runs on a fleet host, as its own HTTPS service.

GitHub Actions (``permissions: id-token: write``) and CircleCI (``$CIRCLE_OIDC_TOKEN_V2``)
hand each job a JSON Web Token signed by the provider. A token is taken only when its
signature checks against the provider's published keys (its JWKS), its issuer is one the
operator trusts, its audience is the fleet's, it has not expired, every claim the operator
pinned (repository, ref, environment; CircleCI's project id) has an allowed value, and its
``jti`` was never exchanged before (replay; kept on disk, so a restart forgets none). The job
sends a certificate signing request: its private key never leaves the job. The certificate is
signed by the exchange's own issuing CA, whose key is made on the host and never leaves it;
only its certificate goes to the operator, into the hosts' trust bundle, so ``client revoke``
of the exchange ends the whole path at once. Every refusal names its reason.

This file is copied to the host and run there by the host's Python 3 with Debian's or Ubuntu's
python3-cryptography (38 and later) and python3-jwt (2.6 and later): it imports nothing of
buildfleet's. Token checks: PyJWT (``jwt.decode`` with ``require``; ``PyJWKClient`` for the
keys); claims: GitHub's "About security hardening with OpenID Connect", CircleCI's "OpenID
Connect tokens".
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import ssl
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:
    import jwt
except ImportError:  # buildfleet's core signs certificates with sign_for too; only the exchange needs PyJWT
    jwt = None  # type: ignore[assignment]

LIFETIME = datetime.timedelta(hours=1)
LEEWAY_SECONDS = 30  # clocks of the provider and the exchange may differ this much
ALGORITHMS = ["RS256", "ES256"]  # what GitHub and CircleCI sign with
REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]
GITHUB = "https://token.actions.githubusercontent.com"
PATH = "/v1/certificate"  # POST: Authorization: Bearer TOKEN, the CSR (PEM) as the body
MAX_BODY = 16384  # a CSR is well under 2 KB
CA_DAYS = 3650  # the issuing CA; what it signs lives an hour


class Refused(Exception):
    """A token the exchange does not take; the message is the reason, safe to show the job."""


@dataclass(frozen=True)
class TrustedIssuer:
    """One provider the operator trusts, and the claims its tokens must carry."""

    issuer: str  # the token's iss, exactly (GitHub's, or https://oidc.circleci.com/org/ORG_ID)
    audience: str  # the aud the job asked for (GitHub: the audience input; CircleCI: the org id)
    jwks_url: str  # where the provider publishes its signing keys
    claims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # claim -> allowed values

    def check_claims(self, claims: Mapping[str, Any]) -> None:
        for name, allowed in self.claims.items():
            value = claims.get(name)
            if value not in allowed:
                raise Refused(f"claim {name}={value!r} is not allowed (allowed: {', '.join(allowed)})")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustedIssuer:
        claims = {str(k): tuple(str(v) for v in values) for k, values in (data.get("claims") or {}).items()}
        return cls(str(data["issuer"]), str(data["audience"]), str(data["jwks_url"]), claims)

    def to_dict(self) -> dict[str, Any]:
        claims = {k: list(v) for k, v in self.claims.items()}
        return {"issuer": self.issuer, "audience": self.audience, "jwks_url": self.jwks_url, "claims": claims}


def sign_for(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: Any,
    common_name: str,
    usage: x509.ObjectIdentifier,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    sans: Sequence[x509.GeneralName] = (),
) -> bytes:
    """A leaf certificate (PEM) for a key held elsewhere, signed by ``ca_key``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def sign_ca(
    key: ec.EllipticCurvePrivateKey, subject: x509.Name, not_before: datetime.datetime, not_after: datetime.datetime
) -> x509.Certificate:
    """A self-signed issuing CA with a key identifier (peers that trust several CAs find the
    issuer by name and key identifier), signing leaves only (path length 0)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class IssuingCA:
    """The exchange's CA in ``directory`` (key.pem 0600, cert.pem): made here once, kept here."""

    directory: Path

    def ensure(self, name: str, retired: tuple[str, ...] = ()) -> bytes:
        """The CA's certificate (PEM), the CA made first when there is none, or made anew when the
        one here is ``retired`` (the sha256 of a certificate the operator revoked: never again)."""
        cert_file, key_file = self.directory / "cert.pem", self.directory / "key.pem"
        if cert_file.exists() and key_file.exists():
            current = cert_file.read_bytes()
            if hashlib.sha256(current).hexdigest() not in retired:
                return current
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = sign_ca(key, subject, now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=CA_DAYS))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_file.read_bytes()

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate((self.directory / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((self.directory / "key.pem").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.directory / 'key.pem'} is not an EC key")
        return cert, key


@dataclass
class TokenExchange:
    issuers: Sequence[TrustedIssuer]
    ca: IssuingCA
    lifetime: datetime.timedelta = LIFETIME
    seen_file: Path | None = None  # the jti of every token exchanged and not yet expired, kept across restarts
    _exchanged: dict[str, float] = field(default_factory=dict, repr=False)  # jti -> its token's exp
    _keys: dict[str, jwt.PyJWKClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if jwt is None:
            raise RuntimeError("the token exchange needs PyJWT: apt install python3-jwt (or buildfleet[oidc])")
        if self.seen_file is not None and self.seen_file.exists():
            self._exchanged = {str(k): float(v) for k, v in json.loads(self.seen_file.read_text()).items()}

    def exchange(self, token: str, csr_pem: bytes, now: datetime.datetime | None = None) -> tuple[bytes, dict]:
        """The certificate (PEM) for the CSR's key and the token's claims, or Refused with the reason."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        trusted = self._issuer_of(token)
        claims = self._verified(token, trusted, now)
        trusted.check_claims(claims)
        request = _request(csr_pem)
        self._once(str(claims["jti"]), float(claims["exp"]), now)
        ca_cert, ca_key = self.ca.load()
        cert = sign_for(
            ca_cert,
            ca_key,
            request.public_key(),
            f"buildfleet oidc {claims['sub']}"[:64],
            ExtendedKeyUsageOID.CLIENT_AUTH,
            now - datetime.timedelta(minutes=5),
            now + self.lifetime,
        )
        return cert, claims

    def _issuer_of(self, token: str) -> TrustedIssuer:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise Refused(f"not a token: {error}") from None
        issuer = unverified.get("iss")
        for trusted in self.issuers:
            if trusted.issuer == issuer:
                return trusted
        raise Refused(f"issuer {issuer!r} is not trusted")

    def _verified(self, token: str, trusted: TrustedIssuer, now: datetime.datetime) -> dict[str, Any]:
        keys = self._keys.setdefault(trusted.issuer, jwt.PyJWKClient(trusted.jwks_url, cache_keys=True))
        try:
            key = keys.get_signing_key_from_jwt(token)
            return jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=trusted.audience,
                issuer=trusted.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Refused("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Refused(f"the token is for another audience (this fleet's is {trusted.audience!r})") from None
        except jwt.InvalidSignatureError:
            raise Refused("the token's signature does not match the provider's keys") from None
        except jwt.PyJWKClientError as error:
            raise Refused(f"the provider's signing key was not found: {error}") from None
        except jwt.PyJWTError as error:
            raise Refused(f"the token is not valid: {error}") from None

    def _once(self, jti: str, expires: float, now: datetime.datetime) -> None:
        """Each token exchanged once: a copy a log or a step leaked cannot be used again."""
        with self._lock:
            stamp = now.timestamp()
            for seen in [j for j, exp in self._exchanged.items() if exp + LEEWAY_SECONDS < stamp]:
                del self._exchanged[seen]  # expired tokens are refused anyway
            if jti in self._exchanged:
                raise Refused("the token was exchanged before (replayed)")
            self._exchanged[jti] = expires
            if self.seen_file is not None:
                partial = self.seen_file.with_suffix(".new")
                partial.write_text(json.dumps(self._exchanged))
                partial.replace(self.seen_file)


def _request(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        request = x509.load_pem_x509_csr(csr_pem)
    except ValueError as error:
        raise Refused(f"not a certificate signing request: {error}") from None
    if not request.is_signature_valid:
        raise Refused("the certificate signing request is not signed by its own key")
    return request


@dataclass(frozen=True)
class ServiceConfig:
    """What the host's service reads at start (written by buildfleet's configure)."""

    port: int
    tls_cert: Path  # the host's own server certificate (the fleet CA's): jobs check it with the fleet's ca.pem
    tls_key: Path
    state_dir: Path  # the issuing CA and the tokens seen
    issuers: tuple[TrustedIssuer, ...]
    ca_name: str  # the issuing CA's common name, made at the first start
    lifetime_seconds: int = int(LIFETIME.total_seconds())
    listen: str = "0.0.0.0"
    retired: tuple[str, ...] = ()  # sha256 of CA certificates the operator revoked: init makes a new one

    @classmethod
    def read(cls, path: Path) -> ServiceConfig:
        data = json.loads(path.read_text())
        return cls(
            int(data["port"]),
            Path(data["tls_cert"]),
            Path(data["tls_key"]),
            Path(data["state_dir"]),
            tuple(TrustedIssuer.from_dict(i) for i in data["issuers"]),
            str(data["ca_name"]),
            int(data.get("lifetime_seconds", LIFETIME.total_seconds())),
            str(data.get("listen", "0.0.0.0")),
            tuple(str(d) for d in data.get("retired_ca_sha256", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "tls_cert": str(self.tls_cert),
            "tls_key": str(self.tls_key),
            "state_dir": str(self.state_dir),
            "issuers": [i.to_dict() for i in self.issuers],
            "ca_name": self.ca_name,
            "lifetime_seconds": self.lifetime_seconds,
            "listen": self.listen,
            "retired_ca_sha256": list(self.retired),
        }

    @property
    def ca(self) -> IssuingCA:
        return IssuingCA(self.state_dir / "ca")

    def exchange(self) -> TokenExchange:
        lifetime = datetime.timedelta(seconds=self.lifetime_seconds)
        return TokenExchange(self.issuers, self.ca, lifetime, self.state_dir / "seen.json")


def log(**fields: Any) -> None:
    """One JSON line per decision on stderr (the journal, or the service's log file)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(json.dumps({"time": stamp, **fields}), file=sys.stderr, flush=True)


def handler_for(exchange: TokenExchange) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if self.path != PATH:
                return self._answer(404, f"no such path: POST {PATH}\n")
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            length = int(self.headers.get("Content-Length") or 0)
            if scheme.lower() != "bearer" or not token.strip():
                return self._answer(401, "refused: no token (Authorization: Bearer TOKEN)\n")
            if not 0 < length <= MAX_BODY:
                return self._answer(400, f"refused: send the CSR (PEM) as the body, at most {MAX_BODY} bytes\n")
            try:
                cert, claims = exchange.exchange(token.strip(), self.rfile.read(length))
            except Refused as refused:
                log(outcome="refused", reason=str(refused), peer=self.client_address[0])
                return self._answer(403, f"refused: {refused}\n")
            serial = x509.load_pem_x509_certificate(cert).serial_number
            log(outcome="issued", sub=claims.get("sub"), jti=claims.get("jti"), serial=f"{serial:x}")
            self._answer(200, cert.decode(), "application/x-pem-file")

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200, "ok\n") if self.path == "/healthz" else self._answer(404, "not found\n")

        def _answer(self, status: int, body: str, kind: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass  # each decision is logged once, above

    return Handler


def server(config: ServiceConfig) -> ThreadingHTTPServer:
    """The HTTPS server, bound and ready (serve_forever runs it); its CA made first if need be."""
    config.ca.ensure(config.ca_name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    httpd = ThreadingHTTPServer((config.listen, config.port), handler_for(config.exchange()))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    return httpd


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="buildfleet-exchange", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="make the issuing CA once; print its certificate (never its key)")
    init.add_argument("--config", type=Path, required=True)
    serve = commands.add_parser("serve", help="serve the exchange over HTTPS")
    serve.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    config = ServiceConfig.read(args.config)
    if args.command == "init":
        sys.stdout.write(config.ca.ensure(config.ca_name, config.retired).decode())
        return 0
    httpd = server(config)
    log(outcome="listening", port=config.port, issuers=[i.issuer for i in config.issuers])
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
