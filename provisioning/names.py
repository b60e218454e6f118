"""Names the operator chooses that buildfleet also uses as file names: fleets, builders, clients.

A fleet name becomes ``<state root>/<fleet>``, a directory ``down`` removes, so it must
never be able to point anywhere else ('', '.', '..', '/', 'a/b'). Pure: no I/O.
"""

from __future__ import annotations

import re

from provisioning.errors import ConfigError

# Lower case because it also names Docker containers, networks and the default Pulumi stack.
FLEET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# A builder's ownership record is '<records>/<name>.json': no '/', and never '.' or '..'.
BUILDER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def check_fleet_name(name: str) -> str:
    return _plain(name, "fleet", "it names a directory, containers and a stack")


def check_client_name(name: str) -> str:
    """A consumer's name (buildfleet client): ``<state>/tls/consumers/<name>``, as plain as a fleet's."""
    return _plain(name, "client", "it names a directory")


def _plain(name: str, what: str, names: str) -> str:
    if not FLEET_NAME.fullmatch(name):
        raise ConfigError(
            f"{what} name {name!r} is not allowed: use 1 to 63 characters of a-z, 0-9 and '-', "
            f"starting with a letter or digit ({names})"
        )
    return name


def check_builder_name(name: str) -> str:
    if not BUILDER_NAME.fullmatch(name):
        raise ConfigError(
            f"builder name {name!r} is not allowed: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return name
