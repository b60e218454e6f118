"""The ``buildfleet:`` configuration keys: their types, defaults, and validation.

One schema serves every source: Pulumi stack config (``buildfleet:<key>``), a
``buildfleet.yaml`` file, and ``--set key=value`` on the CLI. ``Pulumi.yaml`` declares the
same keys and defaults (a test keeps the two equal). Everything is checked here, before
any plan or resource exists, and each error names its key.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from provisioning.catalog import Catalog, InstanceType
from provisioning.errors import CatalogError, ConfigError, did_you_mean
from provisioning.platforms import Platform, parse_platforms

NAMESPACE = "buildfleet"
# The fleet's identity (CA, keys, settings) kept in an AWS stack as a secret: state, not a setting.
IDENTITY_KEY = "fleetIdentity"
ROLES = ("amd64", "arm64", "emulation")
IMAGES = ("ubuntu-24.04", "debian-12")
# Where an AWS host's SSH host key comes from: the host makes it and prints its public half on the
# serial console (read through ec2:GetConsoleOutput), or Pulumi makes it and hands it over in user data.
HOST_KEY_SOURCES = ("console", "stack")
WORLD = ("0.0.0.0/0", "::/0")
# EC2 key pairs import only these (ImportKeyPair: RSA and ED25519; no ECDSA, no FIDO "sk-" keys).
EC2_KEY_TYPES = ("ssh-ed25519", "ssh-rsa")
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
)


# A key's validation: (key, its value coerced to the declared type, every key's value) -> the
# value Settings holds; a bad one raises ConfigError naming the key.
Check = Callable[[str, Any, Mapping[str, Any]], Any]
QEMU_SOURCES = ("auto", "pinned", "distro")
ARTIFACT_SOURCES = ("auto", "release", "go", "dir")
LOCAL_INITS = ("systemd", "none")
DOCKER_SOURCES = ("distro", "docker")


@dataclass(frozen=True)
class Key:
    """One configuration key: Pulumi.yaml's ``config:`` block and the README's reference table are
    rendered from these, and settings_from_mapping validates with them."""

    name: str
    type: str  # Pulumi's project-config types: string, integer, boolean, array
    default: Any
    description: str
    choices: tuple[str, ...] = ()  # the allowed values (each item's, for an array)
    check: Check | None = None

    def validate(self, values: Mapping[str, Any]) -> Any:
        value = values[self.name]
        if self.choices:
            for item in value if self.type == "array" else [value]:
                _checked_choice(self.name, item, self.choices)
        if self.check is not None:
            return self.check(self.name, value, values)
        return tuple(value) if self.type == "array" else value


def setting(
    name: str, type: str, default: Any, description: str, choices: tuple[str, ...] = (), check: Check | None = None
) -> Any:
    """A field of Settings that is a configuration key: declared here once, nowhere else."""
    return field(metadata={"key": Key(name, type, default, description, choices, check)})


@dataclass(frozen=True)
class BuildkitGc:
    """BuildKit's disk-sized garbage collection limits (buildkitd.toml, BuildKit 0.17 and later), each a
    share of the host's disk ("60%") or a size ("40GB"), resolved by buildkitd against its own disk."""

    max_used: str
    min_free: str
    reserved: str


# BuildKit's DiskSpace: N% or a size go-units reads as bytes (512MB, 40GB, 1.5GiB).
DISK_SPACE = re.compile(r"(?:[1-9][0-9]?%|[0-9]+(?:\.[0-9]+)? ?[kKmMgGtT]?[iI]?[bB]?)")


@dataclass(frozen=True)
class RoleSpec:
    """How many hosts of one role, on which instance type."""

    role: str
    instance_type: InstanceType
    count: int


@dataclass(frozen=True)
class WakeTrust:
    """Which CI jobs may assume the stack's wake role with their OIDC token: named GitHub
    repositories (with an optional claim suffix) and named CircleCI projects, never a wildcard."""

    github_repositories: tuple[str, ...] = ()
    github_provider_arn: str = ""
    circleci_org: str = ""
    circleci_projects: tuple[str, ...] = ()


def _checked_choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{NAMESPACE}:{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _checked_platforms(key: str, value: list[str], values: Mapping[str, Any]) -> tuple[Platform, ...]:
    try:
        return parse_platforms(value)
    except ConfigError as error:
        raise ConfigError(f"{NAMESPACE}:{key}: {error}") from None


def _network(key: str, text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as error:
        raise ConfigError(f"{NAMESPACE}:{key}: {text!r} is not a CIDR ({error})") from None


def _checked_vpc_cidr(key: str, value: str, values: Mapping[str, Any]) -> str:
    """An IPv4 network of /24 or larger: each zone's subnet is a sixteenth of it (at least a /28,
    EC2's smallest), so a host moved to another zone never needs the address range of the first."""
    network = ipaddress.ip_network(_network(key, value))
    if network.version != 4 or network.prefixlen > 24:
        raise ConfigError(f"{NAMESPACE}:{key}: {value} is too small: give an IPv4 network of /24 or larger")
    return value


def _checked_cidrs(key: str, value: list[str], values: Mapping[str, Any]) -> tuple[str, ...]:
    """Any network, the world included: buildkitdCidrs exists to open buildkitd (mTLS only) wider
    than SSH, for CI runners without fixed addresses. The README states the risk."""
    return tuple(_network(key, text) for text in value)


def _checked_allowed_cidrs(key: str, value: list[str], values: Mapping[str, Any]) -> tuple[str, ...]:
    cidrs = _checked_cidrs(key, value, values)
    for network in cidrs:
        if network in WORLD and not values["allowWorld"]:
            raise ConfigError(
                f"{NAMESPACE}:{key}: {network} opens SSH and buildkitd to the whole internet; "
                f"use your office or VPN CIDR, or set {NAMESPACE}:allowWorld true if you really mean it"
            )
    return cidrs


def _at_least(least: int, unit_too_small: str) -> Check:
    def check(key: str, value: int, values: Mapping[str, Any]) -> int:
        if value < least:
            raise ConfigError(f"{NAMESPACE}:{key}: {value} {unit_too_small} ({least} or more)")
        return value

    return check


def _zero_or_more(zero_means: str) -> Check:
    def check(key: str, value: int, values: Mapping[str, Any]) -> int:
        if value < 0:
            raise ConfigError(f"{NAMESPACE}:{key}: must be 0 ({zero_means}) or more, got {value}")
        return value

    return check


def _checked_port(key: str, value: int, values: Mapping[str, Any]) -> int:
    if not 1 <= value <= 65535 or value == 22:
        raise ConfigError(f"{NAMESPACE}:{key}: {value} is not a usable TCP port (1-65535, not 22)")
    return value


def _checked_repositories(key: str, value: tuple[str, ...], values: Mapping[str, Any]) -> tuple[str, ...]:
    for repository in value:
        if not GITHUB_REPOSITORY.fullmatch(repository) or ":" in repository:
            raise ConfigError(f"{NAMESPACE}:{key}: {repository!r} is not OWNER/REPO (named repositories only)")
    return value


def _checked_circleci_projects(key: str, value: tuple[str, ...], values: Mapping[str, Any]) -> tuple[str, ...]:
    org_key = "exchangeCircleciOrgId"
    org = str(values.get(org_key) or "")
    for name, given in [(org_key, org)] * bool(org) + [(key, str(p)) for p in value]:
        if not UUID.fullmatch(given):
            raise ConfigError(f"{NAMESPACE}:{name}: {given!r} is not a CircleCI ID (a lower-case UUID)")
    if bool(org) != bool(value):
        raise ConfigError(f"{NAMESPACE}:{org_key} and {key} go together: named projects of one organization")
    return value


def _checked_disk_space(key: str, value: str, values: Mapping[str, Any]) -> str:
    if not DISK_SPACE.fullmatch(value) or value in ("0", "0%"):
        raise ConfigError(
            f"{NAMESPACE}:{key}: {value!r} is neither a share of the disk (1% to 99%) nor a size such as 40GB"
        )
    return value


def _checked_mirror(key: str, value: str, values: Mapping[str, Any]) -> str:
    if value and not re.fullmatch(r"(https?|file)://\S+", value):
        raise ConfigError(f"{NAMESPACE}:{key}: {value!r} is not an http(s):// or file:// URL")
    return value


def _checked_ssh_key(key: str, value: str, values: Mapping[str, Any]) -> str:
    if value and value.split(" ", 1)[0] not in SSH_KEY_TYPES:
        raise ConfigError(
            f"{NAMESPACE}:{key}: not an OpenSSH public key (expected it to start with one of "
            f"{', '.join(SSH_KEY_TYPES)}); paste the contents of your ~/.ssh/id_ed25519.pub"
        )
    return value


def _checked_fleet_id(key: str, value: str, values: Mapping[str, Any]) -> str:
    if value and not re.fullmatch(r"[0-9a-f]{16}", value):
        raise ConfigError(
            f"{NAMESPACE}:{key}: {value!r} is not 16 lower-case hex digits (up sets it; keep what it set)"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated configuration; build it with ``settings_from_mapping``. Each ``setting`` field is
    a configuration key (its name, type, default, description and check: the one declaration);
    the fields after them are made from several keys at once."""

    platforms: tuple[Platform, ...] = setting(
        "platforms",
        "array",
        [
            "linux/amd64",
            "linux/arm64",
            "linux/arm/v7",
            "linux/arm/v6",
            "linux/386",
            "linux/ppc64le",
            "linux/s390x",
            "linux/riscv64",
        ],
        "Platforms the builder builds; each goes to a native host if one exists, else QEMU.",
        check=_checked_platforms,
    )
    amd64_instance_type: str = setting(
        "amd64InstanceType",
        "string",
        "c7i.xlarge",
        "Instance type of the native linux/amd64 hosts.",
    )
    amd64_count: int = setting(
        "amd64Count",
        "integer",
        1,
        "Number of native amd64 hosts (0 or more).",
    )
    arm64_instance_type: str = setting(
        "arm64InstanceType",
        "string",
        "c7g.xlarge",
        "Instance type of the native arm64 (Graviton) hosts; Graviton2/3 also run arm/v7 and arm/v6.",
    )
    arm64_count: int = setting(
        "arm64Count",
        "integer",
        1,
        "Number of native arm64 hosts (0 or more).",
    )
    emulation_instance_type: str = setting(
        "emulationInstanceType",
        "string",
        "c7i.xlarge",
        "Instance type of the QEMU emulation hosts.",
    )
    emulation_count: int = setting(
        "emulationCount",
        "integer",
        1,
        "Number of emulation hosts (0 or more).",
    )
    custom_instance_types: tuple[str, ...] = setting(
        "customInstanceTypes",
        "array",
        [],
        "Extra instance types, each NAME=ARCH,VCPU,MEMORY_GIB,USD_PER_HOUR[,aarch32].",
    )
    allowed_cidrs: tuple[str, ...] = setting(
        "allowedCidrs",
        "array",
        [],
        "CIDRs allowed to reach SSH and buildkitd (required for AWS).",
        check=_checked_allowed_cidrs,
    )
    buildkitd_cidrs: tuple[str, ...] = setting(
        "buildkitdCidrs",
        "array",
        [],
        "Extra CIDRs that may reach buildkitd only, never SSH (e.g. hosted CI runners, 0.0.0.0/0): buildkitd "
        "accepts only the fleet's client certificate.",
        check=_checked_cidrs,
    )
    allow_world: bool = setting(
        "allowWorld",
        "boolean",
        False,
        "Allow 0.0.0.0/0 or ::/0 in allowedCidrs (not recommended).",
    )
    ssh_public_key: str = setting(
        "sshPublicKey",
        "string",
        "",
        "OpenSSH public key installed on the hosts (required for AWS).",
        check=_checked_ssh_key,
    )
    image: str = setting(
        "image",
        "string",
        "ubuntu-24.04",
        "Host OS image: ubuntu-24.04 or debian-12.",
        choices=IMAGES,
    )
    host_keys: str = setting(
        "hostKeys",
        "string",
        "",
        "AWS: where each host's SSH host key comes from, set by the first up and kept: console (the "
        "host makes its own and prints the public half on its serial console, which up reads with "
        "ec2:GetConsoleOutput and pins; no private key in user data), what up sets on a new stack; "
        "stack (Pulumi makes it and hands its private half over in user data), what a stack made "
        "before keeps, and what unset means. A change would stop and start every host: up refuses it.",
        choices=("", *HOST_KEY_SOURCES),
    )
    root_volume_gib: int = setting(
        "rootVolumeGiB",
        "integer",
        50,
        "Size of each host's encrypted gp3 root volume.",
        check=_at_least(8, "GiB is too small"),
    )
    spot: bool = setting(
        "spot",
        "boolean",
        False,
        "Run the hosts as spot instances.",
    )
    create_vpc: bool = setting(
        "createVpc",
        "boolean",
        False,
        "Create a VPC with one public subnet instead of using the default VPC.",
    )
    vpc_cidr: str = setting(
        "vpcCidr",
        "string",
        "10.42.0.0/16",
        "CIDR of the created VPC (only with createVpc; /24 or larger: each zone's subnet is a sixteenth of it).",
        check=_checked_vpc_cidr,
    )
    availability_zone: str = setting(
        "availabilityZone",
        "string",
        "",
        "AZ of the hosts' subnet (empty = the first, by name, that offers every planned instance type).",
    )
    buildkitd_port: int = setting(
        "buildkitdPort",
        "integer",
        1234,
        "TCP port of each host's buildkitd (mTLS).",
        check=_checked_port,
    )
    idle_stop_minutes: int = setting(
        "idleStopMinutes",
        "integer",
        30,
        "Power each host off after this many minutes without a buildkitd client or SSH session (0 = never); "
        "buildfleet wake starts them again. AWS stops the instances (disks and cache kept, Elastic IPs keep "
        "their addresses); the local, vm and static targets default to 0.",
        check=_zero_or_more("never"),
    )
    gc_max_used_space: str = setting(
        "buildkitGcMaxUsedSpace",
        "string",
        "60%",
        "The most of each host's disk BuildKit's cache may use before its garbage collector deletes: a share "
        "of the disk holding /var/lib/buildkit (e.g. 60%) or a size (e.g. 40GB).",
        check=_checked_disk_space,
    )
    gc_min_free_space: str = setting(
        "buildkitGcMinFreeSpace",
        "string",
        "20%",
        "The free disk BuildKit's garbage collector keeps on each host, deleting cache to keep it (a share or a size).",
        check=_checked_disk_space,
    )
    gc_reserved_space: str = setting(
        "buildkitGcReservedSpace",
        "string",
        "10%",
        "The cache BuildKit's garbage collector never deletes below on each host (a share or a size).",
        check=_checked_disk_space,
    )
    max_parallelism: int = setting(
        "buildkitMaxParallelism",
        "integer",
        0,
        "Build steps each buildkitd runs at once; 0 = as many as the host has CPUs.",
        check=_zero_or_more("the host's CPUs"),
    )
    artifact_source: str = setting(
        "artifactSource",
        "string",
        "auto",
        "Where buildkitd, buildctl and buildx for the hosts come from: release (upstream's release files, "
        "checked against buildfleet.lock.json), go (built from the pinned Go modules), dir (the --artifacts "
        "directory only), or auto (that directory where it holds them, else release).",
        choices=ARTIFACT_SOURCES,
    )
    artifact_mirror: str = setting(
        "artifactMirror",
        "string",
        "",
        "A mirror of github.com's release downloads for the release source (air-gapped sites, Artifactory); "
        "empty: https://github.com.",
        check=_checked_mirror,
    )
    qemu_source: str = setting(
        "qemuSource",
        "string",
        "auto",
        "QEMU on emulation hosts: pinned (static QEMU 10, fastest), distro (qemu-user-static), or auto "
        "(pinned when its artifact is there).",
        choices=QEMU_SOURCES,
    )
    docker_source: str = setting(
        "dockerSource",
        "string",
        "distro",
        "Where Docker comes from when a host lacks it: distro (docker.io) or docker (Docker's apt repository,"
        " docker-ce).",
        choices=DOCKER_SOURCES,
    )
    local_init: str = setting(
        "localInit",
        "string",
        "systemd",
        "Local target only: hosts boot systemd, as EC2 hosts do (systemd), or run without an init system (none).",
        choices=LOCAL_INITS,
    )
    vm_roles: tuple[str, ...] = setting(
        "vmRoles",
        "array",
        ["arm64"],
        "vm target only: the roles whose hosts are full-system VMs on this machine (the rest are containers).",
        choices=ROLES,
    )
    wake_github_repositories: tuple[str, ...] = setting(
        "wakeGithubRepositories",
        "array",
        [],
        "AWS: GitHub repositories (OWNER/REPO, or OWNER/REPO:ref:refs/heads/main and the like to narrow it to"
        " a branch or environment) whose Actions jobs may wake the fleet: the stack makes an IAM role "
        "trusting GitHub's OIDC tokens for them alone, with the wake policy attached (no stored key).",
    )
    github_oidc_provider_arn: str = setting(
        "githubOidcProviderArn",
        "string",
        "",
        "AWS: the account's IAM OIDC provider for token.actions.githubusercontent.com, when it has one (an "
        "account holds one per URL); empty: the stack makes it for wakeGithubRepositories.",
    )
    wake_circleci_org_id: str = setting(
        "wakeCircleciOrgId",
        "string",
        "",
        "AWS: the CircleCI organization ID whose projects in wakeCircleciProjectIds may wake the fleet "
        "through an IAM role the stack makes, trusting CircleCI's OIDC tokens ($CIRCLE_OIDC_TOKEN_V2).",
    )
    wake_circleci_project_ids: tuple[str, ...] = setting(
        "wakeCircleciProjectIds",
        "array",
        [],
        "AWS: the CircleCI project IDs (of wakeCircleciOrgId) whose jobs may wake the fleet.",
    )
    exchange_github_repositories: tuple[str, ...] = setting(
        "exchangeGithubRepositories",
        "array",
        [],
        "GitHub repositories (OWNER/REPO) whose Actions jobs may trade their OIDC token for an hour's client "
        "certificate at the fleet's token exchange (ci-config --oidc): no long-lived secret in CI.",
        check=_checked_repositories,
    )
    exchange_github_refs: tuple[str, ...] = setting(
        "exchangeGithubRefs",
        "array",
        [],
        "The refs (e.g. refs/heads/main) those jobs must run on, or [] for any.",
    )
    exchange_github_issuer: str = setting(
        "exchangeGithubIssuer",
        "string",
        "https://token.actions.githubusercontent.com",
        "The GitHub OIDC issuer (GitHub Enterprise Server: https://HOST/_services/token); its keys are read "
        "from ISSUER/.well-known/jwks.",
    )
    exchange_audience: str = setting(
        "exchangeAudience",
        "string",
        "buildfleet",
        "The audience GitHub jobs ask their token for (CircleCI's is its organization ID).",
    )
    exchange_circleci_org_id: str = setting(
        "exchangeCircleciOrgId",
        "string",
        "",
        "The CircleCI organization ID whose projects in exchangeCircleciProjectIds may trade "
        "$CIRCLE_OIDC_TOKEN_V2 for an hour's client certificate.",
    )
    exchange_circleci_project_ids: tuple[str, ...] = setting(
        "exchangeCircleciProjectIds",
        "array",
        [],
        "The CircleCI project IDs (of exchangeCircleciOrgId) whose jobs may use the token exchange.",
        check=_checked_circleci_projects,
    )
    exchange_host: str = setting(
        "exchangeHost",
        "string",
        "",
        "The host that runs the token exchange (empty: the fleet's first host by name).",
    )
    exchange_port: int = setting(
        "exchangePort",
        "integer",
        8443,
        "TCP port of the token exchange (HTTPS) on its host.",
        check=_checked_port,
    )
    fleet_id: str = setting(
        "fleetId",
        "string",
        "",
        "AWS: set by the first up (16 hex digits, random): every resource of the fleet is tagged "
        "buildfleet:fleet-id with it, and the wake policy and wake act only on instances that carry it, "
        "so two fleets named alike in one account never start each other's hosts. Keep it.",
        check=_checked_fleet_id,
    )

    roles: tuple[RoleSpec, ...]  # the three roles' instance types and counts
    gc: BuildkitGc  # the three buildkitGc* keys, checked together
    wake_trust: WakeTrust  # the wake* and githubOidcProviderArn keys
    catalog: Catalog = field(repr=False)  # the instance catalog with customInstanceTypes
    # every key's validated raw value: what a fleet keeps, so later commands use what ``up`` used
    values: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def role(self, name: str) -> RoleSpec:
        return next(r for r in self.roles if r.role == name)

    def exchange_wanted(self) -> bool:
        """Whether the settings trust an OIDC provider, so a host runs the token exchange."""
        return bool(self.exchange_github_repositories or self.exchange_circleci_org_id)


# Every key, in declaration order (the order Pulumi.yaml and the README list them in).
KEYS: dict[str, Key] = {
    f.metadata["key"].name: f.metadata["key"] for f in dataclass_fields(Settings) if "key" in f.metadata
}
_KEY_FIELDS = {f.metadata["key"].name: f.name for f in dataclass_fields(Settings) if "key" in f.metadata}


def _coerce(key: str, value: Any) -> Any:
    """Turn a raw value (typed YAML, or Pulumi's string form) into the key's declared type."""
    kind = KEYS[key].type
    if kind == "string":
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value).strip()
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    elif kind == "array":
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise ConfigError(f"{NAMESPACE}:{key}: {value!r} is not a valid JSON list") from None
            else:
                value = [item.strip() for item in text.split(",")] if text else []
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            if any(not v.strip() for v in value):
                raise ConfigError(f"{NAMESPACE}:{key}: {value!r} has an empty entry")
            return [v.strip() for v in value]
    raise ConfigError(f"{NAMESPACE}:{key}: expected {kind}, got {value!r}")


def _raw_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    values = {key: spec.default for key, spec in KEYS.items()}
    for name, value in raw.items():
        key = str(name).removeprefix(f"{NAMESPACE}:")
        if key not in KEYS:
            raise ConfigError(
                f"unknown configuration key {NAMESPACE}:{key}{did_you_mean(key, KEYS)}; known keys: {', '.join(KEYS)}"
            )
        if value is not None:
            values[key] = _coerce(key, value)
    return values


def _role_specs(values: Mapping[str, Any], catalog: Catalog) -> tuple[RoleSpec, ...]:
    specs = []
    for role in ROLES:
        type_key, count_key = f"{role}InstanceType", f"{role}Count"
        try:
            instance_type = catalog.lookup(values[type_key])
        except CatalogError as error:
            raise CatalogError(f"{NAMESPACE}:{type_key}: {error}") from None
        if role != "emulation" and instance_type.arch != role:
            raise ConfigError(
                f"{NAMESPACE}:{type_key}: {instance_type.name} is an {instance_type.arch} type, "
                f"but the {role} role needs an {role} type"
            )
        if values[count_key] < 0:
            raise ConfigError(f"{NAMESPACE}:{count_key}: must be 0 or more, got {values[count_key]}")
        specs.append(RoleSpec(role, instance_type, values[count_key]))
    if not any(spec.count for spec in specs):
        raise ConfigError(f"the fleet has no hosts: set {NAMESPACE}:amd64Count, arm64Count or emulationCount above 0")
    return tuple(specs)


def _checked_gc(values: Mapping[str, Any]) -> BuildkitGc:
    gc = BuildkitGc(
        values["buildkitGcMaxUsedSpace"], values["buildkitGcMinFreeSpace"], values["buildkitGcReservedSpace"]
    )
    if gc.max_used.endswith("%") and gc.min_free.endswith("%") and int(gc.max_used[:-1]) + int(gc.min_free[:-1]) > 100:
        raise ConfigError(
            f"{NAMESPACE}:buildkitGcMaxUsedSpace {gc.max_used} and buildkitGcMinFreeSpace {gc.min_free} add up to "
            "more than the disk: the cache could never reach its limit while keeping that much free"
        )
    return gc


GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9-]+/[A-Za-z0-9_.-]+(:[A-Za-z0-9_.:/-]+)?")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
OIDC_PROVIDER_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com")


def _checked_wake_trust(values: Mapping[str, Any]) -> WakeTrust:
    repositories = tuple(str(r) for r in values["wakeGithubRepositories"])
    for repository in repositories:
        if not GITHUB_REPOSITORY.fullmatch(repository):
            raise ConfigError(
                f"{NAMESPACE}:wakeGithubRepositories: {repository!r} is not OWNER/REPO[:CLAIM] "
                "(named repositories only, no wildcards)"
            )
    provider = values["githubOidcProviderArn"]
    if provider and not OIDC_PROVIDER_ARN.fullmatch(provider):
        raise ConfigError(
            f"{NAMESPACE}:githubOidcProviderArn: {provider!r} is not an IAM OIDC provider ARN for "
            "token.actions.githubusercontent.com"
        )
    org, projects = values["wakeCircleciOrgId"], tuple(str(p) for p in values["wakeCircleciProjectIds"])
    ids = [("wakeCircleciOrgId", org)] if org else []
    for key, value in ids + [("wakeCircleciProjectIds", project) for project in projects]:
        if not UUID.fullmatch(value):
            raise ConfigError(f"{NAMESPACE}:{key}: {value!r} is not a CircleCI ID (a lower-case UUID)")
    if bool(org) != bool(projects):
        raise ConfigError(
            f"{NAMESPACE}:wakeCircleciOrgId and wakeCircleciProjectIds go together: the role trusts named "
            "projects of one organization"
        )
    return WakeTrust(repositories, provider, org, projects)


def settings_from_mapping(raw: Mapping[str, Any], catalog: Catalog | None = None) -> Settings:
    """Validate raw configuration (keys with or without the ``buildfleet:`` prefix): each key by
    its own declaration, in declaration order, then the ones that are checked together."""
    values = _raw_values(raw)
    catalog = (catalog or Catalog()).with_custom(values["customInstanceTypes"])
    keyed = {_KEY_FIELDS[name]: key.validate(values) for name, key in KEYS.items()}
    return Settings(
        **keyed,
        roles=_role_specs(values, catalog),
        gc=_checked_gc(values),
        wake_trust=_checked_wake_trust(values),
        catalog=catalog,
        values=values,
    )


def require_cloud_access(settings: Settings) -> None:
    """What AWS needs beyond a plan: who may connect, and with which key."""
    require_allowed_cidrs(settings)
    require_ec2_key(settings.ssh_public_key)


def require_allowed_cidrs(settings: Settings) -> None:
    if not settings.allowed_cidrs:
        raise ConfigError(
            f"{NAMESPACE}:allowedCidrs is empty: set it to the CIDRs that may reach SSH and buildkitd, e.g. "
            f"pulumi config set --path '{NAMESPACE}:allowedCidrs[0]' 203.0.113.7/32"
        )


def require_ec2_key(public_key: str) -> None:
    if not public_key:
        raise ConfigError(
            f"{NAMESPACE}:sshPublicKey is not set: "
            f'pulumi config set {NAMESPACE}:sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)"'
        )
    key_type = public_key.split(" ", 1)[0]
    if key_type not in EC2_KEY_TYPES:
        raise ConfigError(
            f"{NAMESPACE}:sshPublicKey is a {key_type} key, which EC2 cannot import (only "
            f"{' and '.join(EC2_KEY_TYPES)}): use an Ed25519 key, or unset it to use the fleet's own"
        )


def pulumi_config_value(value: Any) -> str:
    """Pulumi hands every config value to the program as a string, arrays as JSON: the
    form the CLI writes with the Automation API and the schema above reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
