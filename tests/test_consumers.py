"""A client credential per consumer: its own issuing CA, trusted by the hosts until revoked;
renewed under the same CA, so the hosts never change for a renewal."""

import datetime
import hashlib

import pytest
from fleet_parts import trusted_by

from provisioning.certs import FleetCA
from provisioning.cli import main
from provisioning.consumers import Consumers
from provisioning.errors import BuildfleetError, ConfigError


@pytest.fixture
def tls(tmp_path):
    FleetCA(tmp_path / "tls").client()
    return tmp_path / "tls"


def hosts_trust(tls) -> bytes:
    return FleetCA(tls).trust() + Consumers(tls).trust()  # what configure gives every host


def test_each_consumer_has_its_own_ca_and_revoking_one_leaves_the_others_trusted(tls):
    consumers = Consumers(tls)
    github, laptop = consumers.add("github"), consumers.add("laptop")
    assert trusted_by(hosts_trust(tls), github.cert.read_bytes()) and trusted_by(
        hosts_trust(tls), laptop.cert.read_bytes()
    )
    assert github.ca == laptop.ca == tls / "trust.pem"  # both trust the hosts as the builder does

    consumers.revoke("github")
    assert not trusted_by(hosts_trust(tls), github.cert.read_bytes())
    assert trusted_by(hosts_trust(tls), laptop.cert.read_bytes())
    assert trusted_by(hosts_trust(tls), FleetCA(tls).client().cert)  # the operator's own client too
    assert not (tls / "consumers" / "github" / "key.pem").exists()  # nothing can be signed or presented from here
    assert not (tls / "consumers" / "github" / "ca" / "key.pem").exists()
    with pytest.raises(BuildfleetError, match="client 'github' is revoked"):
        consumers.files("github")
    with pytest.raises(BuildfleetError, match=r"revoked: choose another name"):
        consumers.add("github")


def test_a_renewal_is_a_new_certificate_under_the_same_ca_so_no_host_changes(tls):
    consumers = Consumers(tls)
    first = consumers.add("ci", days=30).cert.read_bytes()
    before = hosts_trust(tls)
    renewed = consumers.renew("ci", days=90).cert.read_bytes()
    assert renewed != first and hosts_trust(tls) == before and trusted_by(before, renewed)
    (listed,) = consumers.listed()
    assert 89 <= (listed.not_after - datetime.datetime.now(datetime.timezone.utc)).days <= 90


def test_list_shows_valid_expired_and_revoked_consumers(tls):
    consumers = Consumers(tls)
    now = datetime.datetime.now(datetime.timezone.utc)
    consumers.add("fresh", days=10)
    consumers.add("stale", days=1, now=now - datetime.timedelta(days=3))
    consumers.add("gone")
    consumers.revoke("gone")
    states = {c.name: c.state(now) for c in consumers.listed()}
    assert states == {"fresh": "valid, 9 days left", "gone": "revoked", "stale": "expired"}


def test_a_name_that_is_not_a_plain_word_is_refused_where_arguments_are_parsed(tls, capsys):
    with pytest.raises(ConfigError, match="client name '../x' is not allowed"):
        Consumers(tls).add("../x")
    with pytest.raises(SystemExit) as parsed:
        main(["client", "add", "A/B"])
    assert parsed.value.code == 2 and "client name 'A/B' is not allowed" in capsys.readouterr().err


def test_the_token_exchanges_consumer_holds_only_its_ca_certificate_and_is_revoked_like_any(tmp_path):
    from provisioning.exchange.service import IssuingCA

    FleetCA(tmp_path / "tls").client()
    consumers = Consumers(tmp_path / "tls")
    cert = IssuingCA(tmp_path / "host" / "ca").ensure("buildfleet oidc exchange CA f")
    consumers.adopt("oidc-exchange", cert)
    assert consumers.trust() == cert and [c.name for c in consumers.listed()] == ["oidc-exchange"]
    with pytest.raises(BuildfleetError, match="is the token exchange's: its CA's key stays on the exchange's host"):
        consumers.renew("oidc-exchange")
    consumers.revoke("oidc-exchange")
    assert consumers.trust() == b"" and consumers.revoked("oidc-exchange")
    assert [(c.name, c.revoked) for c in consumers.listed()] == [("oidc-exchange", True)]  # its certificate stays
    with pytest.raises(BuildfleetError, match="is revoked"):
        consumers.adopt("oidc-exchange", cert)  # what it signed may still be out there


def test_the_exchange_renewed_is_a_new_ca_of_its_host_and_the_revoked_one_is_never_adopted_again(tmp_path):
    from provisioning.exchange.service import IssuingCA

    consumers, host = Consumers(tmp_path / "tls"), IssuingCA(tmp_path / "host" / "ca")
    old = host.ensure("buildfleet oidc exchange CA f")
    consumers.adopt("oidc-exchange", old)
    consumers.revoke("oidc-exchange")
    consumers.retire("oidc-exchange")  # client renew oidc-exchange
    retired = consumers.retired("oidc-exchange")
    assert retired == (hashlib.sha256(old).hexdigest(),) and not consumers.revoked("oidc-exchange")
    assert consumers.trust() == b""  # nothing trusted until the host's new CA is adopted
    with pytest.raises(BuildfleetError, match="still has the CA that was retired"):
        consumers.adopt("oidc-exchange", host.ensure("buildfleet oidc exchange CA f"))  # a host not yet told
    new = host.ensure("buildfleet oidc exchange CA f", retired)  # what its init does at configure
    assert new != old and host.ensure("buildfleet oidc exchange CA f", retired) == new
    consumers.adopt("oidc-exchange", new)
    assert consumers.trust() == new
    FleetCA(tmp_path / "tls").client()
    Consumers(tmp_path / "tls").add("ci")
    with pytest.raises(BuildfleetError, match="was made here: renew gives it a new certificate"):
        consumers.retire("ci")
