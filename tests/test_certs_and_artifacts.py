"""mTLS material and artifacts: made once, reused byte for byte, and checked by sha256."""

import datetime
import hashlib
import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from provisioning.artifacts import BUILDKIT_VERSION, BUILDX_VERSION, GO_MODULES, ArtifactError, LocalArtifacts
from provisioning.certs import VALID_DAYS, FleetCA, certificate_status
from provisioning.hosts.services import Service
from provisioning.remote import facts as f
from provisioning.remote.facts import batch_script, parse_batch


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_server_cert_carries_every_address_and_is_signed_by_the_fleet_ca(tmp_path):
    ca = FleetCA(tmp_path)
    server = load(ca.server("amd64-0", ["127.0.0.1", "203.0.113.5", "amd64-0", "127.0.0.1"]).cert)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("203.0.113.5"),
    }
    assert sans.get_values_for_type(x509.DNSName) == ["amd64-0"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    server.verify_directly_issued_by(load(ca.ca().cert))


def test_client_cert_is_for_client_auth(tmp_path):
    client = load(FleetCA(tmp_path).client().cert)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def test_certs_are_reused_until_the_names_change(tmp_path):
    ca = FleetCA(tmp_path)
    first = ca.server("h", ["127.0.0.1"])
    assert FleetCA(tmp_path).server("h", ["127.0.0.1"]) == first
    assert ca.server("h", ["127.0.0.1", "198.51.100.9"]).cert != first.cert
    assert oct((tmp_path / "hosts" / "h" / "key.pem").stat().st_mode & 0o777) == "0o600"


def test_systemd_unit_restarts_and_starts_at_boot():
    unit = (
        Service("buildkitd", ("/usr/local/bin/buildkitd", "--addr", "tcp://0.0.0.0:1234"), "BuildKit").unit().decode()
    )
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit
    assert "ExecStart=/usr/local/bin/buildkitd --addr tcp://0.0.0.0:1234" in unit


@pytest.mark.process
def test_batched_facts_run_in_one_shell_and_parse_back(tmp_path):
    facts = {
        "arch": f.Arch(),
        "missing": f.PackageVersion("no-such-package-here"),
        "digests": f.FileDigests(("/etc/hostname", "/nonexistent"), cache=str(tmp_path / "digests")),
    }
    result = subprocess.run(["sh", "-c", batch_script(facts)], capture_output=True, text=True)
    values = parse_batch(facts, result.stdout)
    assert values["arch"] in ("amd64", "arm64")
    assert values["missing"] is None
    assert values["digests"]["/nonexistent"] is None
    assert values["digests"]["/etc/hostname"] == hashlib.sha256(Path("/etc/hostname").read_bytes()).hexdigest()
    assert values.stderr["missing"].startswith("dpkg-query: no packages found matching no-such-package-here")
    assert values.stderr["arch"] == ""


@pytest.mark.process
def test_file_digests_are_cached_until_the_file_changes(tmp_path):
    target = tmp_path / "binary"
    target.write_bytes(b"one")
    fact = f.FileDigests((str(target),), cache=str(tmp_path / "cache" / "digests"))

    def digest():
        result = subprocess.run(fact.argv, capture_output=True, text=True, check=True)
        return fact.parse(result.returncode, result.stdout)[str(target)]

    assert digest() == hashlib.sha256(b"one").hexdigest()
    assert (tmp_path / "cache" / "digests").read_text().startswith(hashlib.sha256(b"one").hexdigest())
    cache = tmp_path / "cache" / "digests"
    cache.write_text(cache.read_text().replace(hashlib.sha256(b"one").hexdigest(), "c" * 64))
    assert digest() == "c" * 64  # answered from the cache, not hashed
    target.write_bytes(b"two")  # same size, new ctime
    assert digest() == hashlib.sha256(b"two").hexdigest()


def write_local(root, tool, version, arch, name, data, listing, recorded=None):
    directory = root / tool / version / arch
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    (directory / listing).write_text(f"{recorded or hashlib.sha256(data).hexdigest()}  {name}\n")


def test_local_artifacts_are_checked_against_their_recorded_sums(tmp_path):
    write_local(tmp_path, "buildx", BUILDX_VERSION, "amd64", "docker-buildx", b"plugin", "docker-buildx.sha256")
    assert LocalArtifacts(tmp_path).buildx("amd64").sha256 == hashlib.sha256(b"plugin").hexdigest()
    write_local(
        tmp_path, "buildx", BUILDX_VERSION, "arm64", "docker-buildx", b"tampered", "docker-buildx.sha256", "0" * 64
    )
    with pytest.raises(ArtifactError, match="expected 0000"):
        LocalArtifacts(tmp_path).buildx("arm64")
    with pytest.raises(ArtifactError, match="no buildkitd"):
        LocalArtifacts(tmp_path).buildkit("amd64")


def test_a_batch_cut_short_names_the_facts_it_lost():
    facts = {"arch": f.Arch(), "init": f.InitSystem()}
    cut = "::buildfleet-fact:: 0\nx86_64\n::buildfleet-fact:: 0\n::buildfleet-fact:: 1\nsys"
    with pytest.raises(Exception, match="facts init produced no output"):
        parse_batch(facts, cut)


def test_doctor_sees_each_certificate_expiry_and_one_the_fleet_ca_did_not_issue(tmp_path):
    ca = FleetCA(tmp_path / "tls")
    ca.server("amd64-0", ["127.0.0.1"])
    ca.client()
    FleetCA(tmp_path / "other").server("stray", ["127.0.0.1"])
    shutil.copytree(tmp_path / "other" / "hosts" / "stray", tmp_path / "tls" / "hosts" / "stray")
    now = datetime.datetime.now(datetime.timezone.utc)
    found = {c.name: c for c in certificate_status(tmp_path / "tls", now)}
    assert sorted(found) == ["ca", "client", "hosts/amd64-0", "hosts/stray"]
    assert [found[n].ok for n in sorted(found)] == [True, True, True, False]
    assert found["hosts/stray"].describe().endswith(", not issued by the fleet's CA")
    later = certificate_status(tmp_path / "tls", now + datetime.timedelta(days=VALID_DAYS - 10))
    assert {c.name: (c.ok, c.days_left) for c in later}["client"] == (False, 9)  # within RENEW_DAYS


def test_the_pinned_versions_are_the_ones_the_committed_go_modules_require():
    for tool, module, version in (
        ("buildkit", "github.com/moby/buildkit", BUILDKIT_VERSION),
        ("buildx", "github.com/docker/buildx", BUILDX_VERSION),
    ):
        go_mod = (GO_MODULES / tool / "go.mod").read_text()
        assert (
            f"\t{module} v{version} " in go_mod
            and f"{module} v{version} h1:" in (GO_MODULES / tool / "go.sum").read_text()
        )
        assert "replace" not in go_mod  # the upstream build list, exactly
