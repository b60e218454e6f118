"""Mechanisms every stage may use to reach machines: SSH transport, the docker CLI, facts
read over a transport, the per-host fan-out, waiting for new hosts. They know hosts only
as inventory entries and belong to no target."""
