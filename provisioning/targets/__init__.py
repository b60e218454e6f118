"""Where hosts come from: every target behind the one interface in ``base``, found by name.

Targets are imported only when asked for, so the local target never loads Pulumi.
"""

from __future__ import annotations

from importlib import import_module

from provisioning.errors import ConfigError
from provisioning.inventory import Features
from provisioning.targets.base import Target, TargetOptions

# kind -> "module:class"; a new target is a module plus one line here.
REGISTRY = {
    "local": "provisioning.targets.local.target:LocalTarget",
    "aws": "provisioning.targets.aws:AwsTarget",
    "static": "provisioning.targets.static:StaticTarget",
    "vm": "provisioning.targets.vm.target:VmTarget",
}
KINDS = tuple(REGISTRY)


def _target_class(kind: str) -> type:
    try:
        module, name = REGISTRY[kind].split(":")
    except KeyError:
        raise ConfigError(f"unknown target {kind!r}; known: {', '.join(KINDS)}") from None
    found: type = getattr(import_module(module), name)
    return found


def make_target(kind: str, options: TargetOptions) -> Target:
    target: Target = _target_class(kind).from_options(options)  # type: ignore[attr-defined]
    return target


def declared_features(kind: str) -> Features:
    """What target ``kind`` declares about its hosts: for an inventory saved before features were recorded."""
    features: Features = _target_class(kind).features  # type: ignore[attr-defined]
    return features
