"""What a CI job pastes in to use the fleet's builder, rendered from the live inventory. Pure.

Every node is a remote-driver node over mTLS, so a CI job needs no SSH key: only the
fleet's CA and the client certificate and key, kept as three CI secrets
(BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT, BUILDFLEET_CLIENT_KEY: PEM text).
GitHub Actions' docker/setup-buildx-action takes them per node as
BUILDER_NODE_<n>_AUTH_TLS_CACERT / _CERT / _KEY (its documented names), node 0 being
``endpoint`` and the others ``append`` entries in order.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from provisioning.builder.nodes import Node

SECRETS = {"BUILDFLEET_CA": "ca", "BUILDFLEET_CLIENT_CERT": "cert", "BUILDFLEET_CLIENT_KEY": "key"}
GITHUB_SUFFIX = {"ca": "CACERT", "cert": "CERT", "key": "KEY"}


@dataclass(frozen=True)
class CINode:
    endpoint: str
    platforms: tuple[str, ...]
    servername: str

    @classmethod
    def of(cls, node: Node) -> CINode:
        return cls(node.endpoint, node.platforms, dict(node.driver_opts)["servername"])


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML scalar


def github_actions(builder: str, nodes: Sequence[Node]) -> str:
    ci = [CINode.of(n) for n in nodes]
    lines = [
        "# docker/setup-buildx-action step: one remote node per buildfleet host (mTLS).",
        "# Create the repository secrets BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT, BUILDFLEET_CLIENT_KEY first.",
        "- name: Set up the buildfleet builder",
        "  uses: docker/setup-buildx-action@v3",
        "  with:",
        f"    name: {_q(builder)}",
        "    driver: remote",
        f"    endpoint: {_q(ci[0].endpoint)}",
        f"    platforms: {_q(','.join(ci[0].platforms))}",
        f"    driver-opts: {_q('servername=' + ci[0].servername)}",
    ]
    if len(ci) > 1:
        lines.append("    append: |")
        for node in ci[1:]:
            lines += [
                f"      - endpoint: {_q(node.endpoint)}",
                f"        platforms: {_q(','.join(node.platforms))}",
                "        driver-opts:",
                f"          - {_q('servername=' + node.servername)}",
            ]
    lines.append("  env:")
    for index in range(len(ci)):
        for secret, kind in SECRETS.items():
            lines.append(f"    BUILDER_NODE_{index}_AUTH_TLS_{GITHUB_SUFFIX[kind]}: ${{{{ secrets.{secret} }}}}")
    return "\n".join(lines) + "\n"


def shell_script(builder: str, nodes: Sequence[Node], platforms: Sequence[str]) -> str:
    """POSIX sh for any CI: write the secrets to files, create the builder, show it."""
    ci = [CINode.of(n) for n in nodes]
    lines = [
        "#!/bin/sh",
        "# buildfleet builder for any CI. Needs BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT and",
        "# BUILDFLEET_CLIENT_KEY (PEM text) in the environment, and docker with buildx.",
        "set -eu",
        "tls=$(mktemp -d)",
        "umask 077",
    ]
    for secret, kind in SECRETS.items():
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


def circleci(builder: str, nodes: Sequence[Node], platforms: Sequence[str]) -> str:
    """A CircleCI job (the seed's CI): the shell variant as a step, then the build."""
    script = shell_script(builder, nodes, platforms)
    body = "\n".join(f"            {line}" for line in script.splitlines())
    return (
        "# CircleCI job: add BUILDFLEET_CA, BUILDFLEET_CLIENT_CERT, BUILDFLEET_CLIENT_KEY to a context\n"
        "# or the project's environment variables; IMAGE is yours.\n"
        "jobs:\n"
        "  multiarch:\n"
        "    machine:\n"
        "      image: ubuntu-2204:current\n"
        "    steps:\n"
        "      - checkout\n"
        "      - run:\n"
        "          name: Join the buildfleet builder\n"
        "          command: |\n"
        f"{body}\n"
        "      - run:\n"
        "          name: Build and push every platform\n"
        f"          command: docker buildx build --builder {shlex.quote(builder)} "
        f'--platform {shlex.quote(",".join(platforms))} --push -t "$IMAGE" .\n'
    )


def secret_files(tls_ca: str, tls_cert: str, tls_key: str) -> dict[str, str]:
    """Each CI secret and the file (in the fleet's state) whose content it must hold."""
    return {"BUILDFLEET_CA": tls_ca, "BUILDFLEET_CLIENT_CERT": tls_cert, "BUILDFLEET_CLIENT_KEY": tls_key}
