"""The Pulumi project the aws target runs, as data: name, runtime and the typed ``config:``
block, all from the settings' one declaration per key.

``buildfleet up --target aws`` runs the program from the installed package (an Automation
API inline program), so a user's own directory needs only this ``Pulumi.yaml`` beside its
stack files; buildfleet writes it there. The checkout's top-level ``Pulumi.yaml``, for those
who drive the program with the ``pulumi`` CLI, is kept equal to it by a test.
"""

from __future__ import annotations

from typing import Any

from provisioning.errors import ConfigError
from provisioning.settings import KEYS, NAMESPACE

NAME = NAMESPACE
DESCRIPTION = (
    "Multi-architecture Docker build hosts (native amd64, native arm64/Graviton, QEMU emulation) "
    "joined into one docker buildx builder."
)
# The first line of a Pulumi.yaml buildfleet wrote: one it may rewrite when a newer
# buildfleet declares other keys. A file without it (the checkout's own) is left alone.
WRITTEN_MARK = "# Written by buildfleet"


def config_block() -> dict[str, dict[str, Any]]:
    """Pulumi.yaml's ``config:`` declarations: the CLI checks stack values against their types."""
    block: dict[str, dict[str, Any]] = {}
    for key, spec in KEYS.items():
        entry: dict[str, Any] = {"type": spec.type}
        if spec.type == "array":
            entry["items"] = {"type": "string"}
        entry["description"] = spec.description
        entry["default"] = spec.default
        block[f"{NAMESPACE}:{key}"] = entry
    return block


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list):
        return "`[" + ", ".join(default) + "]`"
    return f"`{default!r}`" if default == "" else f"`{default}`" if isinstance(default, str) else str(default)


def settings_table() -> str:
    """The README's configuration reference: one row per key, from the same declarations."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, spec in KEYS.items():
        meaning = spec.description.replace("|", "\\|")
        rows.append(f"| `{key}` | {_shown(spec.default)} | {meaning} |")
    return "\n".join(rows) + "\n"


def project_document() -> dict[str, Any]:
    return {"name": NAME, "description": DESCRIPTION, "runtime": {"name": "python"}, "config": config_block()}


def written_header(version: str) -> str:
    return (
        f"{WRITTEN_MARK} {version}: `buildfleet up --target aws` runs the Pulumi program from the\n"
        "# installed buildfleet package; this file names the project and declares its config keys,\n"
        "# and the stack files (Pulumi.<stack>.yaml) beside it hold each stack's settings. Commit all.\n"
    )


def check_project_name(document: Any, where: str) -> None:
    """A Pulumi.yaml of another project in the user's directory is theirs: never overwritten."""
    name = document.get("name") if isinstance(document, dict) else None
    if name != NAME:
        raise ConfigError(
            f"{where} belongs to Pulumi project {name!r}, not {NAME!r}: give buildfleet a directory of its "
            "own (e.g. infra/buildfleet) with --project-dir, or run it there"
        )
