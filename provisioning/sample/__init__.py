"""The sample multi-platform build: its Dockerfile, context and the evidence it records."""
