"""The OIDC token exchange on its host (see provisioning/exchange/service.py): the service
file as it is, its configuration, the distribution's python3-jwt and python3-cryptography,
and a daemon kept running by the host's init. The issuing CA is made on the host by the
service's own ``init`` before it starts, and never leaves it: what configure takes back
afterwards is its certificate alone (``ca_fact``), for the hosts' bundle.

The service reads buildkitd's server certificate and key at start (jobs check them with the
fleet's ``ca.pem``); the configuration carries that certificate's digest, so a new one (a
rotation) restarts the exchange. Restarting it cancels no build: it holds no connection
longer than one exchange.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.errors import ConfigError
from provisioning.exchange import service as exchange_service
from provisioning.exchange.service import ServiceConfig, TrustedIssuer
from provisioning.hosts.actions import Decision, Run, WriteFile, no_change
from provisioning.hosts.operations import Step, apt_install
from provisioning.hosts.operations.buildkitd import BUILDKIT_ETC
from provisioning.hosts.services import Service, differing, init_system, service_paths
from provisioning.remote import facts as f
from provisioning.settings import Settings

SCRIPT = "/usr/local/lib/buildfleet/exchange.py"
CONFIG = "/etc/buildfleet/exchange.json"
STATE = "/var/lib/buildfleet/exchange"
CA_CERT = f"{STATE}/ca/cert.pem"
PACKAGES = ("python3-jwt", "python3-cryptography")
CLIENT = "oidc-exchange"  # the consumer its CA is, in the operator's state (client list, client revoke)
CIRCLECI = "https://oidc.circleci.com/org/"


def issuers(settings: Settings) -> tuple[TrustedIssuer, ...]:
    """Whom the exchange takes tokens from, as the settings name them (none: no exchange)."""
    found = []
    if settings.exchange_github_repositories:
        claims = {"repository": tuple(settings.exchange_github_repositories)}
        if settings.exchange_github_refs:
            claims["ref"] = tuple(settings.exchange_github_refs)
        issuer = settings.exchange_github_issuer.rstrip("/")
        found.append(TrustedIssuer(issuer, settings.exchange_audience, f"{issuer}/.well-known/jwks", claims))
    if settings.exchange_circleci_org_id:
        org = settings.exchange_circleci_org_id
        claims = {"oidc.circleci.com/project-id": tuple(settings.exchange_circleci_project_ids)}
        found.append(TrustedIssuer(f"{CIRCLECI}{org}", org, f"{CIRCLECI}{org}/.well-known/jwks-pub.json", claims))
    return tuple(found)


@dataclass(frozen=True)
class ExchangeDesired:
    host: str  # the host that runs it
    port: int  # where it listens on that host
    issuers: tuple[TrustedIssuer, ...]
    fleet: str  # names its CA
    retired: tuple[str, ...] = ()  # sha256 of its CAs the operator revoked: the host makes a new one

    @classmethod
    def of(
        cls, settings: Settings, hosts: list[str], fleet: str, retired: tuple[str, ...] = ()
    ) -> ExchangeDesired | None:
        """The exchange the settings ask for, on the host they name (or the first), None when off."""
        trusted = issuers(settings)
        if not trusted:
            return None
        host = settings.exchange_host or sorted(hosts)[0]
        if host not in hosts:
            raise ConfigError(f"buildfleet:exchangeHost: {host!r} is not a host of the fleet ({', '.join(hosts)})")
        return cls(host, settings.exchange_port, trusted, fleet, retired)

    def config(self) -> ServiceConfig:
        return ServiceConfig(
            self.port,
            Path(f"{BUILDKIT_ETC}/tls/cert.pem"),
            Path(f"{BUILDKIT_ETC}/tls/key.pem"),
            Path(STATE),
            self.issuers,
            f"buildfleet oidc exchange CA {self.fleet}",
            retired=self.retired,
        )

    def config_file(self, server_cert: bytes) -> bytes:
        digest = hashlib.sha256(server_cert).hexdigest()  # a new server certificate restarts the service
        return (json.dumps({**self.config().to_dict(), "tls_cert_sha256": digest}, indent=2) + "\n").encode()


def exchange_daemon() -> Service:
    return Service(
        "buildfleet-exchange",
        ("python3", SCRIPT, "serve", "--config", CONFIG),
        "buildfleet OIDC token exchange",
        after=("network-online.target", "buildkitd.service"),
    )


def ca_fact() -> f.PublicFile:
    """The exchange's CA certificate as the host has it (None before its first init)."""
    return f.PublicFile(CA_CERT)


def exchange_step(desired: ExchangeDesired | None, server_cert: bytes = b"") -> Step:
    """The exchange running on its host, after buildkitd (whose server certificate it serves);
    ``None``: not on this host, and a service from before is stopped and its files removed (its
    CA stays, and stays trusted until ``client revoke oidc-exchange``)."""
    daemon = exchange_daemon()
    facts: dict[str, f.Fact[Any]] = {
        "init": f.InitSystem(),
        "files": f.FileDigests((SCRIPT, CONFIG, *service_paths(daemon))),
        "running": f.ServiceRunning(daemon.name),
        "ca": ca_fact(),
        **{package: f.PackageVersion(package) for package in PACKAGES},
    }

    def decide(got: Mapping[str, Any]) -> Decision:
        init, digests = init_system(got["init"]), got["files"]
        if desired is None:
            ours = (SCRIPT, CONFIG, daemon.definition_path("none"), daemon.definition_path("systemd"))
            if not got["running"] and not any(digests[p] for p in ours):
                return no_change("no token exchange here")
            return Decision((Run(("sh", "-c", init.remove(daemon, ours)), "stop and remove the token exchange"),))
        missing = [p for p in PACKAGES if got[p] is None]
        actions: list = [Run(apt_install(*missing), f"install {', '.join(missing)}")] if missing else []
        wanted = [
            WriteFile(SCRIPT, Path(exchange_service.__file__).read_bytes(), "0755", "install the token exchange"),
            WriteFile(CONFIG, desired.config_file(server_cert), "0600", "configure the token exchange"),
        ]
        actions += differing(wanted, digests)
        if got["ca"] is None:
            actions.append(Run(("python3", SCRIPT, "init", "--config", CONFIG), "make its issuing CA, on this host"))
        elif hashlib.sha256(got["ca"]).hexdigest() in desired.retired:
            actions.append(
                Run(("python3", SCRIPT, "init", "--config", CONFIG), "make a new issuing CA, on this host (revoked)")
            )
        actions += init.files(daemon, digests)
        if actions or not got["running"]:
            restart = bool(actions) and got["running"]
            replaced = init.replace(daemon) if restart else []
            actions += [*replaced, init.start(daemon, restart and not replaced, init.running(daemon), "(re)start it")]
        if not actions:
            return no_change(f"token exchange on port {desired.port} ({', '.join(i.issuer for i in desired.issuers)})")
        return Decision(tuple(actions))

    return Step("token-exchange", facts, decide)
