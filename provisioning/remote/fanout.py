"""One piece of work on every host at once, each host's result or error kept (Fabric's
GroupResult shape): one host failing never hides, aborts or delays another's outcome."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

from provisioning.errors import BuildfleetError

T = TypeVar("T")


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


class GroupResult(dict[str, "T | Exception"], Generic[T]):
    """host name -> what the work returned, or the exception it raised."""

    @property
    def succeeded(self) -> dict[str, T]:
        return {name: value for name, value in self.items() if not isinstance(value, Exception)}

    @property
    def failed(self) -> dict[str, Exception]:
        return {name: value for name, value in self.items() if isinstance(value, Exception)}

    def raise_failures(self, what: str) -> dict[str, T]:
        """The results if every host succeeded; else one error naming each failed host (a lone
        failure of ours is raised as it is: its message already names the host)."""
        failed = self.failed
        if not failed:
            return self.succeeded
        lone = next(iter(failed.values()))
        if len(failed) == 1 and isinstance(lone, BuildfleetError):
            raise lone
        lines = "; ".join(f"{name}: {describe(error)}" for name, error in failed.items())
        raise GroupError(f"{what} failed on {len(failed)} of {len(self)} host(s): {lines}", failed)


class GroupError(BuildfleetError):
    def __init__(self, message: str, failures: dict[str, Exception]):
        super().__init__(message)
        self.failures = failures


def describe(error: Exception) -> str:
    """Our own errors are written for the user; anything else also says what kind it is."""
    return str(error) if isinstance(error, BuildfleetError) else f"{type(error).__name__}: {error}"


def fan_out(hosts: Sequence[N], work: Callable[[N], T]) -> GroupResult[T]:
    """``work`` on every host (or anything named, e.g. a pool) in parallel, results in order."""

    def one(host: N) -> T | Exception:
        try:
            return work(host)
        except Exception as error:  # any failure is that host's outcome, not everyone's
            return error

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        outcomes = list(pool.map(one, hosts))
    result: GroupResult[T] = GroupResult()
    for host, outcome in zip(hosts, outcomes, strict=True):
        result[host.name] = outcome
    return result
