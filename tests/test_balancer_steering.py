"""The pools' balancer (Debian's HAProxy, for real) as a rolling restart steers it: a member
taken out gets no new connection but keeps the ones it has, comes back once its mTLS checks
pass, and a new configuration hands over without cutting a connection through the old one."""

import socket
import ssl
import threading
import time

import pytest

from provisioning.certs import FleetCA
from provisioning.targets.local.balancer import STICK_MS, Backend, LocalBalancer

pytestmark = pytest.mark.process  # starts HAProxy

POOL, MEMBER = "amd64-pool", "amd64-0"


class TLSEcho:
    """A member as HAProxy sees one: TLS with the fleet's server certificate, asking for a client
    certificate of the fleet's CA (as buildkitd does), echoing what it reads."""

    def __init__(self, ca: FleetCA):
        server = ca.server(MEMBER, ["127.0.0.1"])
        (ca.directory / "echo.pem").write_bytes(server.cert + server.key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(ca.directory / "echo.pem")
        self.context.load_verify_locations(cadata=ca.trust().decode())
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.open:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                while data := tls.recv(1024):
                    tls.sendall(data)
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self.open = False
        self.listener.close()


def client(ca: FleetCA, port: int) -> ssl.SSLSocket:
    """A connection through the balancer, TLS end to end with the member (as buildx's)."""
    context = ssl.create_default_context(cadata=ca.trust().decode())
    client = ca.client()
    (ca.directory / "client.pem").write_bytes(client.cert + client.key)
    context.load_cert_chain(ca.directory / "client.pem")
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1")


def echoes(conn: ssl.SSLSocket, data: bytes = b"ping") -> bool:
    conn.sendall(data)
    return conn.recv(1024) == data


def status(balancer: LocalBalancer) -> str:
    return balancer.members()[f"{POOL}/{MEMBER}"]["status"]


def wait_status(balancer: LocalBalancer, wanted: str) -> None:
    deadline = time.monotonic() + 20
    while status(balancer) != wanted:
        assert time.monotonic() < deadline, f"{MEMBER} stayed {status(balancer)}, not {wanted}"
        time.sleep(0.2)


@pytest.fixture
def steered(tmp_path):
    ca = FleetCA(tmp_path / "tls")
    ca.client()
    member = TLSEcho(ca)
    balancer = LocalBalancer(tmp_path / "balancer")
    backends = {POOL: [Backend(MEMBER, "127.0.0.1", member.port)]}
    (pool,) = balancer.ensure(backends, ca.trust(), ca.client())
    try:
        wait_status(balancer, "UP")
        yield ca, balancer, pool.port, backends
    finally:
        balancer.stop()
        member.close()


def test_a_member_taken_out_keeps_its_connection_takes_no_new_one_and_comes_back_when_its_checks_pass(steered):
    ca, balancer, port, _ = steered
    with client(ca, port) as held:
        assert echoes(held)
        balancer.take_out(POOL, MEMBER)
        assert status(balancer) == "DRAIN" and balancer.sessions(POOL, MEMBER) == 1
        assert echoes(held)  # the build in flight goes on
        time.sleep(STICK_MS / 1000 + 0.2)  # a build's later connections follow its first only this long
        with pytest.raises((OSError, ssl.SSLError)), client(ca, port) as refused:
            echoes(refused)
        balancer.put_back(POOL, MEMBER, timeout=20)
        assert status(balancer) == "UP"
    with client(ca, port) as again:
        assert echoes(again)


def test_new_certificates_hand_over_to_a_new_haproxy_while_the_old_one_finishes_its_connection(steered):
    ca, balancer, port, backends = steered
    old = balancer.process.pid()
    with client(ca, port) as held:
        assert echoes(held)
        ca.begin_rotation()  # trust changes: HAProxy must load it again
        balancer.ensure(backends, ca.trust(), ca.client())
        assert balancer.process.pid() != old and balancer.process.retiring() == [old]
        assert echoes(held)  # still through the old process
        with client(ca, port) as fresh:  # the new one listens on the same port
            assert echoes(fresh)
    deadline = time.monotonic() + 10
    while balancer.process.retiring():  # its last connection closed: the old one ends by itself
        assert time.monotonic() < deadline, "the old HAProxy outlived its last connection"
        time.sleep(0.2)


def test_stop_ends_an_old_haproxy_still_holding_a_connection(steered):
    ca, balancer, port, backends = steered
    with client(ca, port) as held:
        assert echoes(held)
        old = balancer.process.pid()
        ca.begin_rotation()
        balancer.ensure(backends, ca.trust(), ca.client())
        assert balancer.process.retiring() == [old]
        balancer.stop()
        assert balancer.process.retiring() == [] and not balancer.running()
