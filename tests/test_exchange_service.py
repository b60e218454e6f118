"""The token exchange as the service a fleet host runs: service.py started as it is by a Python
with Debian's own python3-cryptography and python3-jwt (the packages the hosts get), HTTPS on
127.0.0.1 with a server certificate of the fleet's CA, a stand-in OIDC provider beside it.
A job's valid token gets an hour's certificate for its own key; each other token is refused
with its reason over HTTP; a replay is refused across a restart; the CA's key stays in the
service's directory, and the certificate it signs is taken by a TLS peer trusting the bundle."""

import hashlib
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from oidc_provider import Provider
from test_oidc_exchange import AUDIENCE, job_request, token

from provisioning.certs import FleetCA
from provisioning.consumers import Consumers
from provisioning.exchange import service
from provisioning.exchange.service import GITHUB, PATH, ServiceConfig, TrustedIssuer
from provisioning.remote.machine import free_port

pytestmark = pytest.mark.process  # the service and the stand-in provider, on 127.0.0.1

HOST_PYTHON = "/usr/bin/python3"  # Debian's, with python3-cryptography and python3-jwt from apt (.ci/prepare)


class Exchange:
    """service.py serving on 127.0.0.1, started the way a host's unit starts it."""

    def __init__(self, tmp_path: Path, provider: Provider):
        ca = FleetCA(tmp_path / "fleet-tls")
        server = ca.server("exchange-host", ["127.0.0.1"])
        tls = tmp_path / "host-tls"
        tls.mkdir()
        (tls / "cert.pem").write_bytes(server.cert)
        (tls / "key.pem").write_bytes(server.key)
        self.fleet_ca = ca.trust()
        self.port = free_port("127.0.0.1")
        self.state = tmp_path / "exchange"
        claims = {"repository": ("acme/app",), "ref": ("refs/heads/main",)}
        config = ServiceConfig(
            self.port,
            tls / "cert.pem",
            tls / "key.pem",
            self.state,
            (TrustedIssuer(GITHUB, AUDIENCE, provider.jwks_url, claims),),
            "buildfleet oidc exchange CA test",
            listen="127.0.0.1",
        )
        self.config = tmp_path / "exchange.json"
        self.config.write_text(json.dumps(config.to_dict()))
        self.log = tmp_path / "exchange.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        started = self.log.read_bytes().count(b'"listening"') if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [HOST_PYTHON, service.__file__, "serve", "--config", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while self.log.read_bytes().count(b'"listening"') == started:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def ask(self, bearer: str, body: bytes) -> tuple[int, str]:
        """What a job's curl gets: status and body, the service's certificate checked with the fleet's CA."""
        context = ssl.create_default_context(cadata=self.fleet_ca.decode())
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}{PATH}",
            data=body,
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/x-pem-file"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=20) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def decisions(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


@pytest.fixture
def exchange(tmp_path, github):
    if not Path(HOST_PYTHON).exists() or subprocess.run([HOST_PYTHON, "-c", "import jwt"]).returncode != 0:
        pytest.fail(f"{HOST_PYTHON} with python3-jwt is needed (apt install python3-jwt python3-cryptography)")
    running = Exchange(tmp_path, github)
    running.start()
    yield running
    running.stop()


def test_a_valid_token_gets_an_hours_certificate_for_the_jobs_key_and_a_peer_trusting_the_bundle_takes_it(
    exchange, github, tmp_path
):
    key, csr = job_request()
    status, body = exchange.ask(token(github), csr)
    assert status == 200, body
    cert = x509.load_pem_x509_certificate(body.encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    left = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert left == service.LIFETIME + service.datetime.timedelta(minutes=5)  # an hour from now, 5 min back
    (issued,) = [d for d in exchange.decisions() if d["outcome"] == "issued"]
    assert issued["sub"] == "repo:acme/app:ref:refs/heads/main" and issued["serial"] == f"{cert.serial_number:x}"
    # The operator's side: only the CA's certificate comes over (init prints it), into the hosts' bundle.
    shown = subprocess.run(
        [HOST_PYTHON, service.__file__, "init", "--config", str(exchange.config)], capture_output=True, check=True
    ).stdout
    assert b"PRIVATE KEY" not in shown
    fleet, consumers = FleetCA(tmp_path / "tls"), Consumers(tmp_path / "tls")
    consumers.adopt("github-oidc", shown)
    key_file = exchange.state / "ca" / "key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_bytes() not in b"".join(p.read_bytes() for p in (tmp_path / "tls").rglob("*") if p.is_file())
    assert handshake(tmp_path, fleet.trust() + consumers.trust(), cert, key)  # the hosts' bundle, as buildkitd checks
    consumers.revoke("github-oidc")
    assert not handshake(tmp_path, fleet.trust() + consumers.trust(), cert, key)  # the bundle after the next configure


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: token(p, repository="mallory/fork"), "claim repository='mallory/fork' is not allowed"),
        (lambda p: token(p, lifetime=-120), "the token has expired"),
        (lambda p: p.token("someone-else", repository="acme/app", ref="refs/heads/main"), "another audience"),
        (lambda p: token(p, key=Provider(GITHUB).key), "signature does not match the provider's keys"),
    ],
    ids=["other-repository", "expired", "wrong-audience", "bad-signature"],
)
def test_a_token_that_does_not_qualify_is_refused_with_its_reason_over_https(exchange, github, make, reason):
    status, body = exchange.ask(make(github), job_request()[1])
    assert status == 403 and body.startswith("refused: ") and reason in body, body
    assert [d["reason"] for d in exchange.decisions() if d["outcome"] == "refused"] == [body.strip()[9:]]


def test_a_replayed_token_is_refused_even_after_the_service_restarts(exchange, github):
    once = token(github)
    assert exchange.ask(once, job_request()[1])[0] == 200
    assert exchange.ask(once, job_request()[1]) == (403, "refused: the token was exchanged before (replayed)\n")
    exchange.stop()
    exchange.start()
    assert exchange.ask(once, job_request()[1]) == (403, "refused: the token was exchanged before (replayed)\n")


def test_a_request_without_a_token_or_a_csr_is_refused_before_any_check(exchange, github):
    assert exchange.ask("", job_request()[1])[0] == 401
    assert exchange.ask(token(github), b"")[0] == 400


def handshake(directory: Path, bundle: bytes, cert: x509.Certificate, key) -> bool:
    """A TLS server that requires a client certificate of ``bundle``'s CAs (as buildkitd's
    --tlscacert), and a client presenting ``cert``: True when the server took it."""
    server_ca = FleetCA(directory / "peer-tls")
    server = server_ca.server("peer", ["127.0.0.1"])
    (directory / "server.pem").write_bytes(server.cert + server.key)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM) + private)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(directory / "server.pem")
    served.load_verify_locations(cadata=bundle.decode())
    served.verify_mode = ssl.CERT_REQUIRED
    taken: list[bool] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            conn, _ = listener.accept()
            try:
                with served.wrap_socket(conn, server_side=True) as tls:
                    taken.append(tls.getpeercert() is not None)
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                taken.append(False)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        client = ssl.create_default_context(cadata=server_ca.trust().decode())
        client.load_cert_chain(directory / "client.pem")
        try:
            address = listener.getsockname()
            with client.wrap_socket(socket.create_connection(address, timeout=5), server_hostname="127.0.0.1") as tls:
                tls.recv(2)
        except (ssl.SSLError, OSError):
            pass
        thread.join(5)
    return taken == [True]


def test_init_with_the_ca_retired_makes_a_new_one_that_signs_from_then_on(exchange, github):
    def init() -> bytes:
        return subprocess.run(
            [HOST_PYTHON, service.__file__, "init", "--config", str(exchange.config)], capture_output=True, check=True
        ).stdout

    old = init()
    assert init() == old  # kept: init makes the CA once
    config = json.loads(exchange.config.read_text())
    exchange.config.write_text(json.dumps({**config, "retired_ca_sha256": [hashlib.sha256(old).hexdigest()]}))
    new = init()  # client renew oidc-exchange, then configure: the host makes a new CA
    assert new != old and init() == new
    key, csr = job_request()
    status, body = exchange.ask(token(github), csr)
    assert status == 200, body
    issued = x509.load_pem_x509_certificate(body.encode())
    issued.verify_directly_issued_by(x509.load_pem_x509_certificate(new))
    with pytest.raises(InvalidSignature):  # the same name, another key: the revoked CA signed none of it
        issued.verify_directly_issued_by(x509.load_pem_x509_certificate(old))
