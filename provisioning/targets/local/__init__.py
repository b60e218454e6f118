"""The local target: build hosts as containers on this machine's Docker engine."""
