"""rotate-certs' phases: at no point does a client and a host disagree on whom to trust."""

import datetime

from cryptography import x509
from fleet_parts import trusted_by

from provisioning.certs import FleetCA, TLSFiles, certificate_status


def test_through_every_phase_each_host_and_the_client_accept_each_other(tmp_path):
    ca = FleetCA(tmp_path / "tls")
    client, server = ca.client(), ca.server("amd64-0", ["10.0.0.2"])
    host_trust = client_trust = ca.trust()  # as configured before the rotation

    assert ca.begin_rotation() is True
    client_trust = ca.trust()  # the builder reads trust.pem at its next connection
    assert trusted_by(client_trust, server.cert) and trusted_by(host_trust, client.cert)  # before a host is touched
    host_trust, server = ca.trust(), ca.server("amd64-0", ["10.0.0.2"])  # configure: this host's turn
    assert server.cert != client.cert and trusted_by(client_trust, server.cert) and trusted_by(host_trust, client.cert)

    client = ca.switch_client()
    ca.retire_previous()
    client_trust = ca.trust()
    assert trusted_by(client_trust, server.cert) and trusted_by(
        host_trust, client.cert
    )  # the host keeps both meanwhile
    host_trust = ca.trust()  # configure again: only the new CA
    assert trusted_by(client_trust, server.cert) and trusted_by(host_trust, client.cert)

    ca.end_rotation()
    assert not ca.rotating() and len(x509.load_pem_x509_certificates(ca.trust())) == 1
    assert (tmp_path / "tls" / "trust.pem").read_bytes() == ca.trust()


def test_a_client_of_the_old_ca_is_refused_once_the_rotation_retires_it(tmp_path):
    ca = FleetCA(tmp_path / "tls")
    old_client = ca.client()
    ca.begin_rotation()
    assert trusted_by(ca.trust(), old_client.cert)  # a CI job's copy still works during the rotation
    ca.switch_client()
    ca.retire_previous()
    assert not trusted_by(ca.trust(), old_client.cert)


def test_a_rotation_that_stopped_goes_on_with_the_same_new_ca(tmp_path):
    ca = FleetCA(tmp_path / "tls")
    ca.client()
    ca.begin_rotation()
    new = ca.ca().cert
    assert ca.begin_rotation() is False and ca.ca().cert == new


def test_the_client_files_trust_the_bundle_and_doctor_counts_the_old_client_as_issued(tmp_path):
    ca = FleetCA(tmp_path / "tls")
    ca.client()
    ca.begin_rotation()
    files = TLSFiles.in_state(tmp_path / "tls")
    assert files.ca.read_bytes() == ca.trust() and len(x509.load_pem_x509_certificates(files.ca.read_bytes())) == 2
    status = {s.name: s for s in certificate_status(tmp_path / "tls", datetime.datetime.now(datetime.timezone.utc))}
    assert status["client"].issued_by_ca


def test_a_state_directory_from_before_trust_pem_gets_it_from_its_ca(tmp_path):
    ca = FleetCA(tmp_path / "tls")
    ca.client()
    (tmp_path / "tls" / "trust.pem").unlink()
    assert TLSFiles.in_state(tmp_path / "tls").ca.read_bytes() == (tmp_path / "tls" / "ca" / "cert.pem").read_bytes()
