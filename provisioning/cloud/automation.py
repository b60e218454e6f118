"""The AWS target: this project's Pulumi program, run through Pulumi's Automation API.

The program (``__main__.py``) stays the one source of the fleet's resources; this
module only drives it -- select or create the stack, hand over config, ``up`` or
``destroy`` -- and turns the stack outputs into the inventory and pinned host keys that
later stages read. It needs the Pulumi CLI on PATH and AWS credentials, as
``pulumi up`` does; the stack's own settings stay in ``Pulumi.<stack>.yaml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from provisioning.errors import BuildfleetError
from provisioning.inventory import Inventory
from provisioning.settings import NAMESPACE, pulumi_config_value
from provisioning.state import FleetState

STACK_FILE = "aws-stack"  # in the fleet's state: which stack ``down`` destroys


def select_stack(stack: str, project_dir: Path) -> Any:
    """The real Automation API stack for this project directory's Pulumi.yaml."""
    from pulumi import automation
    try:
        return automation.create_or_select_stack(stack_name=stack, work_dir=str(project_dir))
    except FileNotFoundError:
        raise BuildfleetError("the Pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/install/), "
                              "log in (pulumi login) and set AWS credentials to use --target aws") from None


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

    def up(self, config: Mapping[str, Any], on_output: Callable[[str], None], ssh_key: str = "") -> Inventory:
        """``config``: buildfleet keys to set on the stack (as ``pulumi config set`` would)."""
        stack = self.select(self.stack, self.project_dir)
        for key, value in config.items():
            stack.set_config(f"{NAMESPACE}:{key}", self.config_value(value))
        self.state.ensure()
        (self.state.root / STACK_FILE).write_text(self.stack + "\n")
        result = _engine(lambda: stack.up(on_output=on_output), "pulumi up", self.stack)
        return self.record(result.outputs, ssh_key)

    def record(self, outputs: Mapping[str, Any], ssh_key: str) -> Inventory:
        """Inventory and pinned host keys from the stack outputs, saved in the fleet's state."""
        try:
            inventory = Inventory.from_dict(outputs["inventory"].value)
            keys = outputs["hostKeys"].value
        except KeyError as missing:
            raise BuildfleetError(f"stack {self.stack!r} has no output {missing}: is this buildfleet's "
                                  "Pulumi.yaml?") from None
        hosts = tuple(dataclasses.replace(h, ssh_key=ssh_key) for h in inventory.hosts)
        unpinned = [h.name for h in hosts if not keys.get(h.name)]
        if unpinned:
            raise BuildfleetError(f"stack {self.stack!r} exports no host key for {', '.join(unpinned)}")
        self.state.write_known_hosts({(h.address, h.ssh_port): " ".join(keys[h.name].split()[:2]) for h in hosts})
        inventory = dataclasses.replace(inventory, hosts=hosts)
        self.state.save_inventory(inventory)
        return inventory

    def down(self, on_output: Callable[[str], None]) -> None:
        stack = self.select(self.stack, self.project_dir)
        _engine(lambda: stack.destroy(on_output=on_output), "pulumi destroy", self.stack)

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
        raise BuildfleetError(f"{what} on stack {stack!r} failed: {lines[-1] if lines else type(error).__name__}") \
            from None
