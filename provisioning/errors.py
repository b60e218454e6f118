"""One exception hierarchy, so the CLI can print one clear line for any user error."""

import difflib
from collections.abc import Iterable


class BuildfleetError(Exception):
    """Base of every error buildfleet raises on purpose; its message is for the user."""

    exit_code = 2  # what the CLI exits with: 2 for bad input, 1 where the user said no


class NotConfirmed(BuildfleetError):
    """A previewed change was not approved (declined, or no terminal to ask on and no --yes)."""

    exit_code = 1


class ConfigError(BuildfleetError):
    """A configuration key has a bad value; the message names the key."""


class PlatformError(ConfigError):
    """A platform string is unknown or malformed; the message lists the valid ones."""


class CatalogError(ConfigError):
    """An instance type is not in the catalog and not declared as custom."""


class PlacementError(BuildfleetError):
    """A requested platform has no host that can build it."""


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """ " (did you mean 'pools'?)" for the nearest known spelling, or "" when none is near."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def tail(text: str, lines: int = 5) -> str:
    """The last lines of a command's output: what an error message quotes."""
    return "\n".join(text.strip().splitlines()[-lines:])
