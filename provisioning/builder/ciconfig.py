"""What a CI job pastes in to use the fleet's builder, rendered from the live inventory. Pure.

Every node is a remote-driver node over mTLS, so a CI job needs no SSH key: only the
fleet's CA and the client certificate and key, kept as three CI secrets
(BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT, BUILDFLEET_CLIENT_KEY: PEM text).
GitHub Actions' docker/setup-buildx-action takes them per node as
BUILDER_NODE_<n>_AUTH_TLS_CACERT / _CERT / _KEY (its documented names), node 0 being
``endpoint`` and the others ``append`` entries in order.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from provisioning.builder.nodes import Node
from provisioning.hosts.operations.idle import TICK_SECONDS
from provisioning.inventory import Features
from provisioning.settings import WORLD

SECRETS = {"BUILDFLEET_CA": "ca", "BUILDFLEET_CLIENT_CERT": "cert", "BUILDFLEET_CLIENT_KEY": "key"}
GITHUB_SUFFIX = {"ca": "CACERT", "cert": "CERT", "key": "KEY"}


@dataclass(frozen=True)
class Exchange:
    """The fleet's OIDC token exchange as a job reaches it: no secret at all in the CI system."""

    url: str  # https://HOST:PORT/v1/certificate
    ca_pem: str  # the fleet's CA (public): checks the exchange and the hosts alike
    audience: str  # what a GitHub job asks its token for


# How a job gets its OIDC token: GitHub's runner hands a URL and a bearer for it (id-token:
# write); CircleCI sets $CIRCLE_OIDC_TOKEN_V2 (audience: the organization); any other CI sets
# BUILDFLEET_OIDC_TOKEN.
GITHUB_TOKEN = (
    'token=$(curl -sS --fail-with-body -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" '
    '"$ACTIONS_ID_TOKEN_REQUEST_URL&audience={audience}" '
    "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"value\"])')"
)
CIRCLECI_TOKEN = 'token="$CIRCLE_OIDC_TOKEN_V2"'
ANY_TOKEN = 'token="$BUILDFLEET_OIDC_TOKEN"'


def exchange_lines(exchange: Exchange, token: str) -> list[str]:
    """sh lines that leave ca.pem, cert.pem and key.pem in "$tls": a key made in the job (it never
    leaves), its CSR traded with the job's token for an hour's certificate; a refusal stops the
    job with the exchange's reason."""
    return [
        token.format(audience=shlex.quote(exchange.audience)),
        "cat > \"$tls/ca.pem\" <<'BUILDFLEET_CA'",
        exchange.ca_pem.strip(),
        "BUILDFLEET_CA",
        'openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=buildfleet ci job" '
        '-keyout "$tls/key.pem" -out "$tls/csr.pem" 2>/dev/null',
        f'curl -sS --fail-with-body --cacert "$tls/ca.pem" -H "Authorization: Bearer $token" '
        f'-H \'Content-Type: application/x-pem-file\' --data-binary @"$tls/csr.pem" -o "$tls/cert.pem" '
        f'{shlex.quote(exchange.url)} || {{ cat "$tls/cert.pem" >&2; exit 1; }}',
    ]


@dataclass(frozen=True)
class CINode:
    endpoint: str
    platforms: tuple[str, ...]
    servername: str

    @classmethod
    def of(cls, node: Node) -> CINode:
        return cls(node.endpoint, node.platforms, dict(node.driver_opts)["servername"])


@dataclass(frozen=True)
class Wake:
    """An AWS fleet whose hosts stop when idle: the job starts them before it builds."""

    stack: str
    endpoints: tuple[tuple[str, int], ...]  # each buildkitd's address and port
    fleet_id: str = ""  # the stack's buildfleet:fleetId: only this fleet's instances ("": a fleet from before it)


def wake_script(wake: Wake) -> str:
    """POSIX sh with the AWS CLI: start the stack's stopped hosts (the stack's wakePolicy allows
    exactly this), wait until they run and each buildkitd accepts connections (bounded)."""
    states = "pending,running,stopping,stopped"
    lines = [
        "# wake the fleet: its hosts power off when idle (AWS_* credentials allowed by the stack's wakePolicy)",
        f"ids=$(aws ec2 describe-instances --filters Name=tag:buildfleet:stack,Values={shlex.quote(wake.stack)} "
        + (f"Name=tag:buildfleet:fleet-id,Values={shlex.quote(wake.fleet_id)} " if wake.fleet_id else "")
        + f"Name=instance-state-name,Values={states} --query 'Reservations[].Instances[].InstanceId' --output text)",
        '[ -n "$ids" ] || { echo "no buildfleet hosts found: check AWS_REGION" >&2; exit 1; }',
        "i=0; until aws ec2 start-instances --instance-ids $ids >/dev/null; do  # a host still stopping: again",
        "  i=$((i+1)); [ $i -lt 30 ] || exit 1; sleep 10; done",
        "aws ec2 wait instance-running --instance-ids $ids",
    ]
    for address, port in wake.endpoints:
        lines.append(
            f"i=0; until timeout 3 bash -c {shlex.quote(f'</dev/tcp/{address}/{port}')} 2>/dev/null; do "
            f'i=$((i+1)); [ $i -lt 100 ] || {{ echo "buildkitd at {address}:{port} is not up" >&2; exit 1; }}; '
            "sleep 3; done"
        )
    return "\n".join([*lines, *held_connections(wake.endpoints)]) + "\n"


# Longer than the idle watcher's tick (hosts.operations.idle): one of its looks is sure to see the connection.
HOLD_SECONDS = TICK_SECONDS + 5


def held_connections(endpoints: Sequence[tuple[str, int]], seconds: int = HOLD_SECONDS) -> list[str]:
    """One connection to each buildkitd, held until the idle watcher has looked: a host found
    running but about to power off then counts the job as a client and gives it a whole
    idleStopMinutes, so it cannot stop between the wake and the build."""
    lines = ["# hold a connection to each host past its idle watcher's next look (a host about to stop stays up)"]
    for address, port in endpoints:
        hold = f"exec 3<>/dev/tcp/{address}/{port} && sleep {seconds}"
        lines.append(f"timeout {seconds + 5} bash -c {shlex.quote(hold)} 2>/dev/null &")
    return [*lines, "wait"]


@dataclass(frozen=True)
class Image:
    """Where a CI job pushes, as shell text that may expand (``"${IMAGE%:*}"``)."""

    repository: str
    tag: str
    cache: str = ""  # the repository for the build cache ("": the image's own)

    def ref(self, suffix: str = "") -> str:
        return f"{self.repository}:{self.tag}{suffix}"

    def cache_ref(self, node: str) -> str:
        return f"type=registry,ref={self.cache or self.repository}:buildcache-{node}"


def build_command(builder: str, nodes: Sequence[Node], image: Image) -> str:
    """The build a CI job runs: one build per node at once, each importing and exporting its own
    registry cache (one ref per node: a multi-node build exporting to one ref keeps only the last
    node's cache, docker/buildx#1044), so a pool member reuses the layers another one built; then
    one manifest list of all of them. A fleet of one node builds and pushes in one command."""
    prefix = f"{builder}-"
    lines = []
    for index, node in enumerate(nodes):
        name = node.name.removeprefix(prefix)
        cache = image.cache_ref(name)
        target = image.ref() if len(nodes) == 1 else image.ref(f"-{name}")
        build = (
            f"docker buildx build --builder {shlex.quote(builder)} --platform {shlex.quote(','.join(node.platforms))} "
            f"--cache-from {cache} --cache-to {cache},mode=max --push -t {target} ."
        )
        lines.append(build if len(nodes) == 1 else f"{build} & p{index}=$!")
    if len(nodes) > 1:
        lines += [f"wait $p{index}" for index in range(len(nodes))]
        parts = " ".join(image.ref(f"-{n.name.removeprefix(prefix)}") for n in nodes)
        lines.append(f"docker buildx imagetools create -t {image.ref()} {parts}")
    return "\n".join(lines) + "\n"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as ``|`` block scalars, readable as the shell they are."""


def _block_strings(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_BlockDumper.add_representer(str, _block_strings)


def _yaml(document: dict | list) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, width=1000, default_flow_style=False)


# Hosted runners reach a fleet only where buildkitd is open to them; any other route needs a
# runner of the team's own in the networks it allows (or on the machine of a local fleet).
HOSTED_RUNNER = "ubuntu-latest"
OWN_RUNNER = ["self-hosted", "linux"]
# The wake step trades the job's OIDC token for the role the stack makes for the repositories in
# buildfleet:wakeGithubRepositories (or CircleCI projects in wakeCircleciProjectIds), with the
# stack's wakePolicy attached: no long-lived AWS key in the CI system.
WAKE_ROLE = "BUILDFLEET_WAKE_ROLE_ARN"


def setup_buildx_step(builder: str, nodes: Sequence[Node]) -> dict:
    """docker/setup-buildx-action with one remote node per host; TLS from the three secrets."""
    ci = [CINode.of(n) for n in nodes]
    inputs: dict[str, str] = {
        "name": builder,
        "driver": "remote",
        "endpoint": ci[0].endpoint,
        "platforms": ",".join(ci[0].platforms),
        "driver-opts": f"servername={ci[0].servername}",
    }
    if len(ci) > 1:
        appended = [
            {"endpoint": n.endpoint, "platforms": ",".join(n.platforms), "driver-opts": [f"servername={n.servername}"]}
            for n in ci[1:]
        ]
        inputs["append"] = _yaml(appended)  # the action reads this input as YAML text
    env = {
        f"BUILDER_NODE_{index}_AUTH_TLS_{GITHUB_SUFFIX[kind]}": f"${{{{ secrets.{secret} }}}}"
        for index in range(len(ci))
        for secret, kind in SECRETS.items()
    }
    return {
        "name": "Set up the buildfleet builder",
        "uses": "docker/setup-buildx-action@v3",
        "with": inputs,
        "env": env,
    }


def github_actions(
    builder: str,
    nodes: Sequence[Node],
    wake: Wake | None = None,
    cache: str = "",
    hosted: bool = True,
    exchange: Exchange | None = None,
    platforms: Sequence[str] = (),
) -> str:
    """A complete workflow (save as .github/workflows/buildfleet.yml): check out, (wake the
    fleet with short-lived AWS credentials from the job's OIDC token,) join the builder, build
    every platform and push to the repository's GHCR. ``hosted``: GitHub's hosted runners reach
    the fleet; else the job runs on the team's own runner. With ``exchange`` the job trades its
    OIDC token for an hour's client certificate and no buildfleet secret exists."""
    wake_steps = []
    permissions = {"contents": "read", "packages": "write"}
    join = setup_buildx_step(builder, nodes)
    if exchange is not None:
        permissions["id-token"] = "write"  # the token the certificate is traded for
        script = shell_script(builder, nodes, platforms, exchange=(exchange, GITHUB_TOKEN))
        join = {"name": "Join the buildfleet builder (an hour's certificate for this job's token)", "run": script}
    if wake is not None:
        permissions["id-token"] = "write"  # the OIDC token the AWS credentials are traded for
        wake_steps = [
            {
                "name": "AWS credentials for the wake step (OIDC, no stored key)",
                "uses": "aws-actions/configure-aws-credentials@v4",
                "with": {"role-to-assume": f"${{{{ vars.{WAKE_ROLE} }}}}", "aws-region": "${{ vars.AWS_REGION }}"},
            },
            {"name": "Wake the buildfleet hosts", "shell": "bash", "run": wake_script(wake)},
        ]
    workflow = {
        "name": "buildfleet multi-platform build",
        "on": {"push": {"branches": ["main"]}, "workflow_dispatch": {}},
        "permissions": permissions,
        "jobs": {
            "build": {
                "runs-on": HOSTED_RUNNER if hosted else OWN_RUNNER,
                "steps": [
                    {"uses": "actions/checkout@v4"},
                    *wake_steps,
                    join,
                    {
                        "name": "Log in to the GitHub Container Registry",
                        "uses": "docker/login-action@v3",
                        "with": {
                            "registry": "ghcr.io",
                            "username": "${{ github.actor }}",
                            "password": "${{ secrets.GITHUB_TOKEN }}",
                        },
                    },
                    {
                        "name": "Build and push every platform",
                        # bash's ${VAR,,}: registry names must be lower case
                        "run": build_command(
                            builder, nodes, Image('"ghcr.io/${GITHUB_REPOSITORY,,}"', '"${GITHUB_SHA}"', cache)
                        ),
                    },
                ],
            }
        },
    }
    wake_note = (
        f",\n# and the repository variables AWS_REGION and {WAKE_ROLE}: the role the stack makes when\n"
        "# buildfleet:wakeGithubRepositories names this repository (pulumi stack output wakeGithubRoleArn).\n"
        if wake
        else ".\n"
    )
    secrets = (
        "# no buildfleet secret: each job trades its OIDC token at the fleet's token exchange for an hour's certificate"
        if exchange
        else "# create the repository secrets BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT, BUILDFLEET_CLIENT_KEY"
    )
    return (
        "# buildfleet: every platform on the fleet's builder. Save as .github/workflows/buildfleet.yml and\n"
        + secrets
        + wake_note
        + _yaml(workflow)
    )


def shell_script(
    builder: str,
    nodes: Sequence[Node],
    platforms: Sequence[str],
    wake: Wake | None = None,
    credentials: str = "",
    exchange: tuple[Exchange, str] | None = None,
) -> str:
    """POSIX sh for any CI: (wake the fleet, with ``credentials`` lines first,) write the secrets to
    files (or, with ``exchange`` and how the job gets its token, trade the token for them), create
    the builder, show it."""
    ci = [CINode.of(n) for n in nodes]
    needs = (
        "# buildfleet builder for any CI: the job's OIDC token traded for an hour's certificate at the\n"
        "# fleet's token exchange (no stored secret). Needs openssl, curl, python3 and docker with buildx."
        if exchange
        else "# buildfleet builder for any CI. Needs BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT and\n"
        "# BUILDFLEET_CLIENT_KEY (PEM text) in the environment, and docker with buildx."
    )
    lines = [
        "#!/bin/sh",
        *needs.splitlines(),
        "set -eu",
        *((credentials + wake_script(wake)).splitlines() if wake else []),
        "tls=$(mktemp -d)",
        "umask 077",
    ]
    if exchange:
        lines += exchange_lines(*exchange)
    for secret, kind in () if exchange else SECRETS.items():
        lines.append(f'printf \'%s\\n\' "${secret}" > "$tls/{kind}.pem"')
    lines.append(f"docker buildx rm {shlex.quote(builder)} >/dev/null 2>&1 || true")
    for index, node in enumerate(ci):
        append = " --append" if index else ""
        opts = f'"cacert=$tls/ca.pem,cert=$tls/cert.pem,key=$tls/key.pem,servername="{shlex.quote(node.servername)}'
        lines.append(
            f"docker buildx create --name {shlex.quote(builder)}{append} --driver remote "
            f"--driver-opt {opts} --platform {shlex.quote(','.join(node.platforms))} "
            f"{shlex.quote(node.endpoint)}"
        )
    lines += [
        f"docker buildx inspect --bootstrap {shlex.quote(builder)}",
        f"export BUILDFLEET_BUILDER={shlex.quote(builder)}",
        f"export BUILDFLEET_PLATFORMS={shlex.quote(','.join(platforms))}",
        '# then: docker buildx build --builder "$BUILDFLEET_BUILDER" '
        '--platform "$BUILDFLEET_PLATFORMS" --push -t IMAGE .',
    ]
    return "\n".join(lines) + "\n"


# The AWS CLI assumes AWS_ROLE_ARN by web identity itself when AWS_WEB_IDENTITY_TOKEN_FILE names a
# token: CircleCI's OIDC token for this job, audience the organization ID (the role's trust).
CIRCLECI_WEB_IDENTITY = (
    "# AWS credentials for the wake step from the job's OIDC token (no stored key)\n"
    f'export AWS_ROLE_ARN="${WAKE_ROLE}" AWS_ROLE_SESSION_NAME="buildfleet-wake-$CIRCLE_BUILD_NUM"\n'
    'export AWS_WEB_IDENTITY_TOKEN_FILE="$(mktemp)"\n'
    'printf %s "$CIRCLE_OIDC_TOKEN_V2" > "$AWS_WEB_IDENTITY_TOKEN_FILE"\n'
)


def circleci(
    builder: str,
    nodes: Sequence[Node],
    platforms: Sequence[str],
    wake: Wake | None = None,
    cache: str = "",
    exchange: Exchange | None = None,
) -> str:
    """A complete CircleCI config (the seed's CI; save as .circleci/config.yml): (wake the
    fleet and) join the builder with the shell variant (with ``exchange``: its certificate traded
    for the job's OIDC token), log in, build and push every platform."""
    traded = (exchange, CIRCLECI_TOKEN) if exchange else None
    join = shell_script(builder, nodes, platforms, wake, credentials=CIRCLECI_WEB_IDENTITY, exchange=traded)
    config = {
        "version": 2.1,
        "jobs": {
            "multiarch": {
                "machine": {"image": "ubuntu-2204:current"},
                "steps": [
                    "checkout",
                    {"run": {"name": "Join the buildfleet builder", "command": join}},
                    {
                        "run": {
                            "name": "Log in to the registry",
                            "command": 'echo "$REGISTRY_PASSWORD" | docker login -u "$REGISTRY_USER" '
                            '--password-stdin "${IMAGE%%/*}"',
                        }
                    },
                    {
                        "run": {
                            "name": "Build and push every platform",
                            "command": build_command(builder, nodes, Image('"${IMAGE%:*}"', '"${IMAGE##*:}"', cache)),
                        }
                    },
                ],
            }
        },
        "workflows": {"buildfleet": {"jobs": ["multiarch"]}},
    }
    wake_note = (
        f"# The wake step trades the job's OIDC token ($CIRCLE_OIDC_TOKEN_V2) for AWS credentials: set AWS_REGION and\n"
        f"# {WAKE_ROLE}, the role the stack makes when buildfleet:wakeCircleciOrgId and wakeCircleciProjectIds\n"
        "# name this project (pulumi stack output wakeCircleciRoleArn). No AWS key is stored.\n"
        if wake
        else ""
    )
    header = (
        "# buildfleet: every platform on the fleet's builder. Save as .circleci/config.yml. No buildfleet secret:\n"
        "# each job trades $CIRCLE_OIDC_TOKEN_V2 at the fleet's token exchange for an hour's certificate. In a\n"
        "# context or the project's environment variables set IMAGE (registry/name:tag), REGISTRY_USER,\n"
        "# REGISTRY_PASSWORD for the push.\n"
        if exchange
        else "# buildfleet: every platform on the fleet's builder. Save as .circleci/config.yml; in a context or the\n"
        "# project's environment variables set BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT, BUILDFLEET_CLIENT_KEY, and\n"
        "# IMAGE (registry/name:tag), REGISTRY_USER, REGISTRY_PASSWORD for the push.\n"
    )
    return header + wake_note + _yaml(config)


def hosted_runners_reach(features: Features, buildkitd_only: Sequence[str]) -> bool:
    """Whether CI's hosted runners reach this fleet's buildkitd as it is set up: only hosts behind
    a CIDR firewall whose buildkitd is open to the internet (buildkitdCidrs) for them."""
    return features.cidr_firewall and any(c in WORLD for c in buildkitd_only)


def reach_note(features: Features, allowed: Sequence[str], buildkitd_only: Sequence[str]) -> str:
    """How a CI job reaches the fleet's buildkitd, as this fleet is set up: one comment line."""
    if features.on_this_machine:
        return "# reach: a local fleet listens on 127.0.0.1 of the machine it runs on; the CI job must run there."
    if not features.cidr_firewall:
        return "# reach: static hosts answer wherever your network routes to their addresses."
    if any(c in WORLD for c in buildkitd_only):
        return (
            "# reach: buildkitd is open to the internet (buildfleet:buildkitdCidrs) for hosted runners; only the "
            "fleet's client certificate gets in, so keep the three secrets secret. SSH stays on allowedCidrs."
        )
    if buildkitd_only:
        return f"# reach: buildkitd answers {', '.join([*allowed, *buildkitd_only])} (allowedCidrs + buildkitdCidrs)."
    return (
        f"# reach: buildkitd answers only {', '.join(allowed) or 'no one'} (allowedCidrs): run the job on a runner "
        "in those networks (e.g. self-hosted in the VPC), or add hosted runners with buildfleet:buildkitdCidrs."
    )


def with_note(rendered: str, note: str) -> str:
    """The note as the file's first comment (after a shebang)."""
    if rendered.startswith("#!"):
        shebang, _, rest = rendered.partition("\n")
        return f"{shebang}\n{note}\n{rest}"
    return f"{note}\n{rendered}"


def secret_files(tls_ca: str, tls_cert: str, tls_key: str) -> dict[str, str]:
    """Each CI secret and the file (in the fleet's state) whose content it must hold."""
    return {"BUILDFLEET_CA": tls_ca, "BUILDFLEET_CLIENT_CERT": tls_cert, "BUILDFLEET_CLIENT_KEY": tls_key}
