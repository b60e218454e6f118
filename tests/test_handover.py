"""One fleet identity for every operator: state export seals it, state import rebuilds it, and
nothing but the identity travels or is written (see provisioning.handover)."""

import io
import secrets
import tarfile

import pytest

from provisioning.certs import FleetCA
from provisioning.consumers import Consumers
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.handover import (
    MAGIC,
    STACK_PREFIX,
    _key,
    from_stack,
    identity_files,
    install,
    seal,
    to_stack,
    unseal,
)
from provisioning.state import FleetState

PASSPHRASE = "correct horse battery staple"


def operator_state(tmp_path, name="first") -> FleetState:
    """A fleet as an operator's up leaves it: CA, client, a host's and a consumer's files, key, settings."""
    state = FleetState(tmp_path / name / "team")
    state.ensure()
    state.ensure_ssh_key()
    state.write_known_hosts({("127.0.0.1", 2222): "ssh-ed25519 AAAAhostkey"})
    (state.root / "target").write_text("static\n")
    state.save_settings({"buildkitdPort": 1234})
    ca = FleetCA(state.root / "tls")
    ca.client()
    ca.server("amd64-0", ["amd64-0"])
    ca.write_trust()
    Consumers(state.root / "tls").add("ci")
    for own in ("builders/buildfleet-team.json", "registry/pid", "vm/amd64-0/disk.qcow2"):  # this operator's only
        (state.root / own).parent.mkdir(parents=True, exist_ok=True)
        (state.root / own).write_text("mine\n")
    return state


def test_a_teammate_gets_the_same_ca_keys_and_settings_and_nothing_of_the_first_operators_own(tmp_path):
    first = operator_state(tmp_path)
    second = FleetState(tmp_path / "second" / "team")
    written = install(second, unseal(seal(first, PASSPHRASE), PASSPHRASE))
    assert written == identity_files(first) == identity_files(second)
    for name in written:
        assert (second.root / name).read_bytes() == (first.root / name).read_bytes()
    assert "tls/ca/key.pem" in written and "tls/consumers/ci/ca/key.pem" in written and "ssh/id_ed25519" in written
    assert not any(n.startswith(("builders/", "registry/", "vm/")) for n in written)
    for secret in ("tls/ca/key.pem", "ssh/id_ed25519", "tls/client/key.pem"):
        assert (second.root / secret).stat().st_mode & 0o777 == 0o600
    assert second.root.stat().st_mode & 0o777 == 0o700
    assert FleetCA(second.root / "tls").trust() == FleetCA(first.root / "tls").trust()  # no second CA


def test_a_wrong_passphrase_or_a_changed_byte_opens_nothing(tmp_path):
    bundle = seal(operator_state(tmp_path), PASSPHRASE)
    with pytest.raises(ConfigError, match="does not open with this passphrase"):
        unseal(bundle, "another passphrase entirely")
    changed = bytearray(bundle)
    changed[-5] ^= 1
    with pytest.raises(ConfigError, match="does not open with this passphrase"):
        unseal(bytes(changed), PASSPHRASE)
    with pytest.raises(ConfigError, match="not a buildfleet state bundle"):
        unseal(b"PK\x03\x04 a zip file", PASSPHRASE)


def test_the_bundle_is_sealed_and_two_exports_differ(tmp_path):
    state = operator_state(tmp_path)
    one, two = seal(state, PASSPHRASE), seal(state, PASSPHRASE)
    assert one != two  # a fresh salt and nonce each time
    assert b"PRIVATE KEY" not in one and b"buildkitdPort" not in one


def test_a_short_passphrase_and_a_fleet_without_a_ca_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="shorter than 12 characters"):
        seal(operator_state(tmp_path), "short")
    empty = FleetState(tmp_path / "empty" / "team")
    empty.ensure()
    with pytest.raises(BuildfleetError, match="has no fleet CA"):
        seal(empty, PASSPHRASE)


def test_an_operators_own_fleet_of_that_name_is_never_overwritten(tmp_path):
    files = unseal(seal(operator_state(tmp_path), PASSPHRASE), PASSPHRASE)
    mine = operator_state(tmp_path, "second")
    before = {n: (mine.root / n).read_bytes() for n in identity_files(mine)}
    with pytest.raises(BuildfleetError, match="already has state here"):
        install(mine, files)
    assert {n: (mine.root / n).read_bytes() for n in identity_files(mine)} == before


def sealed_archive(members: list[tarfile.TarInfo], passphrase: str = PASSPHRASE) -> bytes:
    """A bundle sealed as export seals one, holding whatever members a tamperer chose."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return MAGIC + salt + nonce + AESGCM(_key(passphrase, salt)).encrypt(nonce, archive.getvalue(), MAGIC)


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size if kind == tarfile.REGTYPE else 0, link
    return info


@pytest.mark.parametrize(
    "bad",
    [
        member("tls/../../../etc/cron.d/x"),
        member("/etc/passwd"),
        member("tls/ca/cert.pem", tarfile.SYMTYPE, link="/etc/shadow"),
        member("builders/buildfleet-team.json"),
        member(".bashrc"),
    ],
    ids=["climbs-out", "absolute", "symlink", "not-identity", "dotfile"],
)
def test_a_bundle_holding_anything_but_identity_files_is_refused_whole_and_writes_nothing(tmp_path, bad):
    canary = tmp_path / "canary"
    canary.write_text("untouched\n")
    bundle = sealed_archive([member("tls/ca/cert.pem"), bad])
    target = FleetState(tmp_path / "import" / "team")
    with pytest.raises(ConfigError, match="no part of a fleet's identity: refused"):
        install(target, unseal(bundle, PASSPHRASE))
    assert not target.root.exists() and canary.read_text() == "untouched\n"


def test_the_stack_form_carries_the_same_files_and_the_same_identity_gives_the_same_value(tmp_path):
    first = operator_state(tmp_path)
    value = to_stack(first)
    assert value.startswith(STACK_PREFIX) and to_stack(first) == value  # unchanged: no new config, no update
    second = FleetState(tmp_path / "second" / "team")
    assert install(second, from_stack(value)) == identity_files(first)
    Consumers(first.root / "tls").add("another")
    assert to_stack(first) != value  # a consumer added: the stack's copy is behind
    assert len(value) < 16 * 1024  # a fleet's identity is a few KB: one CLI argument takes it easily


def test_a_stack_value_buildfleet_did_not_write_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not one buildfleet wrote"):
        from_stack("hello")
    with pytest.raises(ConfigError, match="not valid base64"):
        from_stack(STACK_PREFIX + "!!!")
    with pytest.raises(ConfigError, match="no archive buildfleet wrote"):
        from_stack(STACK_PREFIX + "aGVsbG8=")
    with pytest.raises(BuildfleetError, match="has no fleet CA"):
        to_stack(FleetState(tmp_path / "empty"))
