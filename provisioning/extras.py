"""Optional parts of the install: a local, vm or static fleet needs neither Pulumi and the AWS
SDK (the ``aws`` extra, most of a full install's 605 MB) nor matplotlib (``charts``), so they are
imported only where used, and their absence is one line that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from provisioning.errors import BuildfleetError

AWS = "aws"
CHARTS = "charts"


class MissingExtra(BuildfleetError):
    """A command needs a package of an extra this install was made without."""


def install_hint(extra: str) -> str:
    return f"pip install 'buildfleet[{extra}]' (pipx: pipx install --force 'buildfleet[{extra}]')"


def require(module: str, extra: str, why: str) -> ModuleType:
    """``module`` imported, or MissingExtra naming the extra (an import error inside it is not ours to hide)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        package = module.split(".")[0]
        if error.name != package:  # the package is there and something inside it is missing: a bug
            raise
        raise MissingExtra(f"{why} needs {package}, which this install lacks: {install_hint(extra)}") from None


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    return True
