"""state export for a teammate's SSH key: the identity sealed as an age file for the keys named
(no passphrase to hand over), opened by the private half of any one of them and by nothing else
(see provisioning.recipients)."""

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pyrage import x25519
from test_handover import operator_state

from provisioning.cli import main
from provisioning.errors import ConfigError
from provisioning.handover import identity_files, pack, unpack
from provisioning.recipients import MAGIC, open_with, parse_identity, parse_recipients, seal_for
from provisioning.state import FleetState

NO_ASK = lambda: pytest.fail("asked a passphrase for an unprotected key")  # noqa: E731


def ssh_key(kind="ed25519", passphrase: bytes | None = None, comment=b"alice@laptop"):
    """A key pair as ssh-keygen writes one: the private file's bytes and the public line."""
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
    protect = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, protect)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, (public + b" " + comment).decode()


def test_any_one_of_the_teammates_keys_opens_the_bundle_and_it_holds_the_same_files(tmp_path):
    state = operator_state(tmp_path)
    (alice, alice_pub), (bob, bob_pub) = ssh_key(), ssh_key("rsa")
    keys = f"# the team's keys, as github.com/USER.keys lists them\n{alice_pub}\n\n{bob_pub}\n"
    bundle = seal_for(pack(state), parse_recipients(keys, "team.keys"))
    assert bundle.startswith(MAGIC) and b"PRIVATE KEY" not in bundle and b"buildkitdPort" not in bundle
    for private in (alice, bob):
        files = unpack(open_with(bundle, parse_identity(private, "id", NO_ASK), "id"))
        assert sorted(files) == identity_files(state)
        assert all(files[name] == (state.root / name).read_bytes() for name in files)


def test_a_key_it_was_not_sealed_for_or_a_changed_byte_opens_nothing(tmp_path):
    bundle = seal_for(pack(operator_state(tmp_path)), parse_recipients(ssh_key()[1], "--recipient"))
    mallory = parse_identity(ssh_key()[0], "/home/mallory/.ssh/id_ed25519", NO_ASK)
    with pytest.raises(ConfigError, match="sealed for other keys than /home/mallory/.ssh/id_ed25519's"):
        open_with(bundle, mallory, "/home/mallory/.ssh/id_ed25519")
    alice_private, alice_public = ssh_key()
    sealed = bytearray(seal_for(pack(operator_state(tmp_path, "again")), parse_recipients(alice_public, "k")))
    sealed[-5] ^= 1
    with pytest.raises(ConfigError, match="does not open with id .*changed since export"):
        open_with(bytes(sealed), parse_identity(alice_private, "id", NO_ASK), "id")


def test_a_passphrase_protected_ssh_key_is_opened_with_its_passphrase_asked_once(tmp_path):
    private, public = ssh_key(passphrase=b"the key's own passphrase")
    bundle = seal_for(pack(operator_state(tmp_path)), parse_recipients(public, "--recipient"))
    asked = []
    identity = parse_identity(private, "id", lambda: asked.append(1) or "the key's own passphrase")
    assert unpack(open_with(bundle, identity, "id")) and asked == [1]
    with pytest.raises(ConfigError, match="id: the passphrase does not open this key"):
        parse_identity(private, "id", lambda: "a wrong guess")


def test_an_age_key_pair_works_as_well_as_an_ssh_one(tmp_path):
    identity = x25519.Identity.generate()
    bundle = seal_for(pack(operator_state(tmp_path)), parse_recipients(str(identity.to_public()), "--recipient"))
    key_file = f"# created: 2026-12-04\n# public key: {identity.to_public()}\n{identity}\n".encode()
    assert unpack(open_with(bundle, parse_identity(key_file, "key.txt", NO_ASK), "key.txt"))


@pytest.mark.parametrize(
    ("keys", "culprit"),
    [
        ("ssh-ed25519 AAAAnot-a-key alice", r"team.keys: not a valid ssh-ed25519 key"),
        ("ecdsa-sha2-nistp256 AAAAE2VjZHNh carol", r"team.keys: 'ecdsa-sha2-nistp256' is no key age seals for"),
        (f"{ssh_key()[1]}\nssh-dss AAAAB3NzaC1kc3M dave", r"team.keys:2: 'ssh-dss' is no key age seals for"),
        ("# only a comment\n\n", r"team.keys names no key"),
    ],
    ids=["broken-ed25519", "ecdsa", "second-line-dsa", "empty"],
)
def test_a_recipient_list_with_a_line_that_is_no_key_is_refused_naming_the_line(keys, culprit):
    with pytest.raises(ConfigError, match=culprit):
        parse_recipients(keys, "team.keys")


def test_an_identity_that_cannot_open_an_age_file_is_named():
    ecdsa = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="id_ecdsa: not an ed25519 or RSA key"):
        parse_identity(ecdsa, "id_ecdsa", NO_ASK)
    with pytest.raises(ConfigError, match="notes.txt is no private key"):
        parse_identity(b"just some notes\n", "notes.txt", NO_ASK)


def test_state_export_for_a_key_and_import_with_it_through_the_command(tmp_path, monkeypatch, capsys):
    first = operator_state(tmp_path)
    private, public = ssh_key()
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "id_ed25519").write_bytes(private)
    (tmp_path / "alice" / "id_ed25519.pub").write_text(public + "\n")
    bundle = tmp_path / "team.age"
    monkeypatch.delenv("BUILDFLEET_STATE_PASSPHRASE", raising=False)  # never asked: stdin has none either
    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(first.root.parent))
    exported = main(
        [
            "state",
            "export",
            str(bundle),
            "--fleet",
            "team",
            "--recipients-file",
            str(tmp_path / "alice" / "id_ed25519.pub"),
        ]
    )
    assert exported == 0 and bundle.read_bytes().startswith(MAGIC)
    assert "age -d -i KEY opens it too" in capsys.readouterr().out
    second = FleetState(tmp_path / "second" / "team")
    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(second.root.parent))
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))  # no ~/.ssh key to fall back on
    assert main(["state", "import", str(bundle), "--fleet", "team"]) == 2
    assert "--identity FILE" in capsys.readouterr().err and not second.root.exists()
    imported = main(
        ["state", "import", str(bundle), "--fleet", "team", "--identity", str(tmp_path / "alice" / "id_ed25519")]
    )
    assert imported == 0, capsys.readouterr().err
    assert identity_files(second) == identity_files(first)
    assert all((second.root / n).read_bytes() == (first.root / n).read_bytes() for n in identity_files(first))


def test_a_recipient_that_is_no_key_writes_no_file(tmp_path, monkeypatch, capsys):
    state = operator_state(tmp_path)
    monkeypatch.setenv("BUILDFLEET_STATE_DIR", str(state.root.parent))
    bundle = tmp_path / "team.age"
    code = main(
        ["state", "export", str(bundle), "--fleet", "team", "--recipient", ssh_key()[1], "--recipient", "alice"]
    )
    assert code == 2 and "--recipient: 'alice' is no key age seals for" in capsys.readouterr().err
    assert not bundle.exists()


@pytest.mark.process  # age, the reference implementation's command (Debian's age package)
def test_the_age_command_opens_the_bundle_with_the_teammates_ssh_key(tmp_path):
    private, public = ssh_key()
    key = tmp_path / "id_ed25519"
    key.write_bytes(private)
    key.chmod(0o600)
    state = operator_state(tmp_path)
    bundle = seal_for(pack(state), parse_recipients(public, "--recipient"))
    opened = subprocess.run(["age", "--decrypt", "-i", str(key)], input=bundle, capture_output=True, check=True)
    assert sorted(unpack(opened.stdout)) == identity_files(state)
