"""Known security advisories of host software buildfleet does not ship itself (runc), judged
from what a host reports: a distribution backports fixes without changing the upstream version,
so a packaged runc is judged by its package's changelog, a binary of its own by its version."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Advisory:
    ids: tuple[str, ...]
    fixed_in: tuple[tuple[int, ...], ...]  # the first fixed release of each upstream line
    summary: str

    def open_for(self, version: tuple[int, ...]) -> bool:
        """Whether an upstream build of ``version`` still has it."""
        same_line = [fixed for fixed in self.fixed_in if fixed[:2] == version[:2]]
        if same_line:
            return version < same_line[0]
        return version < max(self.fixed_in)


# GHSA-9493-h29p-rfm2, GHSA-qw9x-cqr3-wc7r, GHSA-cgrx-mc8f-2prm (opencontainers/runc, 2025-11-05)
RUNC_NOV_2025 = Advisory(
    ("CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"),
    ((1, 2, 8), (1, 3, 3), (1, 4, 0)),
    "container escape through masked paths, /dev/console and redirected /proc writes",
)
RUNC_ADVISORIES = (RUNC_NOV_2025,)


def version_tuple(text: str) -> tuple[int, ...]:
    """1.1.5+ds1 -> (1, 1, 5); 1.4.0-rc.3 -> (1, 4, 0) (a release candidate counts as its release)."""
    parts = []
    for piece in text.split("+")[0].split("-")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def open_runc_cves(version: str, package: str, changelog_cves: frozenset[str]) -> list[str]:
    """The CVE ids still open in this runc: for a package, every one its changelog does not name;
    for a binary of its own, those its upstream version predates."""
    found = []
    for advisory in RUNC_ADVISORIES:
        if package:
            found += [cve for cve in advisory.ids if cve not in changelog_cves]
        elif advisory.open_for(version_tuple(version)):
            found += list(advisory.ids)
    return found


def runc_fix(version: str, package: str, package_version: str, cves: list[str]) -> str:
    """What to do about an open runc, in one line."""
    where = f"the {package} package {package_version}" if package else f"runc {version}"
    upstream = "runc 1.2.8, 1.3.3 or 1.4.0 and later (upstream's static release) installed as /usr/local/sbin/runc"
    if package:
        return (
            f"{where} names no fix for {', '.join(cves)} in its changelog: upgrade it once the distribution "
            f"ships one (apt-get install --only-upgrade {package}), or put {upstream}, which buildkitd finds first"
        )
    return f"{where} predates the fix for {', '.join(cves)}: replace it with {upstream}"
