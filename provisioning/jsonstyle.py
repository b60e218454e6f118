"""One spelling for every JSON key buildfleet prints or writes: camelCase, as the settings keys
and the stack outputs (``inventory``, ``hostKeys``) are spelled. Internals keep Python's
snake_case; the conversion happens once, where JSON leaves the program."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


class Keyed(dict):
    """A map whose keys are data (host names, platforms), printed as they are: a host may be
    called ``build_box``."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(value: Any) -> Any:
    if isinstance(value, Keyed):
        return {key: camel_keys(item) for key, item in value.items()}
    if isinstance(value, Mapping):
        return {
            camel(key) if isinstance(key, str) and SNAKE.fullmatch(key) else key: camel_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [camel_keys(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    return json.dumps(camel_keys(value), **options)
