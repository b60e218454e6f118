"""Raw configuration for the CLI, read from the same places Pulumi reads it.

Later sources win: the schema's defaults, ``Pulumi.<stack>.yaml`` (its ``buildfleet:``
keys), a ``buildfleet.yaml`` file, then ``--set key=value`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from provisioning.errors import ConfigError
from provisioning.settings import NAMESPACE

DEFAULT_FILE = "buildfleet.yaml"


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None


def stack_config(project_dir: Path, stack: str) -> dict[str, Any]:
    """The ``buildfleet:`` keys of ``Pulumi.<stack>.yaml``; other namespaces are Pulumi's business."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    document = _read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'config:' key, got a {type(document).__name__}")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: 'config' must be a mapping")
    return {k: v for k, v in config.items() if str(k).startswith(f"{NAMESPACE}:")}


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


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; the value is read as YAML so lists and booleans work."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set arm64InstanceType=c8g.xlarge")
        try:
            overrides[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            overrides[key.strip()] = value
    return overrides


def load_raw_config(
    project_dir: Path,
    config_file: Path | None = None,
    stack: str | None = None,
    overrides: Iterable[str] = (),
) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if stack:
        raw.update(stack_config(project_dir, stack))
    if config_file is None and (project_dir / DEFAULT_FILE).exists():
        config_file = project_dir / DEFAULT_FILE
    if config_file is not None:
        for key, value in file_config(config_file).items():
            raw[str(key).removeprefix(f"{NAMESPACE}:")] = value
    for key, value in parse_overrides(overrides).items():
        raw[key.removeprefix(f"{NAMESPACE}:")] = value
    return {k.removeprefix(f"{NAMESPACE}:"): v for k, v in raw.items()}
