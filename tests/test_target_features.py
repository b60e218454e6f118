"""Targets declare what their hosts are like; the stages after them ask for a feature, never for
a target's name (checked here over the whole package, as CI runs it)."""

import ast
import dataclasses
from pathlib import Path

import pytest

from provisioning.errors import ConfigError
from provisioning.inventory import Features, Inventory, Pool
from provisioning.targets import KINDS, declared_features

PACKAGE = Path(__file__).resolve().parents[1] / "provisioning"
TARGET_MODULES = tuple(f"provisioning.targets.{name}" for name in ("local", "aws", "static", "vm"))


def _names_a_target(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in KINDS
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_target(e) for e in node.elts)
    return False


def places_that_name_a_target(package: Path = PACKAGE) -> list[str]:
    """Comparisons with a target's name, and imports of one target's modules, outside targets/."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.is_relative_to(package / "targets"):
            continue
        where = path.relative_to(package.parent)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare) and any(_names_a_target(n) for n in (node.left, *node.comparators)):
                found.append(f"{where}:{node.lineno} compares with a target's name")
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(m == t or m.startswith(t + ".") for m in modules for t in TARGET_MODULES):
                found.append(f"{where}:{node.lineno} imports {', '.join(modules)}")
    return found


def test_no_stage_outside_targets_names_a_target():
    assert places_that_name_a_target() == []


def test_the_check_finds_a_branch_on_a_target_name(tmp_path):
    fake = tmp_path / "provisioning"
    (fake / "bench").mkdir(parents=True)
    (fake / "bench" / "x.py").write_text(
        'import provisioning.targets.local.balancer\nif inventory.target in ("local", "vm"):\n    pass\n'
    )
    assert places_that_name_a_target(fake) == [
        "provisioning/bench/x.py:1 imports provisioning.targets.local.balancer",
        "provisioning/bench/x.py:2 compares with a target's name",
    ]


def test_each_target_declares_what_its_hosts_are_like():
    assert {kind: declared_features(kind) for kind in KINDS} == {
        "local": Features(on_this_machine=True, balancers_here=True),
        "vm": Features(on_this_machine=True, balancers_here=True),
        "static": Features(),
        "aws": Features(cidr_firewall=True, instance_metadata=True, wakes=True, catalog_priced=True),
    }


def test_an_inventory_keeps_its_features_and_its_pools_stickiness_through_json():
    inventory = Inventory("local", (), "", (Pool("amd64-pool", "127.0.0.1", 4400, 500),), declared_features("local"))
    data = inventory.to_dict()
    assert data["features"]["onThisMachine"] and data["pools"][0]["stickMs"] == 500
    assert Inventory.from_dict(data) == inventory


def test_an_inventory_saved_before_features_gets_its_targets_and_is_refused_without_them():
    saved = Inventory("aws", (), features=declared_features("aws")).to_dict()
    old = {k: v for k, v in saved.items() if k != "features"}
    assert Inventory.from_dict(old, declared_features).features.instance_metadata  # metadata stays blocked
    with pytest.raises(ConfigError, match="no features recorded"):
        Inventory.from_dict(old)


def test_an_unknown_feature_is_named():
    data = dataclasses.replace(Inventory("static", ()), features=Features()).to_dict()
    data["features"]["teleports"] = True
    with pytest.raises(ConfigError, match="unknown teleports"):
        Inventory.from_dict(data)
