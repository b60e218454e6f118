"""runc's November 2025 container escapes, judged as a distribution would: a package by the CVE
ids its changelog names as fixed, a binary of its own by its upstream version."""

import pytest

from provisioning.advisories import RUNC_NOV_2025, open_runc_cves, runc_fix, version_tuple

CVES = list(RUNC_NOV_2025.ids)


@pytest.mark.parametrize(
    ("version", "open_"),
    [
        ("1.1.15", True),
        ("1.2.7", True),
        ("1.2.8", False),
        ("1.3.2", True),
        ("1.3.3", False),
        ("1.3.4", False),
        ("1.4.0-rc.3", False),
        ("1.4.1", False),
        ("2.0.0", False),
    ],
)
def test_an_upstream_runc_is_judged_by_the_first_fixed_release_of_its_line(version, open_):
    assert open_runc_cves(version, "", frozenset()) == (CVES if open_ else [])


def test_a_package_is_judged_by_its_changelog_not_its_upstream_version():
    assert open_runc_cves("1.1.5+ds1", "runc", frozenset({"CVE-2024-21626"})) == CVES  # bookworm, as seen
    backported = frozenset(CVES) | {"CVE-2024-21626"}
    assert open_runc_cves("1.1.5+ds1", "runc", backported) == []  # an old version with the fixes backported
    assert open_runc_cves("1.3.3", "runc", frozenset()) == CVES  # no changelog entry: not shown to be fixed


def test_distribution_versions_read_as_upstream_ones():
    assert version_tuple("1.1.5+ds1") == (1, 1, 5)
    assert version_tuple("1.4.0-rc.3") == (1, 4, 0)


def test_the_fix_names_the_package_and_the_way_out():
    fix = runc_fix("1.1.5+ds1", "runc", "1.1.5+ds1-1+deb12u1", CVES)
    assert fix.startswith("the runc package 1.1.5+ds1-1+deb12u1 names no fix for CVE-2025-31133")
    assert "apt-get install --only-upgrade runc" in fix and "/usr/local/sbin/runc" in fix
    assert runc_fix("1.2.7", "", "", CVES).startswith("runc 1.2.7 predates the fix for CVE-2025-31133")
