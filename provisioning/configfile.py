"""Raw configuration for the CLI, read from the same places Pulumi reads it.

Later sources win: the schema's defaults, ``./buildfleet.yaml`` (when no ``--config`` names a
file), ``Pulumi.<stack>.yaml`` (its ``buildfleet:`` keys), an explicit ``--config`` file, then
``--set key=value`` pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from provisioning.errors import ConfigError
from provisioning.settings import IDENTITY_KEY, NAMESPACE

IDENTITY_CONFIG = f"{NAMESPACE}:{IDENTITY_KEY}"

DEFAULT_FILE = "buildfleet.yaml"


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None


def stack_config(project_dir: Path, stack: str) -> dict[str, Any]:
    """The ``buildfleet:`` settings of ``Pulumi.<stack>.yaml``; other namespaces are Pulumi's business,
    and the fleet identity kept there is state (see handover), no setting."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    document = _read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'config:' key, got a {type(document).__name__}")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: 'config' must be a mapping")
    return {k: v for k, v in config.items() if str(k).startswith(f"{NAMESPACE}:") and k != IDENTITY_CONFIG}


def stack_region(project_dir: Path, stack: str) -> str | None:
    """The stack's ``aws:region``, where its stack file names one."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return None
    document = _read_yaml(path)
    config = document.get("config") if isinstance(document, dict) else None
    region = config.get("aws:region") if isinstance(config, dict) else None
    return str(region) if region else None


def file_config(path: Path) -> dict[str, Any]:
    document = _read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must be a mapping of buildfleet keys to values")
    return document


PATH_ITEM = re.compile(r"(?P<key>[A-Za-z0-9:]+)\[(?P<index>[0-9]+)\]")


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; the value is read as YAML so lists and booleans work. Pulumi's path
    syntax sets one list item (``--set 'allowedCidrs[0]=198.51.100.7/32'``), from index 0 up."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set arm64InstanceType=c8g.xlarge")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        item = PATH_ITEM.fullmatch(key)
        if item is None:
            overrides[key] = parsed
            continue
        items = overrides.setdefault(item["key"], [])
        index = int(item["index"])
        if not isinstance(items, list) or index > len(items):
            raise ConfigError(f"--set {key}: set {item['key']}[{len(items) if isinstance(items, list) else 0}] first")
        items[index : index + 1] = [str(parsed)]
    return overrides


def load_raw_config(
    project_dir: Path,
    config_file: Path | None = None,
    stack: str | None = None,
    overrides: Iterable[str] = (),
) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for layer in config_layers(project_dir, config_file, stack, overrides).values():
        raw.update(layer)
    return raw


def config_layers(
    project_dir: Path,
    config_file: Path | None = None,
    stack: str | None = None,
    overrides: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """Each source read, named, in the order they apply (later wins): ./buildfleet.yaml when no
    --config names a file, then the stack file, an explicit --config, then --set. A choice the
    command line makes always beats a file that merely lies in the directory."""
    layers: dict[str, dict[str, Any]] = {}
    implicit = project_dir / DEFAULT_FILE
    if config_file is None and implicit.exists():
        layers[str(implicit)] = _unprefixed(file_config(implicit))
    if stack:
        layers[f"Pulumi.{stack}.yaml"] = _unprefixed(stack_config(project_dir, stack))
    if config_file is not None:
        layers[str(config_file)] = _unprefixed(file_config(config_file))
    if overrides:
        layers["--set"] = _unprefixed(parse_overrides(overrides))
    return layers


def _unprefixed(values: dict[str, Any]) -> dict[str, Any]:
    return {str(key).removeprefix(f"{NAMESPACE}:"): value for key, value in values.items()}
