"""The pools' balancer on this machine: Debian's HAProxy, one TCP listener per pool.

buildx sends every build of a platform to the one node that has it, so a pool is one
node whose endpoint is this balancer. It passes TLS through untouched (mTLS stays
between buildx and each buildkitd: every member's certificate carries the balancer's
address), and checks each member with a real mTLS handshake using the fleet's client
certificate, so a member whose buildkitd is gone leaves the pool within seconds while its
container may still accept TCP.

Which member gets a build: one ``buildx build`` opens 4-5 connections to the node (loading
the node, listing workers, the build itself) and holds them all to its end, but only one
carries the build (measured through this balancer: one connection of ~39 KB, the rest
~1.9 KB). Balancing connections alone therefore balances the wrong thing: least
connections put 4 of 4, or 5 of 6, concurrent builds on one member while the connection
counts were even (56/56). So the first connection from a client address goes to the
member with the fewest connections, and the connections that address opens within the
next half second follow it (a stick table on the source address): each build lands whole
on the least-loaded member. Builds that one machine starts within the same half second
share a member. Options used: HAProxy 2.6's configuration manual (``balance leastconn``,
``stick-table``, ``stick on``, ``check-ssl``, ``crt``, ``ca-file``, ``option redispatch``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioning.certs import Pem
from provisioning.errors import BuildfleetError
from provisioning.inventory import Pool
from provisioning.private import write_private
from provisioning.remote.machine import free_port
from provisioning.removal import unlink_inside
from provisioning.targets.process import OwnedProcess

BINARY = "haproxy"
LOOPBACK = "127.0.0.1"
START_SECONDS = 10
STICK_MS = 500  # one buildx build opens its connections within ~50 ms; a new build is a new choice


@dataclass(frozen=True)
class Backend:
    """One pool member's buildkitd as this machine reaches it."""

    host: str
    address: str
    port: int


@dataclass(frozen=True)
class PoolListener:
    name: str
    port: int  # where the balancer listens on 127.0.0.1
    backends: tuple[Backend, ...]


def haproxy_config(listeners: Sequence[PoolListener], ca_file: Path, client_pem: Path, stats: Path) -> str:
    """HAProxy's configuration for the pools. Pure.

    Timeouts are inactivity limits on a TCP stream: a build step may print nothing for a
    long time, so they are hours, not seconds. A connection refused by a member that has
    not yet failed its checks is tried once more on another (``redispatch``)."""
    lines = [
        "# made by buildfleet: the fleet's pools, TLS passed through to each member's buildkitd",
        "global",
        "    maxconn 2048",
        f"    stats socket {stats} mode 600 level admin",  # show stat; set server state (a rolling restart's drain)
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 12h",
        "    timeout server 12h",
        "    retries 2",
        "    option redispatch",
    ]
    for listener in listeners:
        lines += [
            f"listen {listener.name}",
            f"    bind {LOOPBACK}:{listener.port}",
            "    balance leastconn",
            f"    stick-table type ip size 10k expire {STICK_MS}ms",
            "    stick on src",
            f"    default-server check check-ssl verify required ca-file {ca_file} crt {client_pem} "
            "inter 2s downinter 1s fall 2 rise 2",
            *(f"    server {b.host} {b.address}:{b.port}" for b in listener.backends),
        ]
    return "\n".join(lines) + "\n"


def haproxy_binary() -> str:
    found = shutil.which(BINARY)
    if found is None:
        raise BuildfleetError(
            "a pool (a role with more than one host) needs HAProxy on this machine: "
            "apt-get install haproxy (.ci/prepare installs it)"
        )
    return found


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class LocalBalancer:
    directory: Path  # <state>/balancer: haproxy.cfg, the client certificate it checks with, ports, pid, log

    @property
    def config(self) -> Path:
        return self.directory / "haproxy.cfg"

    @property
    def process(self) -> OwnedProcess:
        return OwnedProcess(self.directory, str(self.config))

    @property
    def ports_file(self) -> Path:
        return self.directory / "ports.json"

    def _ports(self, pools: Sequence[str]) -> dict[str, int]:
        """Each pool keeps its port across runs (the builder's node stays as it is)."""
        known = json.loads(self.ports_file.read_text()) if self.ports_file.exists() else {}
        return {pool: int(known[pool]) if pool in known else free_port(LOOPBACK) for pool in pools}

    def ensure(self, pools: Mapping[str, Sequence[Backend]], trust: bytes, client: Pem) -> tuple[Pool, ...]:
        """HAProxy listening for every pool, started when none runs, and handed over to a new
        one (softly) when its config, the CAs it trusts or the certificate it checks with change:
        it reads those files only when it starts."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = self._ports(list(pools))
        client_pem, ca_file = self.directory / "client.pem", self.directory / "ca.pem"
        listeners = [PoolListener(name, ports[name], tuple(backends)) for name, backends in pools.items()]
        text = haproxy_config(listeners, ca_file, client_pem, self.stats_socket)
        self.ports_file.write_text(json.dumps(ports, indent=2) + "\n")
        found = tuple(Pool(name, LOOPBACK, port, STICK_MS) for name, port in ports.items())
        wanted = {client_pem: client.cert + client.key, ca_file: trust, self.config: text.encode()}
        running = self.process.pid()
        if running is not None and all(
            path.exists() and path.read_bytes() == content for path, content in wanted.items()
        ):
            return found
        write_private(client_pem, client.cert + client.key)  # what its health checks present
        ca_file.write_bytes(trust)
        self._start(haproxy_binary(), text, list(ports.values()), running)
        return found

    def _start(self, binary: str, text: str, ports: list[int], running: int | None) -> None:
        """Start HAProxy on ``text``; one already ``running`` hands over softly (``-sf``: it
        stops listening once the new one listens, and ends after its last connection, so a
        build through the pool is never cut; management guide, section 4)."""
        candidate = self.directory / "haproxy.cfg.new"
        candidate.write_text(text)
        checked = subprocess.run([binary, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True)
        if checked.returncode != 0:
            why = (checked.stdout + checked.stderr).strip()
            raise BuildfleetError(f"HAProxy refused the pools' configuration {candidate}: {why}")
        candidate.replace(self.config)
        handover = ["-sf", str(running)] if running is not None else []
        process = self.process.start([binary, "-db", "-f", str(self.config), *handover], succeeding=running)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if all(_listening(port) for port in ports):
                return
            time.sleep(0.2)
        tail = self.process.log_tail()
        self.stop()
        raise BuildfleetError(f"HAProxy did not listen on 127.0.0.1 ports {ports} within {START_SECONDS} s: {tail}")

    @property
    def stats_socket(self) -> Path:
        return self.directory / "haproxy.sock"

    def _ask(self, command: str) -> str:
        """One command on HAProxy's runtime API (management guide, section 9.3)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(self.stats_socket))
                sock.sendall(command.encode() + b"\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        except OSError as error:
            raise BuildfleetError(
                f"the pools' balancer does not answer on {self.stats_socket} ({error}): buildfleet up starts it"
            ) from None
        return data.decode()

    def members(self) -> dict[str, dict[str, str]]:
        """Each member's line of HAProxy's ``show stat``: its health (status: UP, DOWN, DRAIN, MAINT),
        sessions now (scur) and in all (stot)."""
        header, *rows = self._ask("show stat").strip().splitlines()
        names = header.lstrip("# ").split(",")
        found = {}
        for row in rows:
            fields = dict(zip(names, row.split(","), strict=False))
            if fields.get("svname") not in ("FRONTEND", "BACKEND"):
                found[f"{fields['pxname']}/{fields['svname']}"] = fields
        return found

    def _member(self, pool: str, host: str) -> dict[str, str]:
        try:
            return self.members()[f"{pool}/{host}"]
        except KeyError:
            raise BuildfleetError(f"pool {pool}: HAProxy has no member {host} (run buildfleet up)") from None

    def _set_state(self, pool: str, host: str, state: str) -> None:
        answer = self._ask(f"set server {pool}/{host} state {state}").strip()
        if answer:  # silence is success
            raise BuildfleetError(f"pool {pool}: HAProxy refused to set {host} {state}: {answer}")

    def take_out(self, pool: str, host: str) -> None:
        """No new build goes to ``host``; those it has go on (DRAIN). The connections a build
        opens after its first within STICK_MS still follow it there: a build is never split
        between members (MAINT would send those elsewhere)."""
        self._set_state(pool, host, "drain")

    def sessions(self, pool: str, host: str) -> int:
        return int(self._member(pool, host).get("scur") or 0)

    def put_back(self, pool: str, host: str, timeout: float) -> None:
        """``host`` back in its pool, waited for until HAProxy's mTLS checks find it UP."""
        self._set_state(pool, host, "ready")
        deadline = time.monotonic() + timeout
        while (status := self._member(pool, host).get("status", "")) != "UP":
            if time.monotonic() > deadline:
                raise BuildfleetError(
                    f"pool {pool}: {host} is back in but HAProxy finds it {status} after {timeout:.0f} s"
                )
            time.sleep(0.5)

    def running(self) -> bool:
        return self.process.running()

    def stop(self) -> None:
        self.process.stop()
        unlink_inside(self.directory / "client.pem", self.directory)
        unlink_inside(self.directory / "ca.pem", self.directory)
