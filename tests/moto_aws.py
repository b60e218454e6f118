"""AWS out of reach, so its APIs are moto's server: a real HTTP endpoint on 127.0.0.1 that
boto3 talks to as it would to AWS (the same requests, pagination and errors)."""

from __future__ import annotations

import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from moto.server import ThreadedMotoServer

from provisioning.remote.machine import free_port


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free port of 127.0.0.1, for as long as the block runs: its endpoint.
    What a test made there is reset after it (moto keeps its accounts in this process)."""
    port = free_port("127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield endpoint
    finally:
        reset(endpoint)
        server.stop()


def reset(endpoint: str) -> None:
    """moto's accounts emptied: the next test finds nothing another one made."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()


def sdk_env(endpoint: str, region: str = "us-east-1") -> dict[str, str]:
    """The environment that makes the AWS SDK (boto3, in any process) talk to ``endpoint`` with
    moto's test credentials, and never ask 169.254.169.254 for others."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def point_sdk_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, region: str = "us-east-1") -> None:
    """Every boto3 client this test makes (and every program it starts) talks to ``endpoint``."""
    for name, value in sdk_env(endpoint, region).items():
        monkeypatch.setenv(name, value)


def consoles_show(monkeypatch: pytest.MonkeyPatch, console: Callable[[str, int], str]) -> Counter:
    """moto's GetConsoleOutput (one fixed Xen boot log for every instance) answers what
    ``console(instance_id, n)`` gives for that instance's n-th read (0, 1, ...): what EC2
    returns of the serial console an instance has printed to by then. Counts the reads."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    reads: Counter = Counter()

    def get_console_output(response: General) -> ActionResult:
        instance = response.ec2_backend.get_instance(response._get_param("InstanceId"))  # unknown: EC2's error
        text = console(instance.id, reads[instance.id])
        reads[instance.id] += 1
        output = Base64EncodedString.from_raw_string(text)
        return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(), "Output": output})

    monkeypatch.setattr(General, "get_console_output", get_console_output)
    return reads
