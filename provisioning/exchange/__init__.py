"""The OIDC token exchange: the service a fleet host runs (service.py, copied there as it is)."""
