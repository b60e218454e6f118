"""Reading ``docker buildx inspect NAME`` (text: buildx 0.13 has no JSON for it). Pure."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field


@dataclass(frozen=True)
class InspectedNode:
    name: str
    endpoint: str = ""
    status: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    pinned: tuple[str, ...] = ()  # platforms given with --platform (buildx marks them with *)
    platforms: tuple[str, ...] = ()  # everything the node reports
    buildkit: str = ""


@dataclass(frozen=True)
class InspectedBuilder:
    name: str
    driver: str
    nodes: tuple[InspectedNode, ...]


def parse_inspect(text: str) -> InspectedBuilder:
    header, _, body = text.partition("\nNodes:\n")
    fields = dict(_pairs(header.splitlines()))
    nodes = []
    for block in re.split(r"\n\s*\n(?=Name:)", body.strip()):
        values = dict(_pairs(block.splitlines()))
        if "Name" not in values:
            continue
        listed = [p.strip() for p in values.get("Platforms", "").split(",") if p.strip()]
        nodes.append(
            InspectedNode(
                name=values["Name"],
                endpoint=values.get("Endpoint", ""),
                status=values.get("Status", ""),
                driver_opts=_driver_opts(values.get("Driver Options", "")),
                pinned=tuple(p.rstrip("*") for p in listed if p.endswith("*")),
                platforms=tuple(p.rstrip("*") for p in listed),
                buildkit=values.get("BuildKit version") or values.get("Buildkit") or "",
            )
        )
    return InspectedBuilder(fields.get("Name", ""), fields.get("Driver", ""), tuple(nodes))


def _pairs(lines: list[str]):
    for line in lines:
        if line.startswith(" ") or ":" not in line:
            continue  # labels and GC policy details are indented
        key, _, value = line.partition(":")
        yield key.strip(), value.strip()


def _driver_opts(text: str) -> dict[str, str]:
    opts = {}
    for item in shlex.split(text):
        key, _, value = item.partition("=")
        opts[key] = value
    return opts
