"""Where hosts come from: every target behind the one interface in ``base``, found by name.

Targets are imported only when asked for, so the local target never loads Pulumi.
"""

from __future__ import annotations

from importlib import import_module

from provisioning.errors import ConfigError
from provisioning.targets.base import Target, TargetOptions

# kind -> "module:class"; a new target is a module plus one line here.
REGISTRY = {
    "local": "provisioning.targets.local.target:LocalTarget",
    "aws": "provisioning.targets.aws:AwsTarget",
    "static": "provisioning.targets.static:StaticTarget",
    "vm": "provisioning.targets.vm.target:VmTarget",
}
KINDS = tuple(REGISTRY)


def make_target(kind: str, options: TargetOptions) -> Target:
    try:
        module, name = REGISTRY[kind].split(":")
    except KeyError:
        raise ConfigError(f"unknown target {kind!r}; known: {', '.join(KINDS)}") from None
    target: Target = getattr(import_module(module), name).from_options(options)
    return target
