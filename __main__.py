"""Pulumi entry point for ``pulumi up`` in this checkout; ``buildfleet up --target aws`` runs the
same program from the installed package (provisioning.cloud.program)."""

from provisioning.cloud.program import program

program()
