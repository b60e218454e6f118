"""Trading a CI job's OIDC token for a client certificate valid for an hour: no long-lived
secret in CI.

GitHub Actions (``permissions: id-token: write``) and CircleCI (``$CIRCLE_OIDC_TOKEN_V2``)
hand each job a JSON Web Token signed by the provider. The exchange accepts one only when its
signature checks against the provider's published keys (its JWKS), its issuer is one the
operator trusts, its audience is the fleet's, it has not expired, every claim the operator
pinned (repository, ref, environment; CircleCI's project id) has an allowed value, and its
``jti`` was never exchanged before (replay). The job sends a certificate signing request: its
private key never leaves the job, and the certificate is signed by the exchange's own issuing
CA (a consumer's CA, so ``client revoke`` ends the whole path at once). Every refusal names its
reason. Token checks: PyJWT (``jwt.decode`` with ``require``; ``PyJWKClient`` for the keys);
claims: GitHub's "About security hardening with OpenID Connect", CircleCI's "OpenID Connect tokens".
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from provisioning.certs import Pem, issue_for
from provisioning.errors import BuildfleetError

LIFETIME = datetime.timedelta(hours=1)
LEEWAY_SECONDS = 30  # clocks of the provider and the exchange may differ this much
ALGORITHMS = ["RS256", "ES256"]  # what GitHub and CircleCI sign with
REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]
GITHUB = "https://token.actions.githubusercontent.com"


class Refused(BuildfleetError):
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


@dataclass
class TokenExchange:
    issuers: Sequence[TrustedIssuer]
    ca: Pem  # the exchange's issuing CA: its certificate is in the hosts' bundle, its key only here
    lifetime: datetime.timedelta = LIFETIME
    _exchanged: dict[str, float] = field(default_factory=dict, repr=False)  # jti -> its token's exp
    _keys: dict[str, jwt.PyJWKClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def exchange(self, token: str, csr_pem: bytes, now: datetime.datetime | None = None) -> bytes:
        """The certificate (PEM) for the CSR's key, or Refused with the reason."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        trusted = self._issuer_of(token)
        claims = self._verified(token, trusted, now)
        trusted.check_claims(claims)
        request = _request(csr_pem)
        self._once(str(claims["jti"]), float(claims["exp"]), now)
        return issue_for(
            self.ca,
            request.public_key(),
            f"buildfleet oidc {claims['sub']}"[:64],
            ExtendedKeyUsageOID.CLIENT_AUTH,
            days=self.lifetime.total_seconds() / 86400,
            now=now,
        )

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


def _request(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        request = x509.load_pem_x509_csr(csr_pem)
    except ValueError as error:
        raise Refused(f"not a certificate signing request: {error}") from None
    if not request.is_signature_valid:
        raise Refused("the certificate signing request is not signed by its own key")
    return request
