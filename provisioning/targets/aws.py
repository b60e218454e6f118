"""The AWS target: this project's Pulumi program, run through Pulumi's Automation API.

The program (``__main__.py``) stays the one source of the fleet's resources; this
module only drives it -- select or create the stack, hand over config, ``up`` or
``destroy`` -- and turns the stack outputs into the inventory and pinned host keys that
later stages read. It needs the Pulumi CLI on PATH and AWS credentials, as
``pulumi up`` does; the stack's own settings stay in ``Pulumi.<stack>.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from provisioning.errors import BuildfleetError, ConfigError
from provisioning.inventory import Inventory
from provisioning.plan import Plan, plan_fleet
from provisioning.remote.ssh import connect
from provisioning.remote.wait import wait_for_hosts
from provisioning.settings import NAMESPACE, Settings, pulumi_config_value, require_cloud_access
from provisioning.state import FleetState
from provisioning.targets.base import ConfigSources, HostState, TargetOptions, settings_with_defaults

TARGET = "aws"
STACK_FILE = "aws-stack"  # in the fleet's state: which stack ``down`` destroys


def select_stack(stack: str, project_dir: Path) -> Any:
    """The real Automation API stack for this project directory's Pulumi.yaml."""
    from pulumi import automation

    try:
        return automation.create_or_select_stack(stack_name=stack, work_dir=str(project_dir))
    except FileNotFoundError:
        raise BuildfleetError(
            "the Pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/install/), "
            "log in (pulumi login) and set AWS credentials to use --target aws"
        ) from None


def _config_value(value: Any) -> Any:
    from pulumi.automation import ConfigValue

    return ConfigValue(value=pulumi_config_value(value))


@dataclass
class AwsTarget:
    stack: str
    project_dir: Path
    state: FleetState
    select: Callable[[str, Path], Any] = select_stack  # the Automation API boundary (tests pass a fake)
    config_value: Callable[[Any], Any] = _config_value
    sources: ConfigSources | None = None
    ssh_key: Path | None = None  # private half of a user-set buildfleet:sshPublicKey
    wait_timeout: float = 900
    on_output: Callable[[str], None] = lambda line: None

    kind: ClassVar[str] = TARGET
    defaults: ClassVar[Mapping[str, Any]] = {}  # Pulumi.yaml's own defaults apply

    @classmethod
    def from_options(cls, options: TargetOptions) -> AwsTarget:
        stack = options.sources.stack or cls.recorded_stack(options.state) or options.fleet
        return cls(
            stack,
            options.sources.project_dir,
            options.state,
            select=select_stack,
            sources=options.sources,
            ssh_key=options.ssh_key,
            wait_timeout=options.wait_timeout,
            on_output=options.on_output,
        )

    def _raw(self) -> dict[str, Any]:
        """The user's keys: the stack file (when it exists yet), buildfleet.yaml, --set."""
        if self.sources is None:
            return {}
        stack_file = self.project_dir / f"Pulumi.{self.stack}.yaml"
        return self.sources.raw(stack=self.stack if stack_file.exists() else None)

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
        """Pulumi up, then wait until every host answers over SSH with cloud-init done."""
        raw = self._raw()
        to_set = self.sources.raw(stack=None) if self.sources else {}  # what the stack file may lack
        ssh_key = ""
        user_key = raw.get("sshPublicKey", "")
        if user_key and user_key != self._own_key():  # the fleet's own key, written there by an earlier up
            if self.ssh_key is None or not self.ssh_key.expanduser().is_file():
                raise ConfigError(
                    f"{NAMESPACE}:sshPublicKey is set, so buildfleet needs its private half: "
                    "--ssh-key PATH (e.g. ~/.ssh/id_ed25519); or unset it to use the fleet's own key"
                )
            ssh_key = str(self.ssh_key.expanduser())
        else:
            to_set["sshPublicKey"] = self.state.ensure_ssh_key()
            settings = dataclasses.replace(settings, ssh_public_key=to_set["sshPublicKey"])
        require_cloud_access(settings)  # every config error before Pulumi starts
        self.on_output(f"pulumi up: stack {self.stack!r} in {self.project_dir}")
        inventory = self.apply(to_set, ssh_key)
        waited = wait_for_hosts(inventory.hosts, lambda host: connect(host, self.state), self.wait_timeout)
        self.on_output("hosts answer: " + ", ".join(f"{name} after {s:.0f} s" for name, s in waited.items()))
        return inventory

    def status(self) -> list[HostState]:
        # EC2's own view needs the AWS API; until then, what the last up recorded.
        inventory = self.state.load_inventory()
        return [
            HostState(h.name, f"{self.stack}/{h.address}", "recorded by up")
            for h in (inventory.hosts if inventory else ())
        ]

    def down(self) -> list[str]:
        self.on_output(f"pulumi destroy: stack {self.stack!r}")
        self.destroy()
        return [f"stack {self.stack!r} destroyed"]

    def apply(self, config: Mapping[str, Any], ssh_key: str = "") -> Inventory:
        """``config``: buildfleet keys to set on the stack (as ``pulumi config set`` would)."""
        stack = self.select(self.stack, self.project_dir)
        for key, value in config.items():
            stack.set_config(f"{NAMESPACE}:{key}", self.config_value(value))
        self.state.ensure()
        (self.state.root / STACK_FILE).write_text(self.stack + "\n")
        result = _engine(lambda: stack.up(on_output=self.on_output), "pulumi up", self.stack)
        return self.record(result.outputs, ssh_key)

    def record(self, outputs: Mapping[str, Any], ssh_key: str) -> Inventory:
        """Inventory and pinned host keys from the stack outputs, saved in the fleet's state."""
        try:
            inventory = Inventory.from_dict(outputs["inventory"].value)
            keys = outputs["hostKeys"].value
        except KeyError as missing:
            raise BuildfleetError(
                f"stack {self.stack!r} has no output {missing}: is this buildfleet's Pulumi.yaml?"
            ) from None
        hosts = tuple(dataclasses.replace(h, ssh_key=ssh_key) for h in inventory.hosts)
        unpinned = [h.name for h in hosts if not keys.get(h.name)]
        if unpinned:
            raise BuildfleetError(f"stack {self.stack!r} exports no host key for {', '.join(unpinned)}")
        self.state.write_known_hosts({(h.address, h.ssh_port): " ".join(keys[h.name].split()[:2]) for h in hosts})
        inventory = dataclasses.replace(inventory, hosts=hosts)
        self.state.save_inventory(inventory)
        return inventory

    def destroy(self) -> None:
        stack = self.select(self.stack, self.project_dir)
        _engine(lambda: stack.destroy(on_output=self.on_output), "pulumi destroy", self.stack)

    @classmethod
    def recorded_stack(cls, state: FleetState) -> str | None:
        path = state.root / STACK_FILE
        return path.read_text().strip() if path.exists() else None


def _engine(operation: Callable[[], Any], what: str, stack: str) -> Any:
    """Run an engine operation; its failure becomes one line naming the stack (Pulumi's own
    output, already streamed, holds the details)."""
    try:
        return operation()
    except BuildfleetError:
        raise
    except Exception as error:  # the Automation API raises CommandError and friends
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise BuildfleetError(
            f"{what} on stack {stack!r} failed: {lines[-1] if lines else type(error).__name__}"
        ) from None
