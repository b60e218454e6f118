"""Instance catalog: the types users pick, with arch, size, AArch32 and a sourced price."""

import pytest

from provisioning.catalog import Catalog, parse_custom_type
from provisioning.errors import CatalogError

REQUIRED_FAMILIES = ("c6i", "c7i", "c7a", "m7i", "c6g", "c7g", "m7g", "c8g", "m8g", "t4g")


SIZES = ("xlarge", "2xlarge", "4xlarge")
OFFERED = [(f, s) for f in REQUIRED_FAMILIES for s in SIZES if (f, s) != ("t4g", "4xlarge")]


@pytest.mark.parametrize(("family", "size"), OFFERED)
def test_catalog_covers_the_builder_families(family, size):
    entry = Catalog().lookup(f"{family}.{size}")
    assert entry.vcpu == {"xlarge": 4, "2xlarge": 8, "4xlarge": 16}[size]
    assert entry.memory_gib > 0 and entry.usd_per_hour > 0
    assert entry.price_source and entry.price_as_of


def test_t4g_has_no_4xlarge():
    with pytest.raises(CatalogError, match="t4g.4xlarge"):
        Catalog().lookup("t4g.4xlarge")


@pytest.mark.parametrize(
    ("name", "arch", "aarch32"),
    [
        ("c7i.xlarge", "amd64", False),
        ("c7a.2xlarge", "amd64", False),
        ("c6g.xlarge", "arm64", True),  # Graviton2: AArch32 userspace
        ("t4g.xlarge", "arm64", True),  # Graviton2
        ("c7g.xlarge", "arm64", True),  # Graviton3: AArch32 userspace
        ("m7g.4xlarge", "arm64", True),
        ("c8g.xlarge", "arm64", False),  # Graviton4: no 32-bit support
        ("m8g.2xlarge", "arm64", False),
    ],
)
def test_arch_and_aarch32_follow_the_graviton_generation(name, arch, aarch32):
    entry = Catalog().lookup(name)
    assert (entry.arch, entry.aarch32) == (arch, aarch32)


def test_prices_scale_with_size_within_a_family():
    catalog = Catalog()
    assert catalog.lookup("c7g.2xlarge").usd_per_hour == pytest.approx(2 * catalog.lookup("c7g.xlarge").usd_per_hour)
    assert catalog.lookup("c7g.xlarge").usd_per_hour == pytest.approx(0.145)


def test_unknown_type_suggests_close_names_and_how_to_declare_one():
    with pytest.raises(CatalogError) as error:
        Catalog().lookup("c7g.xlarg")
    assert "c7g.xlarge" in str(error.value)
    assert "customInstanceTypes" in str(error.value)


def test_custom_types_extend_the_catalog():
    catalog = Catalog().with_custom(["c7gd.xlarge=arm64,4,8,0.1814,aarch32", "x9.big=amd64,96,192,4.5"])
    custom = catalog.lookup("c7gd.xlarge")
    assert (custom.arch, custom.vcpu, custom.memory_gib, custom.aarch32, custom.usd_per_hour) == (
        "arm64",
        4,
        8.0,
        True,
        0.1814,
    )
    assert custom.price_source == "buildfleet:customInstanceTypes"
    assert catalog.lookup("x9.big").aarch32 is False


@pytest.mark.parametrize(
    "spec",
    [
        "nothing",
        "x=amd64,4,8",
        "x=sparc,4,8,0.1",
        "x=amd64,four,8,0.1",
        "x=amd64,4,8,0.1,aarch32",
        "x=arm64,4,8,0.1,turbo",
        "x=arm64,0,8,0.1",
        "=arm64,4,8,0.1",
    ],
)
def test_bad_custom_type_names_the_entry(spec):
    with pytest.raises(CatalogError) as error:
        parse_custom_type(spec)
    assert repr(spec) in str(error.value)
