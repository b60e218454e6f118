"""The per-host fan-out: every host's outcome kept, one failure never hides another's."""

import threading

import pytest

from provisioning.errors import BuildfleetError
from provisioning.inventory import InventoryHost
from provisioning.remote.fanout import GroupError, fan_out

HOSTS = [InventoryHost(name, "amd64", "amd64", "127.0.0.1", "", "root") for name in ("a", "b", "c")]


def test_every_host_runs_even_when_another_fails_and_results_keep_host_order():
    ran = []
    lock = threading.Lock()

    def work(host):
        with lock:
            ran.append(host.name)
        if host.name == "b":
            raise BuildfleetError("b: no route")
        return host.name.upper()

    result = fan_out(HOSTS, work)
    assert sorted(ran) == ["a", "b", "c"] and list(result) == ["a", "b", "c"]
    assert result.succeeded == {"a": "A", "c": "C"} and list(result.failed) == ["b"]


def test_a_lone_failure_of_ours_is_raised_as_it_is():
    def work(host):
        if host.name == "c":
            raise BuildfleetError("c refused")
        return 1

    with pytest.raises(BuildfleetError, match="^c refused$"):
        fan_out(HOSTS, work).raise_failures("checking")


def test_several_failures_are_one_error_naming_each_host_and_what_kind_a_foreign_one_is():
    def work(host):
        if host.name == "a":
            raise BuildfleetError("a: host key differs")
        if host.name == "b":
            raise KeyError("arch")
        return 1

    with pytest.raises(GroupError) as error:
        fan_out(HOSTS, work).raise_failures("detecting the CPU")
    assert str(error.value) == (
        "detecting the CPU failed on 2 of 3 host(s): a: a: host key differs; b: KeyError: 'arch'"
    )
    assert set(error.value.failures) == {"a", "b"}
