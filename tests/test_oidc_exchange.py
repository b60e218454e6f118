"""A CI job's OIDC token traded for an hour's client certificate, against a stand-in provider on
127.0.0.1 with its own signing key and JWKS: a valid token gets a certificate for the job's own
key, under the exchange's own CA; every other token is refused with its reason."""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.consumers import Consumers
from provisioning.exchange.service import GITHUB, IssuingCA, Refused, TokenExchange, TrustedIssuer

pytestmark = pytest.mark.process  # the stand-in OIDC provider on 127.0.0.1

AUDIENCE = "buildfleet-prod"


@pytest.fixture
def exchange(github, tmp_path):
    ca = IssuingCA(tmp_path / "exchange" / "ca")  # made where the exchange runs
    Consumers(tmp_path / "tls").adopt("github-oidc", ca.ensure("buildfleet oidc exchange CA"))
    trusted = TrustedIssuer(
        GITHUB,
        AUDIENCE,
        github.jwks_url,
        {"repository": ("acme/app",), "ref": ("refs/heads/main",)},
    )
    return TokenExchange([trusted], ca)


def job_request() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """What the job sends: a CSR for a key it made and keeps."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ci job")]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def token(github, **claims):
    return github.token(AUDIENCE, **{"repository": "acme/app", "ref": "refs/heads/main", **claims})


def test_a_valid_token_gets_an_hours_client_certificate_for_the_jobs_own_key(github, exchange, tmp_path):
    key, csr = job_request()
    pem, claims = exchange.exchange(token(github), csr)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    cert.verify_directly_issued_by(exchange.ca.load()[0])  # under the exchange's CA
    assert claims["repository"] == "acme/app"
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=55) < lifetime <= datetime.timedelta(hours=1)
    assert "repo:acme/app" in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert (
        Consumers(tmp_path / "tls").trust() == (tmp_path / "exchange" / "ca" / "cert.pem").read_bytes()
    )  # hosts trust it
    assert not list((tmp_path / "tls").rglob("key.pem"))  # its key stays where the exchange runs


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: token(p, repository="mallory/fork"), "claim repository='mallory/fork' is not allowed"),
        (lambda p: token(p, ref="refs/heads/feature"), "claim ref='refs/heads/feature' is not allowed"),
        (lambda p: token(p, lifetime=-120), "the token has expired"),
        (lambda p: p.token("someone-else", repository="acme/app", ref="refs/heads/main"), "another audience"),
        (
            lambda p: token(p, key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "signature does not match",
        ),
        (lambda p: token(p, iss="https://evil.example"), "issuer 'https://evil.example' is not trusted"),
        (lambda p: token(p, jti=None), "the token is not valid"),
        (lambda p: "not-a-jwt", "not a token"),
    ],
    ids=[
        "other-repository",
        "other-branch",
        "expired",
        "wrong-audience",
        "bad-signature",
        "unknown-issuer",
        "no-jti",
        "garbage",
    ],  # fmt: skip
)
def test_a_token_that_does_not_qualify_is_refused_with_its_reason(github, exchange, make, reason):
    _, csr = job_request()
    with pytest.raises(Refused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        exchange.exchange(make(github), csr)


def test_a_token_is_exchanged_once_and_a_replay_is_refused(github, exchange):
    once = token(github)
    exchange.exchange(once, job_request()[1])
    with pytest.raises(Refused, match=r"exchanged before \(replayed\)"):
        exchange.exchange(once, job_request()[1])


def test_a_request_not_signed_by_its_own_key_is_refused(github, exchange):
    _, csr = job_request()
    tampered = csr.replace(csr[60:64], bytes(reversed(csr[60:64])))
    with pytest.raises(Refused, match="not a certificate signing request|not signed by its own key"):
        exchange.exchange(token(github), tampered)


def test_revoking_the_exchanges_consumer_ends_trust_in_every_certificate_it_issued(github, exchange, tmp_path):
    consumers = Consumers(tmp_path / "tls")
    assert consumers.trust()
    consumers.revoke("github-oidc")
    assert consumers.trust() == b""  # after the rolling configure no host takes its certificates
