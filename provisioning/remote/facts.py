"""What a host is and has, read over SSH: each fact is a command plus a pure parser.

Parsers take the command's exit code and output and never touch the network, so they
are tested against captured real outputs.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from provisioning.binfmt import BinfmtEntry
from provisioning.errors import BuildfleetError, tail
from provisioning.platforms import UNAME_TO_ARCH
from provisioning.remote.ssh import Transport

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
T = TypeVar("T")
_MARK = "::buildfleet-fact::"


class FactError(BuildfleetError):
    """A fact's output could not be read; the message shows what came back."""


class FactsLost(FactError):
    """The batch stopped before some facts ran; the message keeps the command's exit and stderr."""


@dataclass(frozen=True, order=True)
class Version:
    """Compared numerically, shown as the tool printed it (18.09.1 stays 18.09.1)."""

    parts: tuple[int, ...]
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        match = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
        if not match:
            raise FactError(f"not a version: {text!r}")
        return cls(tuple(int(p) for p in match.group(1).split(".")), match.group(1))

    def __str__(self) -> str:
        return self.text or ".".join(str(p) for p in self.parts)


class Fact(Generic[T]):
    """A command (argument list, or a constant script run by ``sh -c``) and its parser, which
    gives a ``T`` (as pyinfra's ``FactBase[T]``)."""

    command: ClassVar[tuple[str, ...]] = ()
    sudo: ClassVar[bool] = False  # needs root (run through sudo for a non-root SSH user)

    @property
    def argv(self) -> list[str]:
        return list(self.command)

    def parse(self, exit_code: int, stdout: str) -> T:
        raise NotImplementedError


class OsRelease(Fact[dict[str, str]]):
    command = ("cat", "/etc/os-release")

    def parse(self, exit_code: int, stdout: str) -> dict[str, str]:
        if exit_code != 0:
            raise FactError("/etc/os-release is missing: not a Linux distribution buildfleet knows")
        values = {}
        for line in stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"')
        return values


class Arch(Fact[str]):
    command = ("uname", "-m")

    def parse(self, exit_code: int, stdout: str) -> str:
        machine = stdout.strip()
        if exit_code != 0 or machine not in UNAME_TO_ARCH:
            raise FactError(f"unknown CPU architecture {machine!r} from uname -m")
        return UNAME_TO_ARCH[machine]


class Aarch32(Fact[bool]):
    """Whether the CPU runs 32-bit code natively (lscpu's "CPU op-mode(s)": 32-bit, 64-bit).

    Graviton2/3 keep AArch32 at EL0 and report both modes; Graviton4 reports 64-bit only.
    """

    command = ("lscpu",)

    def parse(self, exit_code: int, stdout: str) -> bool:
        for line in stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "CPU op-mode(s)":
                return "32-bit" in value
        raise FactError(f"lscpu did not report the CPU op-modes: {stdout.strip()[:200]!r}")


class SysResourceCapability(Fact[bool]):
    """Whether the host may hold CAP_SYS_RESOURCE (bit 24 of its capability bounding set).

    Hosts that are themselves containers without it cannot start privileged containers
    (runc fails to apply the capability), which buildx's docker-container driver needs.
    """

    command = ("grep", "^CapBnd:", "/proc/self/status")

    def parse(self, exit_code: int, stdout: str) -> bool:
        if exit_code != 0 or ":" not in stdout:
            raise FactError(f"cannot read the capability bounding set: {stdout.strip()!r}")
        return bool(int(stdout.split(":", 1)[1].strip(), 16) >> 24 & 1)


class DockerRuntime(Fact[str | None]):
    """The Docker engine's default OCI runtime, or None when the engine does not answer."""

    command = ("docker", "info", "--format", "{{.DefaultRuntime}}")
    sudo = True

    def parse(self, exit_code: int, stdout: str) -> str | None:
        return (stdout.strip() or None) if exit_code == 0 else None


class InitSystem(Fact[str]):
    command = ("cat", "/proc/1/comm")

    def parse(self, exit_code: int, stdout: str) -> str:
        return "systemd" if stdout.strip() == "systemd" else "none"


class DpkgInterrupted(Fact[bool]):
    """Whether a dpkg run was cut off (the host stopped or lost power during apt): dpkg's
    journal in /var/lib/dpkg/updates is not empty, or ``dpkg --audit`` lists packages left
    half-installed. apt refuses to install anything until it is repaired."""

    command = ("sh", "-c", "ls -A /var/lib/dpkg/updates 2>/dev/null; dpkg --audit 2>/dev/null")

    def parse(self, exit_code: int, stdout: str) -> bool:
        return bool(stdout.strip())


class DockerClient(Fact[Version | None]):
    """Installed docker CLI version, or None when docker is absent."""

    command = ("sh", "-c", "command -v docker >/dev/null || exit 127; docker --version")

    def parse(self, exit_code: int, stdout: str) -> Version | None:
        if exit_code == 127:
            return None
        match = re.search(r"Docker version (\S+?),?\s", stdout + " ")
        if exit_code != 0 or not match:
            raise FactError(f"cannot read docker --version output: {stdout.strip()!r}")
        return Version.parse(match.group(1))


class DockerServer(Fact[Version | None]):
    """The running engine's version, or None when it does not answer."""

    command = ("docker", "version", "--format", "{{.Server.Version}}")
    sudo = True

    def parse(self, exit_code: int, stdout: str) -> Version | None:
        text = stdout.strip()
        if exit_code != 0 or not re.fullmatch(r"v?\d+(\.\d+)*\S*", text):
            return None  # not running, or a docker too old to know --format
        return Version.parse(text)


@dataclass(frozen=True)
class PackageVersion(Fact[str | None]):
    """dpkg's version of an installed package, or None when it is not installed."""

    package: str = ""

    @property
    def argv(self) -> list[str]:
        return ["dpkg-query", "-W", "-f", "${Status}\\t${Version}\\n", self.package]

    def parse(self, exit_code: int, stdout: str) -> str | None:
        status, _, version = stdout.strip().partition("\t")
        if exit_code != 0 or not status.endswith(" installed"):
            return None
        return version


@dataclass(frozen=True)
class UserGroups(Fact[frozenset[str]]):
    """Groups of the SSH user (to know whether it may use Docker)."""

    user: str = ""

    @property
    def argv(self) -> list[str]:
        return ["id", "-nG", self.user]

    def parse(self, exit_code: int, stdout: str) -> frozenset[str]:
        if exit_code != 0:
            raise FactError(f"user {self.user!r} does not exist on the host")
        return frozenset(stdout.split())


@dataclass(frozen=True)
class Binfmt:
    mounted: bool
    entries: dict[str, BinfmtEntry] = field(default_factory=dict)

    def registered(self, qemu_arch: str, interpreter: str | None = None) -> bool:
        """Usable for builds: enabled, with the F flag (the interpreter opened at registration,
        so it works inside containers), and pointing at ``interpreter`` when one is wanted."""
        entry = self.entries.get(f"qemu-{qemu_arch}")
        return bool(
            self.mounted
            and entry
            and entry.enabled
            and "F" in entry.flags
            and (interpreter is None or entry.interpreter == interpreter)
        )


class BinfmtStatus(Fact[Binfmt]):
    """Whether binfmt_misc is mounted, and every qemu-* interpreter with its flags."""

    command = (
        "sh",
        "-c",
        (
            f"[ -f {BINFMT_DIR}/status ] || {{ echo unmounted; exit 0; }}; echo mounted; "
            f'for f in {BINFMT_DIR}/qemu-*; do [ -f "$f" ] || continue; echo "== ${{f##*/}}"; cat "$f"; done'
        ),
    )

    def parse(self, exit_code: int, stdout: str) -> Binfmt:
        lines = stdout.splitlines()
        if exit_code != 0 or not lines or lines[0] not in ("mounted", "unmounted"):
            raise FactError(f"cannot read binfmt_misc state: {stdout.strip()[:200]!r}")
        if lines[0] == "unmounted":
            return Binfmt(False)
        entries: dict[str, BinfmtEntry] = {}
        sections = "\n".join(lines[1:]).split("\n== ")
        for section in sections:
            name, _, text = section.removeprefix("== ").partition("\n")
            if name.strip():
                entries[name.strip()] = BinfmtEntry.parse(name.strip(), text)
        return Binfmt(True, entries)


@dataclass(frozen=True)
class FileDigests(Fact[dict[str, str | None]]):
    """sha256 of files (None for a missing one): how installed artifacts are compared.

    Hashing ~130 MB of binaries on every run would dominate a re-run, so digests are
    cached on the host (root-only) keyed by size, inode and change time to the
    nanosecond; any write to a file changes its ctime, which the kernel sets and
    ``touch`` cannot, so a changed file is always hashed again (as git's index does).
    """

    paths: tuple[str, ...] = ()
    cache: str = "/var/lib/buildfleet/digests"
    sudo: ClassVar[bool] = True

    @property
    def argv(self) -> list[str]:
        script = (
            f'c={shlex.quote(self.cache)}; (umask 077; mkdir -p "${{c%/*}}"; touch "$c"); '
            'for f in "$@"; do '
            '[ -f "$f" ] || { echo "- $f"; continue; }; '
            'k=$(stat -c "%s:%i:%.9Z" -- "$f"); '
            'd=$(awk -v p="$f" -v k="$k" \'$2 == k && $3 == p {print $1; exit}\' "$c"); '
            'if [ -z "$d" ]; then d=$(sha256sum -- "$f" | cut -d" " -f1); '
            'awk -v p="$f" \'$3 != p\' "$c" > "$c.new"; echo "$d $k $f" >> "$c.new"; mv "$c.new" "$c"; fi; '
            'echo "$d  $f"; done'
        )
        return ["sh", "-c", script, "sh", *self.paths]

    def parse(self, exit_code: int, stdout: str) -> dict[str, str | None]:
        digests: dict[str, str | None] = {}
        for line in stdout.splitlines():
            digest, _, path = line.partition(" ")
            digests[path.strip().lstrip("*")] = None if digest == "-" else digest
        missing = [p for p in self.paths if p not in digests]
        if exit_code != 0 or missing:
            raise FactError(f"cannot read digests of {', '.join(missing) or 'files'}: {stdout.strip()[:200]!r}")
        return digests


@dataclass(frozen=True)
class ServiceRunning(Fact[bool]):
    """Whether a buildfleet service runs: systemd's view where PID 1 is systemd, else the
    supervisor's pidfile (see hosts/services)."""

    name: str = ""
    sudo: ClassVar[bool] = True

    @property
    def argv(self) -> list[str]:
        script = (
            'if [ "$(cat /proc/1/comm)" = systemd ]; then systemctl is-active --quiet "$1"; '
            'else p=/run/buildfleet/$1.pid; [ -f "$p" ] && kill -0 "$(cat "$p")"; fi '
            "&& echo running || echo stopped"
        )
        return ["sh", "-c", script, "sh", self.name]

    def parse(self, exit_code: int, stdout: str) -> bool:
        if stdout.strip() not in ("running", "stopped"):
            raise FactError(f"cannot tell whether {self.name} runs: {stdout.strip()[:200]!r}")
        return stdout.strip() == "running"


class MetadataBlocked(Fact[bool]):
    """Whether this host's firewall rejects connections to the instance metadata service
    (169.254.169.254) from processes on it (OUTPUT) and from containers it routes (FORWARD)."""

    sudo: ClassVar[bool] = True
    command = (
        "sh",
        "-c",
        "command -v iptables >/dev/null || { echo no-iptables; exit 0; }; "
        "for c in OUTPUT FORWARD; do iptables -C $c -d 169.254.169.254/32 -j REJECT 2>/dev/null "
        "|| { echo open; exit 0; }; done; echo blocked",
    )

    def parse(self, exit_code: int, stdout: str) -> bool:
        answer = stdout.strip()
        if answer not in ("blocked", "open", "no-iptables"):
            raise FactError(f"cannot read the metadata firewall rules: {answer[:200]!r}")
        return answer == "blocked"


class IdleSeconds(Fact[int | None]):
    """Seconds since the idle watcher last saw a client (hosts/operations/idle), or None without one."""

    command = (
        "sh",
        "-c",
        "m=$(cat /run/buildfleet/last-active 2>/dev/null) || { echo none; exit 0; }; "
        "read up _ < /proc/uptime; echo $(( ${up%.*} - m ))",
    )

    def parse(self, exit_code: int, stdout: str) -> int | None:
        text = stdout.strip()
        if text == "none":
            return None
        if not text.lstrip("-").isdigit():
            raise FactError(f"cannot read the idle watcher's mark: {text[:200]!r}")
        return max(0, int(text))


BUILDKITD_SOCKET = "unix:///run/buildkit/buildkitd.sock"  # where buildfleet's buildkitd listens on its host
LOCAL_BUILDCTL = ("buildctl", "--addr", BUILDKITD_SOCKET)


class BuildkitdWorkers(Fact[tuple[str, ...] | None]):
    """Platforms of buildkitd's workers over its local socket, or None when it does not answer."""

    command = (
        "sh",
        "-c",
        f"buildctl --addr {BUILDKITD_SOCKET} debug workers --format "
        "'{{range .}}{{range .Platforms}}{{.OS}}/{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}} "
        "{{end}}{{end}}'",
    )
    sudo = True

    def parse(self, exit_code: int, stdout: str) -> tuple[str, ...] | None:
        if exit_code != 0:
            return None
        return tuple(stdout.split())


class BuildsInFlight(Fact[tuple[str, ...] | None]):
    """The refs of the builds buildkitd is running now, or None when it does not answer.

    ``debug histories`` prints buildkitd's active builds first as STARTED records, then the
    finished ones as COMPLETE (BuildKit's solver/llbsolver/history/buildhistory.go Listen);
    it is the same for clients over TCP and the socket. Builds buildx marks internal (its
    --call checks) are never recorded: they last a moment."""

    command = (
        "sh",
        "-c",
        f"buildctl --addr {BUILDKITD_SOCKET} debug histories --format '{{{{.Type}}}} {{{{.Record.Ref}}}}'",
    )
    sudo = True

    def parse(self, exit_code: int, stdout: str) -> tuple[str, ...] | None:
        if exit_code != 0:
            return None
        return tuple(ref for kind, _, ref in (line.partition(" ") for line in stdout.splitlines()) if kind == "STARTED")


class CpuCount(Fact[int]):
    """Online CPUs, as nproc counts them for this process (cgroup and affinity limits included)."""

    command = ("nproc",)

    def parse(self, exit_code: int, stdout: str) -> int:
        if exit_code != 0 or not stdout.strip().isdigit():
            raise FactError(f"nproc printed {stdout.strip()[:80]!r} (exit {exit_code})")
        return int(stdout.strip())


@dataclass(frozen=True)
class ToolVersion(Fact[str | None]):
    """The version a Go tool stamps into itself (``buildkitd github.com/moby/buildkit v0.34.2 REV``,
    ``github.com/docker/buildx v0.38.2 REV``): the token after its module path, without ``v``;
    None when the binary is absent or prints something else."""

    path: str = ""
    args: tuple[str, ...] = ("--version",)
    module: str = ""

    @property
    def argv(self) -> list[str]:
        return [self.path, *self.args]

    def parse(self, exit_code: int, stdout: str) -> str | None:
        words = stdout.split()
        if exit_code != 0 or self.module not in words[:-1]:
            return None
        return words[words.index(self.module) + 1].removeprefix("v")


@dataclass(frozen=True)
class PublicFile(Fact[bytes | None]):
    """A file that holds nothing secret (a certificate), as it is on the host; None when missing."""

    path: str = ""
    sudo: ClassVar[bool] = True

    @property
    def argv(self) -> list[str]:
        return ["sh", "-c", '[ -f "$1" ] || exit 3; cat -- "$1"', "sh", self.path]

    def parse(self, exit_code: int, stdout: str) -> bytes | None:
        if exit_code == 3:
            return None
        if exit_code != 0:
            raise FactError(f"cannot read {self.path} (exit {exit_code})")
        return stdout.encode()


@dataclass(frozen=True)
class Runc:
    """The runc buildkitd runs, as found on the host."""

    version: str  # as ``runc --version`` prints it (1.1.5+ds1)
    package: str = ""  # the distribution package that owns it ("" for a binary of its own)
    package_version: str = ""
    changelog_cves: frozenset[str] = frozenset()  # CVE ids the package's changelog names as fixed


class RuncInfo(Fact[Runc | None]):
    """runc's version and, where a package owns it, that package's version and the runc CVEs its
    Debian-format changelog names: distributions backport fixes without changing runc's version.
    None when there is no runc."""

    command = (
        "sh",
        "-c",
        'p=$(command -v runc) || exit 127; runc --version | sed -n "s/^runc version /version=/p"; '
        'pkg=$(dpkg -S "$p" "$(readlink -f "$p")" 2>/dev/null | head -n 1 | cut -d: -f1); [ -n "$pkg" ] || exit 0; '
        'echo "package=$pkg $(dpkg-query -W -f \'${Version}\' "$pkg")"; '
        'zcat "/usr/share/doc/$pkg/changelog.Debian.gz" 2>/dev/null | grep -oE "CVE-[0-9]{4}-[0-9]+" | sort -u | '
        'sed "s/^/cve=/"; true',
    )

    def parse(self, exit_code: int, stdout: str) -> Runc | None:
        if exit_code != 0:
            return None
        fields: dict[str, list[str]] = {}
        for line in stdout.splitlines():
            key, _, value = line.partition("=")
            fields.setdefault(key, []).append(value.strip())
        if "version" not in fields:
            return None
        package, _, package_version = (fields.get("package") or [""])[0].partition(" ")
        return Runc(fields["version"][0], package, package_version, frozenset(fields.get("cve", ())))


@dataclass(frozen=True)
class GcLimits:
    """The limits buildkitd's last (catch-all) GC rule enforces, in bytes, as it resolved them."""

    max_used: int
    min_free: int
    reserved: int


class BuildkitdGcLimits(Fact[GcLimits | None]):
    """What buildkitd itself reports of its garbage collection (the last rule, ``all``), or None
    when it does not answer."""

    command = (*LOCAL_BUILDCTL, "debug", "workers", "--format", "{{json .}}")
    sudo = True

    def parse(self, exit_code: int, stdout: str) -> GcLimits | None:
        if exit_code != 0:
            return None
        try:
            rules = [rule for worker in json.loads(stdout) for rule in worker.get("gcPolicy") or ()]
        except (ValueError, TypeError, AttributeError):
            raise FactError(f"buildctl debug workers printed {stdout.strip()[:80]!r}") from None
        if not rules:
            return None
        last = rules[-1]
        return GcLimits(
            int(last.get("maxUsedSpace", 0)), int(last.get("minFreeSpace", 0)), int(last.get("reservedSpace", 0))
        )


# go-units' HumanSize (decimal), as buildctl du prints sizes
_SIZE = re.compile(r"([0-9.]+)\s*([kMGTP]?)B")
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


class BuildkitCacheUsage(Fact[int | None]):
    """Bytes BuildKit's cache takes (``buildctl du``'s total), or None when buildkitd does not answer."""

    command = (*LOCAL_BUILDCTL, "du")
    sudo = True

    def parse(self, exit_code: int, stdout: str) -> int | None:
        if exit_code != 0:
            return None
        total = re.search(r"^Total:\s*(\S+)", stdout, re.MULTILINE)
        size = _SIZE.fullmatch(total.group(1)) if total else None
        if size is None:
            raise FactError(f"buildctl du printed no total: {stdout.strip()[-80:]!r}")
        return round(float(size.group(1)) * _UNITS[size.group(2)])


@dataclass(frozen=True)
class Disk:
    size: int
    free: int  # available to buildkitd (root's reserve excluded)


class BuildkitDisk(Fact[Disk]):
    """The disk BuildKit's cache lives on (/var/lib/buildkit, or /var/lib before it exists)."""

    command = ("sh", "-c", "df -P -B1 /var/lib/buildkit 2>/dev/null || df -P -B1 /var/lib")

    def parse(self, exit_code: int, stdout: str) -> Disk:
        fields = stdout.strip().splitlines()[-1].split() if stdout.strip() else []
        if exit_code != 0 or len(fields) < 4 or not fields[1].isdigit() or not fields[3].isdigit():
            raise FactError(f"df printed {stdout.strip()[-80:]!r} (exit {exit_code})")
        return Disk(int(fields[1]), int(fields[3]))


_STDERR = "::buildfleet-stderr::"
# Each fact's stderr goes to a file in a private directory and is printed, line by line under
# its own mark, after the fact's exit code: the parsers see stdout alone, the report the rest.
_BATCH_START = (
    'd=$(mktemp -d 2>/dev/null) || d=""; trap \'[ -z "$d" ] || rm -rf "$d"\' EXIT; '
    'e="${d:+$d/stderr}"; e="${e:-/dev/null}"'
)
# awk, not sed: it ends every line it prints, so a last line without a newline cannot swallow the next mark
_BATCH_STDERR = f'[ "$e" = /dev/null ] || {{ awk \'{{print "{_STDERR} " $0}}\' "$e"; : >"$e"; }}'


def batch_script(facts: Mapping[str, Fact]) -> str:
    """One shell script printing every fact's output, exit code and stderr: one round trip a step."""
    parts = [_BATCH_START]
    for index, fact in enumerate(facts.values()):
        run = f'{shlex.join(fact.argv)} 2>"$e" </dev/null'
        parts.append(f"echo '{_MARK} {index}'; {run}; echo \"{_MARK} $?\"; {_BATCH_STDERR}")
    return "\n".join(parts)


class Gathered(dict[str, Any]):
    """Facts by the names their step gave them, with what each printed on stderr beside them."""

    def __init__(self, facts: Mapping[str, Fact], values: Mapping[str, Any], stderr: Mapping[str, str]):
        super().__init__(values)
        self.facts = facts
        self.stderr = dict(stderr)

    def of(self, fact: Fact[T]) -> T:
        """The value of ``fact`` (one of the step's own instances), typed as its parser gives it."""
        return self[next(name for name, known in self.facts.items() if known is fact)]


def parse_batch(facts: Mapping[str, Fact], stdout: str) -> Gathered:
    values: dict[str, Any] = {}
    stderr: dict[str, str] = {}
    lines, index = stdout.splitlines(), 0
    names = list(facts)
    while index < len(lines):
        if not lines[index].startswith(f"{_MARK} "):
            index += 1
            continue
        position = int(lines[index].split()[1])
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith(f"{_MARK} ")), None)
        if end is None:
            break  # the shell stopped inside this fact: reported as missing below
        name = names[position]
        after = end + 1
        while after < len(lines) and lines[after].startswith(f"{_STDERR} "):
            after += 1
        stderr[name] = "\n".join(line.removeprefix(f"{_STDERR} ") for line in lines[end + 1 : after])
        try:
            values[name] = facts[name].parse(int(lines[end].split()[1]), "\n".join(lines[index + 1 : end]) + "\n")
        except (ValueError, IndexError, KeyError) as error:  # the host printed what no parser expects
            raise FactsLost(
                f"fact {name}: the host's output did not parse ({type(error).__name__}: {error})" + _said(stderr[name])
            ) from None
        except FactError as error:
            raise FactError(f"{error}{_said(stderr[name])}") from None
        index = after
    missing = [n for n in names if n not in values]
    if missing:
        raise FactsLost(f"facts {', '.join(missing)} produced no output")
    return Gathered(facts, values, stderr)


def _said(stderr: str) -> str:
    return f"; it said on stderr: {tail(stderr)}" if stderr.strip() else ""


def gather(transport: Transport, facts: Mapping[str, Fact]) -> Gathered:
    """Every fact in one round trip; facts the shell never reached name the command, exit code
    and stderr (sudo asking for a password, a shell killed mid-way)."""
    result = transport.run(("sh", "-c", batch_script(facts)), sudo=any(f.sudo for f in facts.values()))
    try:
        return parse_batch(facts, result.stdout)
    except FactsLost as lost:
        raise FactsLost(
            f"{transport.host.name}: {lost} ($ {result.command}: exit {result.exit_code}"
            + (f": {tail(result.stderr)}" if result.stderr.strip() else "")
            + ")"
        ) from None
