"""The AWS target: this project's Pulumi program, run through Pulumi's Automation API.

The program (``__main__.py``) stays the one source of the fleet's resources; this
module only drives it -- select or create the stack, hand over config, ``up`` or
``destroy`` -- and turns the stack outputs into the inventory and pinned host keys that
later stages read. It needs the Pulumi CLI on PATH and AWS credentials, as
``pulumi up`` does; the stack's own settings stay in ``Pulumi.<stack>.yaml``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from provisioning.artifacts import missing_error, missing_for
from provisioning.artifacts.source import artifact_source
from provisioning.certs import FleetCA
from provisioning.checks import Check, failed, passed
from provisioning.configfile import DEFAULT_FILE, stack_region
from provisioning.errors import BuildfleetError, ConfigError
from provisioning.extras import AWS, available, install_hint, require
from provisioning.handover import digest, from_stack, install, replace_identity, require_new, to_stack
from provisioning.inventory import Features, Inventory, InventoryHost
from provisioning.placement import EMULATION
from provisioning.plan import Plan, plan_fleet
from provisioning.remote.ssh import connect
from provisioning.remote.wait import wait_for_hosts
from provisioning.removal import unlink_inside
from provisioning.settings import IDENTITY_KEY, NAMESPACE, Settings, require_allowed_cidrs, require_ec2_key
from provisioning.state import FleetState
from provisioning.targets import automation, declared_features
from provisioning.targets.account import cancel_spot_requests, detach_policy, fleet_leftovers
from provisioning.targets.awsquota import Needs, account_checks
from provisioning.targets.base import ConfigSources, HostState, TargetOptions, settings_with_defaults
from provisioning.targets.changes import ChangePreview, refuse_changes
from provisioning.targets.ec2console import read_console_keys, unread_error
from provisioning.targets.ec2power import (
    ASLEEP,
    Ec2Host,
    aws_errors,
    describe_aws_error,
    stack_hosts,
    start_stack_hosts,
)
from provisioning.targets.nlb import NlbMembers
from provisioning.targets.preflight import AWS_PACKAGES, MACHINE, attempt, package_checks, tool_check

TARGET = "aws"


LEFTOVER_SECONDS = 60  # how long down asks again for what AWS may still list a moment after destroy


@dataclass
class AwsTarget:
    stack: str
    project_dir: Path
    state: FleetState
    sources: ConfigSources | None = None
    ssh_key: Path | None = None  # private half of a user-set buildfleet:sshPublicKey
    wait_timeout: float = 900
    artifacts_dir: Path | None = None  # checked before up: every host file the plan's CPUs need
    creating: bool = False  # up may name a stack whose Pulumi.<stack>.yaml does not exist yet
    on_output: Callable[[str], None] = lambda line: None
    confirm: Callable[[ChangePreview], None] = refuse_changes  # sees each preview; raises to stop

    kind: ClassVar[str] = TARGET
    defaults: ClassVar[Mapping[str, Any]] = {}  # Pulumi.yaml's own defaults apply
    features: ClassVar[Features] = Features(cidr_firewall=True, instance_metadata=True, wakes=True, catalog_priced=True)

    @classmethod
    def from_options(cls, options: TargetOptions) -> AwsTarget:
        stack = options.sources.stack or options.state.recorded_stack() or options.fleet
        sources = options.sources
        recorded = options.state.recorded_project()
        here = automation.stack_file(sources.project_dir, stack).exists()
        if not options.creating and not here and recorded and automation.stack_file(recorded, stack).exists():
            sources = dataclasses.replace(sources, project_dir=recorded)  # run from elsewhere: the fleet's own
        return cls(
            stack,
            sources.project_dir,
            options.state,
            sources=sources,
            ssh_key=options.ssh_key,
            wait_timeout=options.wait_timeout,
            creating=options.creating,
            artifacts_dir=options.artifacts_dir,
            on_output=options.on_output,
            confirm=options.confirm,
        )

    def _raw(self) -> dict[str, Any]:
        """The user's keys: the stack file (when it exists yet), buildfleet.yaml, --set."""
        if self.sources is None:
            return {}
        exists = automation.stack_file(self.project_dir, self.stack).exists()
        named = self.sources.stack is not None and not self.creating  # a named stack file must exist, but for up
        return self.sources.raw_with_stack(self.stack if exists or named else None)

    def _own_key(self) -> str:
        public = self.state.ssh_key.with_suffix(".pub")
        return public.read_text().strip() if public.exists() else ""

    def settings(self) -> Settings:
        raw = self._raw()
        if not raw.get("sshPublicKey") and self._own_key():
            raw["sshPublicKey"] = self._own_key()
        return settings_with_defaults(raw, self.defaults)

    def plan(self, settings: Settings) -> Plan:
        return plan_fleet(settings)

    def up(self, settings: Settings) -> Inventory:
        """Preview, confirm, pulumi up, then wait until every host answers over SSH with cloud-init done."""
        to_set, ssh_key = self.prepare(settings)
        self.check_account(settings)
        self.on_output(f"pulumi up: stack {self.stack!r} in {self.project_dir}")
        inventory = self.started(self.apply(to_set, ssh_key, confirm=self.confirm), str(self._raw().get("fleetId", "")))
        self.pin_console_keys(inventory)
        waited = wait_for_hosts(inventory.hosts, lambda host: connect(host, self.state), self.wait_timeout)
        self.on_output("hosts answer: " + ", ".join(f"{name} after {w.seconds:.0f} s" for name, w in waited.items()))
        for warning in (w.warning for w in waited.values() if w.warning):
            self.on_output(f"warning: {warning}")
        return inventory

    def check_account(self, settings: Settings) -> None:
        """The account's limits against the plan, before anything is made: a limit the plan would
        hit stops up here, with nothing made (see awsquota); a limit that cannot be read is a warning."""
        checks = self.account_checks(settings)
        for check in (c for c in checks if c.warning):
            self.on_output(f"warning: {check.detail} ({check.fix})")
        stops = [c for c in checks if not c.ok and not c.warning]
        if stops:
            found = "; ".join(f"{c.check}: {c.detail} ({c.fix})" for c in stops)
            raise BuildfleetError(f"the account would stop up half-way, so nothing was made: {found}")

    def account_checks(self, settings: Settings) -> list[Check]:
        boto3 = require("boto3", AWS, "the aws target")
        region, errors = self._region(), sdk_errors()
        try:
            ec2 = boto3.client("ec2", region_name=region)
            quotas = boto3.client("service-quotas", region_name=region)
            needs = Needs.of(self.plan(settings), settings)
            return account_checks(ec2, quotas, needs, self.stack, settings.fleet_id, errors)
        except errors as error:
            detail = describe_aws_error(error, "reading the account's limits (offerings, Elastic IPs)")
            return [failed("aws", "account limits", detail, "see the detail: up would meet the same refusal")]

    def prepare(self, settings: Settings) -> tuple[dict[str, Any], str]:
        """The keys up sets on the stack (the user's buildfleet.yaml and --set; the stack file
        keeps its own) and the private key SSH uses ("": the fleet's own). Every configuration
        error is raised here, before Pulumi runs or anything is written."""
        require_allowed_cidrs(settings)
        previous = self.state.saved_settings() if self.state.inventory_file.exists() else None
        if previous is not None:
            refuse_host_replacement(self.stack, previous, settings, self._own_key())
        user_key = self._raw().get("sshPublicKey", "")
        own = not user_key or user_key == self._own_key()  # an earlier up writes the fleet's own key there
        if not own:
            require_ec2_key(user_key)
        # a key only the stack file names may be the fleet's own key another operator's up wrote
        # there: the identity check below says so, not a demand for --ssh-key
        if not own and "sshPublicKey" in self._to_set():
            self._require_private_key()
        self._require_artifacts(settings)  # then what this machine must have
        automation.check_project(self.project_dir, self.stack)
        self.require_identity()  # then that this machine holds the stack's fleet, if it has one
        if not own:
            self._require_private_key()
        to_set = self._to_set()
        if not settings.fleet_id:  # the first up: the fleet's identity, kept in the stack from now on
            to_set["fleetId"] = secrets.token_hex(8)
        if not own and self.ssh_key is not None:
            return to_set, str(self.ssh_key.expanduser())
        to_set["sshPublicKey"] = self.state.ensure_ssh_key()
        return to_set, ""

    def _require_private_key(self) -> None:
        if self.ssh_key is None or not self.ssh_key.expanduser().is_file():
            raise ConfigError(
                f"{NAMESPACE}:sshPublicKey is set, so buildfleet needs its private half: "
                "--ssh-key PATH (e.g. ~/.ssh/id_ed25519); or unset it to use the fleet's own key"
            )

    def _to_set(self) -> dict[str, Any]:
        """What up writes into the stack's config: the command line's choices (--config, --set), and
        ./buildfleet.yaml's keys only where the stack file has none (a file that merely lies in the
        directory never overwrites the stack's own settings)."""
        if self.sources is None:
            return {}
        layers = self.sources.layers(
            self.stack if automation.stack_file(self.project_dir, self.stack).exists() else None
        )
        stack_keys = layers.pop(f"Pulumi.{self.stack}.yaml", {})
        implicit = str(self.project_dir / DEFAULT_FILE)
        to_set: dict[str, Any] = {}
        for name, layer in layers.items():
            to_set.update({k: v for k, v in layer.items() if name != implicit or k not in stack_keys})
        return to_set

    def _require_artifacts(self, settings: Settings) -> None:
        """Every file configure will upload, for every host CPU the plan has (Graviton above
        all), found before instances exist and bill."""
        if self.artifacts_dir is None:
            return
        hosts = self.plan(settings).hosts
        arches = [h.arch for h in hosts]
        pinned = [h.arch for h in hosts if h.role == EMULATION] if settings.qemu_source == "pinned" else []
        source = artifact_source(
            settings.artifact_source, self.artifacts_dir, self.project_dir, settings.artifact_mirror
        )
        missing = missing_for(source, arches, pinned)
        if missing:
            raise missing_error(self.artifacts_dir, missing, arches)

    def wake(self, settings: Settings) -> Inventory:
        """Start the stack's stopped instances (found by tag, through the AWS SDK), follow any
        that came back at other addresses, and wait until each answers over SSH."""
        boto3 = require("boto3", AWS, "buildfleet wake")
        inventory = self.state.load_inventory(declared_features)
        if inventory is None:
            raise BuildfleetError(f"{self.state.root} has no inventory: run buildfleet up --target aws first")
        with aws_errors(f"wake of stack {self.stack!r}", sdk_errors()):
            ec2 = boto3.client("ec2", region_name=self._region())
            running = start_stack_hosts(ec2, self.stack, self.wait_timeout, fleet_id=settings.fleet_id)
        self.on_output("EC2 hosts running: " + ", ".join(sorted(running)))
        moved = self.follow(inventory, {h.host: (h.public_ip, h.private_ip) for h in running.values()})
        wait_for_hosts(moved.hosts, lambda host: connect(host, self.state), self.wait_timeout)
        return moved

    def started(self, inventory: Inventory, fleet_id: str) -> Inventory:
        """The inventory with the stack's stopped hosts started: pulumi up leaves an instance idle
        stop powered off as it is, and waiting for its SSH would only time out."""
        boto3 = require("boto3", AWS, "the aws target")
        with aws_errors(f"starting the stopped hosts of stack {self.stack!r}", sdk_errors()):
            ec2 = boto3.client("ec2", region_name=self._region())
            stopped = sorted(h.host for h in stack_hosts(ec2, self.stack, fleet_id).values() if h.state in ASLEEP)
            if not stopped:
                return inventory
            self.on_output(f"stopped (idle stop, or by hand): {', '.join(stopped)}; starting them")
            running = start_stack_hosts(ec2, self.stack, self.wait_timeout, poll=2, fleet_id=fleet_id)
        return self.follow(inventory, {h.host: (h.public_ip, h.private_ip) for h in running.values()})

    def pool_members(self, inventory: Inventory) -> NlbMembers:
        """The pools' NLBs, steered through the AWS SDK (found by the inventory and the stack's tags)."""
        boto3 = require("boto3", AWS, "a rolling restart of a pool's members")
        region, errors = self._region(), sdk_errors()
        with aws_errors("steering the pools' load balancers", errors):  # no region: one line too
            elbv2, ec2 = boto3.client("elbv2", region_name=region), boto3.client("ec2", region_name=region)
        return NlbMembers(elbv2, ec2, inventory, self.stack, self.settings().fleet_id, sdk_errors=errors)

    def follow(self, inventory: Inventory, addresses: Mapping[str, tuple[str, str]]) -> Inventory:
        """Hosts at new addresses (no Elastic IP, stopped by hand): the inventory and the pinned
        keys move with them; the keys themselves stay what the stack made."""
        moved = inventory.with_addresses(addresses)
        if moved != inventory:
            keys = self.state.known_host_keys()
            pairs = zip(inventory.hosts, moved.hosts, strict=True)
            known = {(n.address, n.ssh_port): keys.get((o.address, o.ssh_port)) for o, n in pairs}
            self.state.write_known_hosts({where: key for where, key in known.items() if key})  # unread: none yet
            self.state.save_inventory(moved)
        return moved

    def pin_console_keys(self, inventory: Inventory) -> None:
        """Pin the host keys of the hosts that made their own (hostKeys: console) and whose key
        is not read yet: from each instance's serial console, before the first SSH connection."""
        entries = self.state.console_keys()
        unread = {h: e["instance"] for h, e in entries.items() if not e.get("key")}
        if not unread:
            return
        boto3 = require("boto3", AWS, "the aws target")
        self.on_output(f"reading the SSH host keys of {', '.join(sorted(unread))} from their serial consoles")
        with aws_errors(f"reading the consoles of stack {self.stack!r}", sdk_errors()):
            ec2 = boto3.client("ec2", region_name=self._region())
            read = read_console_keys(ec2, unread, self.wait_timeout, sdk_errors(), on_output=self.on_output)
        self.state.save_console_keys({h: {**e, "key": read.get(h, e.get("key", ""))} for h, e in entries.items()})
        pinned = self.state.known_host_keys()
        pinned.update({(h.address, h.ssh_port): read[h.name] for h in inventory.hosts if h.name in read})
        self.state.write_known_hosts(pinned)  # those read are kept: a re-run reads only the others
        if len(read) < len(unread):
            raise unread_error({h: i for h, i in unread.items() if h not in read}, self.wait_timeout)

    def _region(self) -> str | None:
        """The stack's aws:region, as the Pulumi program ran with it; else AWS_REGION, which the
        provider reads too (the SDK reads only AWS_DEFAULT_REGION and the profile on its own)."""
        return stack_region(self.project_dir, self.stack) or os.environ.get("AWS_REGION") or None

    def preflight(self, settings: Settings) -> list[Check]:
        """The Pulumi CLI, its login and passphrase, the project, and who the AWS credentials are
        (STS, the one connection made: to the AWS API the user configured)."""
        cli = tool_check("pulumi", "the Pulumi CLI (https://www.pulumi.com/docs/install/)", "up runs it")
        checks = [*package_checks(AWS_PACKAGES, AWS), cli]
        if cli.ok:
            checks.append(attempt(MACHINE, "pulumi version", _pulumi_version, "reinstall the Pulumi CLI"))
        backend = automation.backend_url() or (
            "Pulumi Cloud (PULUMI_ACCESS_TOKEN)" if os.environ.get("PULUMI_ACCESS_TOKEN") else ""
        )
        checks.append(
            passed(MACHINE, "pulumi login", backend)
            if backend
            else failed(
                MACHINE,
                "pulumi login",
                "not logged in",
                "pulumi login (Pulumi Cloud), pulumi login --local or s3://BUCKET",
            )
        )
        checks.append(attempt(self.stack, "project", lambda: self._project_ready(), "see the detail"))
        found = self._aws_checks()
        checks.extend(found)
        if all(c.ok for c in found):  # the account's limits, once there are credentials and a region to ask
            checks.extend(self.account_checks(settings))
        return checks

    def _project_ready(self) -> str:
        automation.check_project(self.project_dir, self.stack)
        secrets = (
            "passphrase set" if automation.needs_passphrase(self.project_dir, self.stack) else "no passphrase needed"
        )
        return f"{self.project_dir / 'Pulumi.yaml'}; stack {self.stack!r}; {secrets}"

    def _aws_checks(self) -> list[Check]:
        if not available("boto3"):
            return [failed("aws", "credentials", "not checked: boto3 is not installed", install_hint(AWS))]
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        region = self._region() or os.environ.get("AWS_DEFAULT_REGION")
        checks = [
            passed("aws", "region", region)
            if region
            else failed("aws", "region", "no region", f"pulumi config set aws:region REGION --stack {self.stack}")
        ]
        try:
            sts = boto3.session.Session().client("sts", region_name=region or "us-east-1")  # credentials read now
            who = sts.get_caller_identity()
        except (BotoCoreError, ClientError) as error:
            fix = "AWS_PROFILE, aws configure sso, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, as for any AWS tool"
            return checks + [failed("aws", "credentials", f"{type(error).__name__}: {error}", fix)]
        return checks + [passed("aws", "credentials", f"{who['Arn']} (account {who['Account']})")]

    def status(self) -> list[HostState]:
        """EC2's own view of each host (running, stopped, ...); without AWS access, what the
        last up recorded, saying why."""
        if not available("boto3"):
            inventory = self.state.load_inventory(declared_features)
            why = f"recorded by up (EC2 not asked: {install_hint(AWS)})"
            return [HostState(h.name, f"{self.stack}/{h.address}", why) for h in (inventory.hosts if inventory else ())]
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            fleet_id = str(self._raw().get("fleetId", ""))
            hosts = stack_hosts(boto3.client("ec2", region_name=self._region()), self.stack, fleet_id)
        except (BotoCoreError, ClientError) as error:
            inventory = self.state.load_inventory(declared_features)
            why = f"recorded by up (EC2 not asked: {type(error).__name__})"
            return [HostState(h.name, f"{self.stack}/{h.address}", why) for h in (inventory.hosts if inventory else ())]
        return [
            HostState(h.host, h.instance_id, h.state, h.state in ASLEEP)
            for h in sorted(hosts.values(), key=lambda h: h.host)
        ]

    def down(self) -> list[str]:
        self.on_output(f"pulumi destroy: stack {self.stack!r}")
        detached = self.destroy(confirm=self.confirm)
        return [*detached, f"stack {self.stack!r} destroyed"]

    def apply(
        self, config: Mapping[str, Any], ssh_key: str = "", confirm: Callable[[ChangePreview], None] | None = None
    ) -> Inventory:
        """``config``: buildfleet keys to set on the stack (as ``pulumi config set`` would).
        ``refresh`` first, so an instance AWS removed (a reclaimed spot host) is made again.
        With ``confirm``, the preview's changes are shown to it first; when it stops the run,
        the stack file is put back as it was, so a declined up changes nothing."""
        stack = automation.open_stack(self.stack, self.project_dir, create=True)
        stack_file = automation.stack_file(self.project_dir, self.stack)
        before = stack_file.read_bytes() if stack_file.exists() else None
        config = {**config, **self.host_key_source(stack, config)}
        automation.set_config(stack, config)
        if confirm is not None:
            try:
                confirm(automation.preview(stack, "pulumi up", self.on_output))
            except BuildfleetError:
                restore(stack_file, before)
                raise
        self.state.ensure()
        self.state.record_target(self.kind)  # before up: down finds a half-made stack
        self.state.record_stack(self.stack)
        self.state.record_project(self.project_dir)
        identity = self.identity()
        automation.set_secrets(stack, {IDENTITY_KEY: identity})
        result = automation.run(lambda: stack.up(on_output=self.on_output, refresh=True), "pulumi up", self.stack)
        self.state.save_published_identity(digest(identity))
        inventory = self.record(result.outputs, ssh_key)
        self.pin_zone(stack, config, result.outputs)
        return inventory

    def identity(self) -> str:
        """The fleet identity as the stack keeps it, the fleet's CA made first if it has none yet:
        from its first up, the stack holds the one CA a teammate's attach takes."""
        FleetCA(self.state.root / "tls").ca()
        return to_stack(self.state)

    def require_identity(self) -> None:
        """No second CA, SSH key or stale copy for a fleet the stack keeps: a stack that keeps a fleet
        identity is acted on from here only with that very identity (the one this machine last took or
        handed over, or the same files), and a stack whose hosts another machine made before stacks
        kept it, only with that machine's state. Otherwise this machine would mint a CA the hosts
        refuse and an SSH key that replaces every host, or roll out bundles that drop a teammate's
        consumers."""
        if not self.creating and not automation.stack_file(self.project_dir, self.stack).exists():
            return  # no project here (a fleet from before buildfleet kept its directory): up checks it
        stack = automation.existing_stack(self.stack, self.project_dir)
        if stack is None:
            return  # a new stack: this up makes its fleet
        outputs = automation.run(lambda: stack.outputs(), "reading the stack's outputs", self.stack)
        kept, here = output_value(outputs, IDENTITY_KEY), f"fleet {self.state.root.name!r}"
        attach = f"buildfleet attach --stack {self.stack} --fleet {self.state.root.name}"
        if not kept:
            if output_value(outputs, "inventory") and not self.state.inventory_file.exists():
                raise ConfigError(
                    f"stack {self.stack!r} has hosts another machine's buildfleet made (before stacks kept the fleet's "
                    f"identity), and {here} has no state for them here: on that machine, buildfleet up once keeps "
                    f"the identity in the stack for {attach} here, or buildfleet state export hands it over"
                )
            return
        ca = FleetCA(self.state.root / "tls")
        if not ca.made():
            raise ConfigError(
                f"stack {self.stack!r} keeps a fleet's identity (its CA, SSH key and settings), which {here} here "
                f"lacks: take it with {attach} first; an up from here would make a second CA and SSH key, lock the "
                "fleet's operators out and replace every host"
            )
        if digest(kept) == self.state.published_identity() or kept == to_stack(self.state):
            return  # the stack has what this machine last took or handed over, or the same files
        if not self.same_fleet(kept):
            raise ConfigError(
                f"stack {self.stack!r} keeps another fleet's CA than {here} has in {self.state.root}: this state "
                "belongs to another fleet; take the stack's under a name of its own (buildfleet attach --stack "
                f"{self.stack} --fleet NEW)"
            )
        raise ConfigError(
            f"stack {self.stack!r} keeps a newer identity of {here} than this machine's (another operator changed "
            f"it since: a consumer, a CA rotation): take it here first with {attach}"
        )

    def same_fleet(self, kept: str) -> bool:
        """Whether a stack's identity and this state share a CA (a rotation keeps the previous one)."""
        ca = FleetCA(self.state.root / "tls")
        if not ca.made():
            return False
        files, held = from_stack(kept), ca.held()
        theirs = [files.get(f"tls/{d}/cert.pem") for d in ("ca", "ca-previous")]
        return any(cert is not None and cert in held for cert in theirs)

    def keep_identity(self) -> None:
        """Hand the stack the fleet identity when a command here changed it (up's first certificates,
        a consumer added or revoked, a CA rotated): an update that changes no resource, run only
        once a preview shows none would change (else the next up carries it)."""
        if not FleetCA(self.state.root / "tls").made():
            return
        identity = to_stack(self.state)
        if digest(identity) == self.state.published_identity():
            return
        if not automation.stack_file(self.project_dir, self.stack).exists():
            self.on_output(
                f"warning: the fleet identity changed here, and {self.project_dir} has no Pulumi.{self.stack}.yaml: "
                "buildfleet up in the project directory (or --project-dir DIR) hands it to the stack"
            )
            return
        stack = automation.open_stack(self.stack, self.project_dir, create=False)
        automation.set_secrets(stack, {IDENTITY_KEY: identity})
        changes = automation.preview(stack, "pulumi up", self.on_output)
        if changes.changes:
            self.on_output(
                f"warning: the fleet identity changed here, and stack {self.stack!r} has other changes pending "
                f"({'; '.join(changes.lines())}): buildfleet up applies them and hands the stack the identity"
            )
            return
        self.on_output(f"the fleet identity changed here: stack {self.stack!r} keeps it (an update of no resource)")
        automation.run(lambda: stack.up(on_output=self.on_output), "pulumi up (the fleet identity)", self.stack)
        self.state.save_published_identity(digest(identity))

    def attach(self) -> list[str]:
        """This machine's state for the fleet, rebuilt from the stack: the fleet identity it keeps
        (CA, keys, settings), then the inventory and host keys from its outputs; the stack file too
        when this directory has none. State already here is taken over only when it is this fleet's
        (a copy the stack has moved past) and holds nothing the stack lacks. What was written."""
        existing = self.state.root.is_dir() and any(self.state.root.iterdir())
        if existing and self.state.recorded_stack() != self.stack:
            require_new(self.state)  # another fleet's state: never overwritten
        stack = automation.open_stack(self.stack, self.project_dir, create=False)
        outputs = automation.run(lambda: stack.outputs(), "reading the stack's outputs", self.stack)
        kept = output_value(outputs, IDENTITY_KEY)
        if not kept:
            raise BuildfleetError(
                f"stack {self.stack!r} keeps no fleet identity: the operator who made it runs buildfleet up once "
                "with this buildfleet (the stack then keeps it), or hands it over with buildfleet state export"
            )
        files = from_stack(kept)
        if existing:
            self.require_taken_over(kept)
        stack_file = automation.stack_file(self.project_dir, self.stack)
        if not stack_file.exists():  # a checkout may bring its own: the team's, left as it is
            automation.refresh_stack_file(stack)
            self.on_output(f"{stack_file}: the stack's config, as its last update ran with it")
        written = replace_identity(self.state, files) if existing else install(self.state, files)
        self.state.save_published_identity(digest(kept))
        self.state.record_project(self.project_dir)
        ssh_key = str(self.ssh_key.expanduser()) if self.ssh_key else ""
        self.pin_console_keys(self.record(outputs, ssh_key))
        return written

    def require_taken_over(self, kept: str) -> None:
        """This machine's copy may give way to the stack's only when it is the same fleet and holds
        no change it never handed over (which the stack's would silently undo)."""
        if not self.same_fleet(kept):
            raise ConfigError(
                f"fleet {self.state.root.name!r} here has another CA than stack {self.stack!r} keeps: this state "
                f"belongs to another fleet; attach under a name of its own (--fleet NEW)"
            )
        if digest(to_stack(self.state)) != self.state.published_identity():
            raise ConfigError(
                f"fleet {self.state.root.name!r} here has changes stack {self.stack!r} never got (its last hand-over "
                "failed, or came from an older buildfleet), and the stack has another operator's since: "
                "buildfleet state export keeps a copy of this machine's; then attach under another name (--fleet NEW) "
                "and redo the change there"
            )

    def host_key_source(self, stack: Any, config: Mapping[str, Any]) -> dict[str, str]:
        """hostKeys for the stack's config: a new stack's hosts make their own keys (console); a
        stack keeps what its hosts were made with, written down once; a change is refused before
        anything is written (new user data would stop and start every host, and no host reads
        it again after its first boot)."""
        outputs = automation.run(lambda: stack.outputs(), "reading the stack's outputs", self.stack)
        made = output_value(outputs, "hostKeySource") or ("stack" if output_value(outputs, "inventory") else "")
        wanted = str(config.get("hostKeys") or self._raw().get("hostKeys") or "")
        if made and wanted and wanted != made:
            raise ConfigError(
                f"{NAMESPACE}:hostKeys is {wanted}, but the hosts of stack {self.stack!r} were made with {made}: "
                "a host reads its user data only in its first boot, and new user data would stop and start "
                f"every host. Keep {made}; to change it, buildfleet down and then up (or up --fleet NEW)"
            )
        if wanted:
            return {}
        return {"hostKeys": made or "console"}

    def pin_zone(self, stack: Any, config: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """The zone the program chose is written into the stack's config, once: later ups keep
        the hosts there, whatever EC2 comes to offer in an earlier zone or an instance type
        change would pick (a zone that no longer offers a type is then an error, not a move)."""
        zone = output_value(outputs, "availabilityZone")
        if not zone or config.get("availabilityZone") or self._raw().get("availabilityZone"):
            return
        automation.set_config(stack, {"availabilityZone": zone})
        file = automation.stack_file(self.project_dir, self.stack).name
        self.on_output(f"{NAMESPACE}:availabilityZone {zone} kept in {file}: the hosts stay in that zone")

    def record(self, outputs: Mapping[str, Any], ssh_key: str) -> Inventory:
        """Inventory and pinned host keys from the stack outputs, saved in the fleet's state."""
        try:
            made = Inventory.from_dict(outputs["inventory"].value, lambda kind: self.features)
            inventory = dataclasses.replace(made, features=self.features)  # the program's hosts are this target's
            keys = {name: " ".join(key.split()[:2]) for name, key in outputs["hostKeys"].value.items() if key}
        except KeyError as missing:
            raise BuildfleetError(
                f"stack {self.stack!r} has no output {missing}: is this buildfleet's Pulumi.yaml?"
            ) from None
        hosts = tuple(dataclasses.replace(h, ssh_key=ssh_key) for h in inventory.hosts)
        on_console: dict[str, dict[str, str]] = {}
        if output_value(outputs, "hostKeySource") == "console":
            on_console = self._console_keys_kept(hosts, output_value(outputs, "instanceIds") or {})
            keys.update({name: entry["key"] for name, entry in on_console.items() if entry["key"]})
        unpinned = [h.name for h in hosts if h.name not in keys and h.name not in on_console]
        if unpinned:
            raise BuildfleetError(f"stack {self.stack!r} exports no host key for {', '.join(unpinned)}")
        self.state.write_known_hosts({(h.address, h.ssh_port): keys[h.name] for h in hosts if h.name in keys})
        inventory = dataclasses.replace(inventory, hosts=hosts)
        self.state.save_inventory(inventory)
        return inventory

    def _console_keys_kept(
        self, hosts: Sequence[InventoryHost], instances: Mapping[str, str]
    ) -> dict[str, dict[str, str]]:
        """Each host's instance and the key already read from that very instance's console ("":
        not yet, or the instance is new, made again), saved for pin_console_keys to read the rest."""
        kept = self.state.console_keys()
        entries = {}
        for host in (h for h in hosts if instances.get(h.name)):  # no id exported: unpinned, an error
            instance, before = instances[host.name], kept.get(host.name, {})
            same = before.get("instance") == instance
            entries[host.name] = {"instance": instance, "key": before.get("key", "") if same else ""}
        self.state.save_console_keys(entries)
        return entries

    def destroy(self, confirm: Callable[[ChangePreview], None] | None = None) -> list[str]:
        """Destroy the recorded stack; it is selected, never created (a mistyped name is an error).
        With ``confirm``, what it would delete is shown to it first. The wake policy is detached
        from whoever outside the stack holds it first (IAM cannot delete it while attached)."""
        stack = automation.open_stack(self.stack, self.project_dir, create=False)
        if confirm is not None:
            confirm(automation.preview(stack, "pulumi destroy", self.on_output, destroy=True))
        outputs = automation.run(lambda: stack.outputs(), "reading the stack's outputs", self.stack)
        detached = self._detach_wake_policy(outputs)
        instances = [h.instance_id for h in self._account("listing the fleet's instances", self._instances)]
        detached += self._account("cancelling the fleet's spot requests", cancel_spot_requests, instances)
        for line in detached:
            self.on_output(line)
        automation.run(lambda: stack.destroy(on_output=self.on_output), "pulumi destroy", self.stack)
        return [*detached, self._nothing_left(instances)]

    def _nothing_left(self, instances: Sequence[str]) -> str:
        """What of the fleet the account still holds after destroy (asked again for a while: AWS
        lists a resource a moment after it went): an error naming each, or a line saying none."""
        fleet_id = self.settings().fleet_id
        deadline = time.monotonic() + LEFTOVER_SECONDS
        while True:
            left = self._account(
                "checking what of the fleet is left",
                lambda ec2: fleet_leftovers(ec2, self._client("elbv2"), self.stack, fleet_id, instances),
            )
            if not left or time.monotonic() > deadline:
                break
            time.sleep(5)
        where = f"region {self._region() or os.environ.get('AWS_DEFAULT_REGION') or '(the default)'}"
        if left:
            raise BuildfleetError(
                f"pulumi destroy finished, but {where} still holds what the fleet made: {', '.join(left)}; "
                "remove them in the AWS console (buildfleet no longer knows them)"
            )
        return f"nothing of the fleet is left in {where}: no instance, spot request, Elastic IP or load balancer"

    def _instances(self, ec2: Any) -> list[Ec2Host]:
        return list(stack_hosts(ec2, self.stack, self.settings().fleet_id).values())

    def _client(self, service: str) -> Any:
        boto3 = require("boto3", AWS, "buildfleet down")
        return boto3.client(service, region_name=self._region())

    def _account(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        """``call`` with an EC2 client first, an SDK error as one line naming ``what``."""
        with aws_errors(what, sdk_errors()):
            return call(self._client("ec2"), *args)

    def _detach_wake_policy(self, outputs: Mapping[str, Any]) -> list[str]:
        arn = output_value(outputs, "wakePolicyArn")
        if not arn:
            return []  # never made (an up that failed early): nothing attached to it
        boto3 = require("boto3", AWS, "buildfleet down")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            iam = boto3.client("iam", region_name=self._region())
            return detach_policy(iam, str(arn), own_roles=f"{NAMESPACE}-{self.stack}-wake")
        except (BotoCoreError, ClientError) as error:
            raise BuildfleetError(
                describe_aws_error(error, f"detaching the wake policy of stack {self.stack!r} before destroy")
                + "; nothing was destroyed"
            ) from None


def sdk_errors() -> tuple[type[Exception], ...]:
    """The AWS SDK's own errors (botocore's), which each call turns into one line."""
    exceptions = require("botocore.exceptions", AWS, "the aws target")
    return (exceptions.BotoCoreError, exceptions.ClientError)


# Keys whose change EC2 cannot make to a running instance: Pulumi would replace every host, or
# (image: the AMI is kept by ignore_changes, the login user is not) buildfleet would be locked out.
REPLACING = {
    "sshPublicKey": "EC2 sets an instance's key pair at launch: Pulumi would replace every host "
    "(new addresses, the build cache lost)",
    "image": "the hosts keep the AMI they were made with, but buildfleet would log in as the new image's "
    "user and be locked out",
}


def _shown(key: str, value: Any) -> str:
    """A public key by its type and the end of its data (their beginnings are all alike)."""
    parts = str(value).split()
    return f"{parts[0]} …{parts[1][-10:]}" if key == "sshPublicKey" and len(parts) > 1 else str(value)


def refuse_host_replacement(stack: str, previous: Mapping[str, Any], settings: Settings, own_key: str) -> None:
    """An up that would replace (or lock buildfleet out of) every running host is refused before
    anything is written, with the way to make that change on purpose. A fleet made without a
    key of the user's has the fleet's own (``own_key``)."""
    for key, why in REPLACING.items():
        before = previous.get(key) or (own_key if key == "sshPublicKey" else "")
        now = settings.values.get(key) or (own_key if key == "sshPublicKey" else "")
        if before and now != before:
            old, new = _shown(key, before), _shown(key, now)
            raise ConfigError(
                f"{NAMESPACE}:{key} is {new}, but the hosts of stack {stack!r} were made with {old}: {why}. "
                f"Keep {old}; to change it on purpose, buildfleet down and then up with the new value "
                "(or up --fleet NEW to make a second fleet beside this one)"
            )


def output_value(outputs: Mapping[str, Any], name: str) -> Any:
    """A stack output's value (the Automation API wraps each in an OutputValue), None when absent."""
    found = outputs.get(name)
    return None if found is None else found.value


def restore(path: Path, content: bytes | None) -> None:
    """Put a stack file back as it was before buildfleet set config in it (None: there was none)."""
    if content is not None:
        path.write_bytes(content)
    elif path.is_file():
        unlink_inside(path, path.parent)


def _pulumi_version() -> str:
    import subprocess

    result = subprocess.run(["pulumi", "version"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise BuildfleetError(f"pulumi version failed (exit {result.returncode}): {result.stderr.strip()[-200:]}")
    return f"Pulumi CLI {result.stdout.strip()}"
