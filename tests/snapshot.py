"""A directory tree as data, to show a command changed nothing (or only what it should)."""

import os
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root with its kind, mode and content (or link target)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            stat = path.lstat()
            if path.is_symlink():
                seen[str(path.relative_to(root))] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[str(path.relative_to(root))] = ("dir", stat.st_mode)
            else:
                seen[str(path.relative_to(root))] = ("file", stat.st_mode, path.read_bytes())
    return seen
