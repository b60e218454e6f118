"""Operations: compare a host's facts with the desired state, return only what is needed.

Each step names the facts it reads and a pure ``decide(facts) -> Decision``; each has a module
of its own here (docker, privileged, buildx, binfmt, fleet, buildkitd, versions, cache, idle,
metadata), and this one holds what they share: the step's shape and apt. The executor applies
the decision, reads the facts again and decides again: a step has converged only when that
second decision asks for nothing, which is how every step is verified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioning.hosts.actions import Decision
from provisioning.remote import facts as f

APT = "apt-get -o DPkg::Lock::Timeout=600 -q"  # wait for cloud-init's apt instead of failing
# DPkg::Lock::Timeout covers the dpkg lock only; `apt-get update` fails at once on the lists
# lock (/var/lib/apt/lists/lock) while cloud-init's apt holds it: retry that case for 10 min.
APT_UPDATE = (
    "i=0; until out=$(apt-get -q update 2>&1); do "
    'case "$out" in *"Could not get lock"*) ;; *) printf "%s\\n" "$out" >&2; exit 1;; esac; '
    'i=$((i+1)); [ $i -ge 300 ] && { printf "%s\\n" "$out" >&2; exit 1; }; sleep 2; done'
)


@dataclass(frozen=True)
class Step:
    name: str
    facts: Mapping[str, f.Fact]
    decide: Callable[[Mapping[str, Any]], Decision]


def apt_install(*packages: str) -> tuple[str, ...]:
    names = " ".join(packages)  # constants of this module, never user input
    return (
        "sh",
        "-c",
        f"{APT_UPDATE} && DEBIAN_FRONTEND=noninteractive {APT} install -y --no-install-recommends {names}",
    )


# What dpkg itself says to run after an interruption, then let apt finish what was half done.
# A package cut off mid-unpack is left "half-installed, reinstall required" (dpkg-query's
# abbreviated status ``iHR``): ``dpkg --configure -a`` then fails on whatever depends on it
# ("very bad inconsistent state; you should reinstall it"), so apt reinstalls those first.
DPKG_REPAIR = (
    "export DEBIAN_FRONTEND=noninteractive; dpkg --configure -a; "
    "broken=$(dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\\n' "
    "| awk '$1 ~ /R/ || substr($1, 2, 1) == \"H\" {print $2}'); "
    f'if [ -n "$broken" ]; then {APT_UPDATE} && {APT} install --reinstall -y $broken || exit 1; fi; '
    f"dpkg --configure -a && {APT} -f install -y"
)
