"""``buildfleet state export|import`` and ``attach``: one fleet identity for every operator
(see handover): a sealed file for any fleet, the stack itself for an AWS one."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path

from provisioning.cli.context import Fleet
from provisioning.cli.options import add_fleet_options, add_project_dir, positive
from provisioning.errors import ConfigError
from provisioning.handover import identity_files, install, pack, read_bundle, seal, unpack, unseal
from provisioning.targets.base import KeepsIdentity

PASSPHRASE_ENV = "BUILDFLEET_STATE_PASSPHRASE"
DEFAULT_IDENTITIES = (Path("~/.ssh/id_ed25519"), Path("~/.ssh/id_rsa"))  # as ssh and age look


def passphrase(confirm: bool) -> str:
    """From the environment (a script, a secret store), else asked twice at the terminal on export."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given is not None:
        return given
    try:
        typed = getpass.getpass("passphrase for the fleet's state bundle: ")
        if confirm and getpass.getpass("the same again: ") != typed:
            raise ConfigError("the two passphrases differ: nothing was written")
    except EOFError:
        raise ConfigError(f"no passphrase: set {PASSPHRASE_ENV}, or run this at a terminal") from None
    return typed


def write_new_private(path: Path, data: bytes) -> None:
    """A new file only its owner reads, in a directory the user chose (left as it is); an existing
    file, or a link in its place, is refused."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists: export writes a new file only") from None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def cmd_state(fleet: Fleet, args: argparse.Namespace) -> int:
    console, path = fleet.console, Path(args.file)
    keys = bool(args.recipient or args.recipients_file)
    if args.action == "export":
        if args.identity:
            raise ConfigError("--identity opens a bundle: it is for state import (export seals with --recipient)")
        bundle = sealed_for_keys(fleet, args) if keys else seal(fleet.state, passphrase(confirm=True))
        write_new_private(path, bundle)
        count = len(identity_files(fleet.state))
        console.print(f"fleet {fleet.name!r}: {count} identity files sealed into {path} ({len(bundle)} bytes)")
        opens = "with the private half of a key named (age -d -i KEY opens it too)" if keys else "with the passphrase"
        console.print(f"a teammate runs: buildfleet state import {path.name} --fleet {fleet.name} ({opens})")
        return 0
    if keys:
        raise ConfigError("--recipient and --recipients-file seal a bundle: they are for state export")
    bundle = read_bundle(path)
    keyed = for_keys(bundle)
    if not keyed and args.identity:
        raise ConfigError(f"{path} is sealed with a passphrase, not for keys: leave out --identity")
    files = opened_with_key(path, bundle, args.identity) if keyed else unseal(bundle, passphrase(False))
    written = install(fleet.state, files)
    console.print(f"fleet {fleet.name!r}: {len(written)} identity files from {path} in {fleet.state.root}")
    console.print("the same CA, keys and settings as the operator who exported them: configure changes nothing")
    return 0


def sealed_for_keys(fleet: Fleet, args: argparse.Namespace) -> bytes:
    """The identity as an age file for the keys named: each --recipient a key, each
    --recipients-file a file of them (an id_ed25519.pub, a github.com/USER.keys); every key
    read before anything is sealed."""
    from provisioning.recipients import parse_recipients, seal_for

    recipients = [r for key in args.recipient for r in parse_recipients(key, "--recipient")]
    for file in args.recipients_file:
        recipients += parse_recipients(read_bundle(file.expanduser()).decode(errors="replace"), str(file))
    return seal_for(pack(fleet.state), recipients)


def for_keys(bundle: bytes) -> bool:
    from provisioning.recipients import MAGIC

    return bundle.startswith(MAGIC)


def opened_with_key(path: Path, bundle: bytes, identity: Path | None) -> dict[str, bytes]:
    """An age bundle's files, opened with --identity or this user's own SSH key."""
    from provisioning.recipients import open_with, parse_identity

    key = identity or next((k for k in DEFAULT_IDENTITIES if k.expanduser().is_file()), None)
    if key is None:
        raise ConfigError(
            f"{path} is sealed for SSH or age keys, and there is no {' or '.join(map(str, DEFAULT_IDENTITIES))}: "
            "--identity FILE (the private half of a key it was sealed for, or an age identity file)"
        )
    key = key.expanduser()

    def ask() -> str:  # only for a key protected by a passphrase of its own
        try:
            return getpass.getpass(f"passphrase for {key}: ")
        except EOFError:
            raise ConfigError(f"{key} is protected by a passphrase, and there is no terminal to ask it at") from None

    return unpack(open_with(bundle, parse_identity(read_bundle(key), str(key), ask), str(key)))


def add_state(commands: argparse._SubParsersAction) -> None:
    """The state command: a fleet's identity handed from one operator to another."""
    state = commands.add_parser(
        "state",
        help="export the fleet's identity (CA, keys, settings) sealed for a teammate's SSH key or a passphrase, "
        "or import one",
        description="export seals the fleet's CA and every certificate it issued, its SSH key and pinned host "
        "keys, its settings and inventory into FILE: for the SSH or age public keys named (an age file, which "
        "the private half of any one of them opens), else with a passphrase (AES-256-GCM, the key derived with "
        f"scrypt; {PASSPHRASE_ENV}, else asked). import writes them into this machine's state for the fleet, "
        "which must not exist yet here: a second operator then has the same fleet, not a second CA.",
    )
    state.add_argument("action", choices=("export", "import"))
    state.add_argument("file", help="the bundle to write (export) or read (import)")
    state.add_argument(
        "--recipient",
        action="append",
        default=[],
        metavar="KEY",
        help="export: seal for this public key (ssh-ed25519 ..., ssh-rsa ..., or age1...); repeatable",
    )
    state.add_argument(
        "--recipients-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="export: seal for every key in FILE, one a line (an id_ed25519.pub, a github.com/USER.keys); repeatable",
    )
    state.add_argument(
        "--identity",
        type=Path,
        metavar="FILE",
        help="import: the private key that opens a bundle sealed for keys (default: ~/.ssh/id_ed25519, "
        "else ~/.ssh/id_rsa), or an age identity file",
    )
    add_fleet_options(state)
    state.set_defaults(handler=cmd_state)


def cmd_attach(fleet: Fleet, args: argparse.Namespace) -> int:
    """This machine takes the fleet an AWS stack keeps: no second CA, no second SSH key."""
    target = fleet.target("aws", progress=True)
    assert isinstance(target, KeepsIdentity)  # the aws target keeps the identity in its stack
    written = target.attach()
    inventory = fleet.inventory()
    console = fleet.console
    console.print(
        f"fleet {fleet.name!r}: {len(written)} identity files from stack {args.stack!r} in {fleet.state.root}; "
        f"hosts {', '.join(h.name for h in inventory.hosts)} pinned by the stack's keys"
    )
    console.print(
        f"the fleet's own CA, keys and settings: buildfleet builder create --fleet {fleet.name} gives this machine "
        "its builder, and configure, up and down act on the same fleet as every other operator's"
    )
    return 0


def add_attach(commands: argparse._SubParsersAction) -> None:
    """The attach command: an AWS fleet's identity, taken from the stack that keeps it."""
    attach = commands.add_parser(
        "attach",
        help="aws: take the fleet a Pulumi stack keeps (its CA, keys and settings) into this machine's state",
        description="Reads the fleet identity up keeps in the stack as a secret (the stack's secrets provider "
        "encrypts it: a passphrase, a KMS key or Pulumi Cloud), and writes it with the inventory and pinned host "
        "keys from the stack's outputs into this machine's state for --fleet, which must not exist here yet; "
        "Pulumi.STACK.yaml too, from the stack's last update, when the project directory has none. Anyone "
        "with access to the stack then has the same fleet, never a second CA.",
    )
    attach.add_argument("--stack", metavar="NAME", required=True, help="the stack that keeps the fleet")
    add_project_dir(attach, help="directory for Pulumi.yaml and the stack file (default: current)")
    attach.add_argument(
        "--ssh-key",
        type=Path,
        metavar="FILE",
        help="private key matching the stack's buildfleet:sshPublicKey when it is a key of the team's own "
        "(unset: the fleet's own key, which the identity carries)",
    )
    attach.add_argument(
        "--wait-timeout",
        type=positive,
        default=900,
        metavar="SECONDS",
        help="how long to read the consoles of hosts whose keys the stack does not have yet (default 900)",
    )
    add_fleet_options(attach, configure_flags=False)
    attach.set_defaults(handler=cmd_attach)
