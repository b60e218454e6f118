"""A stand-in for a Pulumi Automation API stack: the one boundary faked, since neither the
Pulumi engine nor AWS is reachable here. It records what buildfleet asks of it and hands
back the outputs a test chose."""

from dataclasses import dataclass, field
from types import SimpleNamespace


@dataclass
class FakeStack:
    outputs: dict
    config: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def set_config(self, key, value):
        self.config[key] = value.value

    def up(self, on_output):
        self.calls.append("up")
        on_output("Updating (dev)")
        return SimpleNamespace(outputs=self.outputs)

    def destroy(self, on_output):
        self.calls.append("destroy")
        on_output("Destroying (dev)")
