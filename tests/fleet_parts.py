"""The pieces unit tests build fleets and bench results from, written once."""

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from provisioning.bench.report import Measured
from provisioning.bench.runs import Run
from provisioning.inventory import HostPlatform, InventoryHost


def inventory_host(
    name: str, role: str, *platforms: str, arch: str = "amd64", address: str = "127.0.0.1", port: int = 1234,
    user: str = "root",
) -> InventoryHost:  # fmt: skip
    """A host of a test inventory; a platform written with a trailing "~" runs there under QEMU."""
    placed = tuple(HostPlatform(p.removesuffix("~"), not p.endswith("~")) for p in platforms)
    return InventoryHost(name, role, arch, address, "10.0.0.5", user, buildkitd_port=port, platforms=placed)


def measured(
    run: Run, seconds: tuple[float, ...], build: tuple[float, ...] | None = None, output: str = ""
) -> Measured:
    """A measured run: the compiler, output and uname a workload reports, with its timings."""
    return Measured(run, seconds, build if build is not None else seconds, "gcc 12.2.0", output, "x86_64")


def trusted_by(bundle: bytes, cert_pem: bytes) -> bool:
    """Whether a peer trusting ``bundle`` (PEM CAs) accepts ``cert_pem``: one of them signed it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    for authority in x509.load_pem_x509_certificates(bundle):
        try:
            cert.verify_directly_issued_by(authority)
            return True
        except (InvalidSignature, ValueError, TypeError):
            continue
    return False
