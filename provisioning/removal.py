"""Deleting only what buildfleet made: every rmtree/unlink goes through here.

A path is removed only after its resolved form is checked to lie inside the directory
that owns it; a fleet's state directory only when every entry in it is one buildfleet
writes. (A `--fleet /` once removed /etc of the machine it ran on.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from provisioning.errors import BuildfleetError


class UnsafeRemoval(BuildfleetError):
    """A deletion was refused because the path is not, or might not be, buildfleet's own."""


def inside(path: Path, owner: Path) -> Path:
    """``path`` resolved (symlinks and '..' followed), refused unless strictly below ``owner``."""
    resolved = path.resolve()
    root = owner.resolve()
    if resolved == root or root not in resolved.parents:
        raise UnsafeRemoval(f"refusing to remove {path}: it resolves to {resolved}, outside {root}")
    return resolved


def unlink_inside(path: Path, owner: Path) -> bool:
    """Remove one file of ours whose directory lies in ``owner``; False if it was absent.

    unlink never follows the last component, so a symlink there removes only the link.
    """
    parent = path.parent.resolve()
    root = owner.resolve()
    if path.name in ("", ".", "..") or (parent != root and root not in parent.parents):
        raise UnsafeRemoval(f"refusing to remove {path}: it is not a file in {root}")
    try:
        (parent / path.name).unlink()
    except FileNotFoundError:
        return False
    return True


def remove_owned_tree(directory: Path, owner: Path, allowed_entries: Iterable[str]) -> bool:
    """Remove ``directory`` (a direct child of ``owner``) if it holds only entries we write.

    Refuses, naming the culprit, a symlink, a path outside ``owner``, or a directory with any
    entry buildfleet never makes: that directory is not ours, whatever its name says.
    """
    if not directory.is_symlink() and not directory.exists():
        return False
    if directory.is_symlink():
        raise UnsafeRemoval(f"refusing to remove {directory}: it is a symlink (to {directory.resolve()})")
    resolved = inside(directory, owner)
    if resolved.parent != owner.resolve():
        raise UnsafeRemoval(f"refusing to remove {directory}: it is not directly in {owner.resolve()}")
    if not resolved.is_dir():
        raise UnsafeRemoval(f"refusing to remove {directory}: it is not a directory")
    foreign = sorted(entry.name for entry in resolved.iterdir() if entry.name not in set(allowed_entries))
    if foreign:
        raise UnsafeRemoval(
            f"refusing to remove {directory}: it holds {', '.join(foreign[:5])}, which buildfleet "
            "never writes there; remove it yourself if it really is a fleet's state"
        )
    shutil.rmtree(resolved)
    return True
