"""cost: what the planned fleet costs per hour and month, and the hosted prices beside it."""

import json

import pytest

from provisioning.cli import main
from provisioning.cost import HOURS_PER_MONTH, fleet_cost, usage_cost
from provisioning.plan import plan_fleet
from provisioning.settings import settings_from_mapping


def test_the_fleet_costs_the_sum_of_its_catalog_prices_per_hour_and_730_hours_a_month():
    cost = fleet_cost(plan_fleet(settings_from_mapping({"arm64InstanceType": "c8g.xlarge"})), 0.6)
    assert [(h.host, h.instance_type) for h in cost.hosts] == [
        ("amd64-0", "c7i.xlarge"),
        ("arm64-0", "c8g.xlarge"),
        ("emulation-0", "c7i.xlarge"),
    ]
    assert cost.usd_per_hour == round(0.1785 + 0.15952 + 0.1785, 5)
    assert cost.per_month(cost.usd_per_hour) == round(cost.usd_per_hour * HOURS_PER_MONTH, 2)
    assert cost.spot_usd_per_hour == pytest.approx(cost.usd_per_hour * 0.4, abs=1e-4)


def test_spot_is_a_stated_discount_and_labelled_an_estimate():
    data = fleet_cost(plan_fleet(settings_from_mapping({})), 0.0).to_dict()
    assert data["spot_is_estimate"] is True and data["spot_usd_per_hour"] == data["usd_per_hour"]
    with pytest.raises(ValueError, match="spot discount"):
        fleet_cost(plan_fleet(settings_from_mapping({})), 1.0)


def test_hosted_prices_carry_their_source_and_date(capsys):
    assert main(["cost", "--json", "--spot-discount", "0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in data["hosted"]} == {
        "GitHub Actions Linux 2-core (x64)",
        "GitHub Actions Linux 2-core (arm64)",
    }
    assert all(r["source"].startswith("docs.github.com") and r["asOf"] for r in data["hosted"])
    assert data["hosted"][0]["usdPerHour"] == round(data["hosted"][0]["usdPerMinute"] * 60, 4)


def test_a_bad_discount_is_refused_by_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["cost", "--spot-discount", "1.5"])
    assert "--spot-discount: must be at least 0 and below 1" in capsys.readouterr().err


def test_a_month_of_use_always_on_with_idle_stop_and_on_hosted_runners():
    cost = fleet_cost(plan_fleet(settings_from_mapping({})), 0.6)  # 3 hosts, 0.502 $/h
    usage = usage_cost(cost, 50, 4, 30)
    all_month = 3 * 50 * 0.08 + 3 * 0.005 * 730  # disks and Elastic IPs, running or not
    assert usage.always_on_usd_per_month == round(0.502 * 730 + all_month, 2) == 389.41
    assert usage.running_hours_per_month == round(4.5 * 730 / 24, 1)  # 4 h of builds + a 30 min tail a day
    assert usage.idle_stop_usd_per_month == round(0.502 * 4.5 * 730 / 24 + all_month, 2)
    assert dict(usage.hosted_usd_per_month)["GitHub Actions Linux 2-core (arm64)"] == round(0.005 * 240 * 730 / 24, 2)


@pytest.mark.parametrize("hours", [0, 24])
def test_idle_stop_costs_disks_and_addresses_alone_when_nothing_builds_and_always_on_when_all_day(hours):
    cost = fleet_cost(plan_fleet(settings_from_mapping({})), 0.6)
    usage = usage_cost(cost, 50, hours, 30)
    expected = 12.0 + 10.95 if hours == 0 else usage.always_on_usd_per_month  # disks and addresses only
    assert usage.idle_stop_usd_per_month == pytest.approx(expected, abs=0.01)


def test_cost_per_build_hours_a_day_through_the_command(capsys):
    assert main(["cost", "--json", "--build-hours-per-day", "8", "--idle-minutes", "15"]) == 0
    usage = json.loads(capsys.readouterr().out)["usage"]
    assert (usage["buildHoursPerDay"], usage["idleStopMinutes"]) == (8, 15)
    with pytest.raises(SystemExit):
        main(["cost", "--build-hours-per-day", "25"])


def test_the_headline_is_everything_a_month_costs_disks_addresses_and_pool_balancers_included():
    cost = fleet_cost(plan_fleet(settings_from_mapping({"amd64Count": 2})), 0.6, root_volume_gib=50)
    assert cost.pools == 1 and cost.fixed == {
        "disks": 4 * 50 * 0.08,
        "public_ipv4": round(5 * 0.005 * 730, 2),  # four hosts and the pool's load balancer
        "load_balancers": round(0.0225 * 730, 2),
    }
    assert cost.total_usd_per_month == round(cost.usd_per_hour * 730 + sum(cost.fixed.values()), 2)


def test_a_spot_fleet_is_priced_at_spot():
    settings = settings_from_mapping({"spot": True})
    spot = fleet_cost(plan_fleet(settings), 0.6, spot=settings.spot)
    on_demand = fleet_cost(plan_fleet(settings), 0.6)
    assert spot.total_usd_per_month == round(spot.spot_usd_per_hour * 730 + sum(spot.fixed.values()), 2)
    assert spot.total_usd_per_month < on_demand.total_usd_per_month
    assert usage_cost(spot, 50, 24, 30).always_on_usd_per_month == spot.total_usd_per_month


def test_cost_names_its_region_and_refuses_to_price_another(capsys, tmp_path):
    assert main(["cost", "--project-dir", str(tmp_path)]) == 0
    assert "Prices are us-east-1's" in capsys.readouterr().out
    assert main(["cost", "--region", "eu-west-1", "--project-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "the catalog holds us-east-1 list prices only and eu-west-1 (--region) is priced differently" in err
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  aws:region: ap-southeast-2\n")
    assert main(["cost", "--stack", "prod", "--project-dir", str(tmp_path)]) == 2
    assert "ap-southeast-2 (Pulumi.prod.yaml)" in capsys.readouterr().err
