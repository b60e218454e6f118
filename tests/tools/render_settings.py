"""Write what is rendered from the settings' declarations (provisioning/settings.py) into the
checkout: Pulumi.yaml's config block and the README's configuration table. Adding a key is its
declaration there, its test, and a run of this; tests/test_settings.py fails until then."""

import sys
from pathlib import Path

import yaml

from provisioning.project import project_document, settings_table

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- settings table: rendered from provisioning/settings.py by python3 tests/tools/render_settings.py -->\n"
END = "<!-- end of the settings table -->\n"


def readme_with_table(text: str) -> str:
    before, found, rest = text.partition(BEGIN)
    _, ended, after = rest.partition(END)
    if not (found and ended):
        raise SystemExit(f"README.md: the markers {BEGIN.strip()} ... {END.strip()} are missing")
    return before + BEGIN + "\n" + settings_table() + "\n" + END + after  # blank lines: a table of its own


def pulumi_yaml(text: str) -> str:
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    return header + yaml.safe_dump(project_document(), sort_keys=False, width=1000)


def main() -> int:
    for name, render in (("README.md", readme_with_table), ("Pulumi.yaml", pulumi_yaml)):
        path = ROOT / name
        text = path.read_text()
        new = render(text)
        if new != text:
            path.write_text(new)
            print(f"{name}: rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
