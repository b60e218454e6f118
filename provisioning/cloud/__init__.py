"""The AWS target: a Pulumi program made of small components (see ``program.run``)."""
