"""Pools on real hosts: two amd64 hosts behind Debian's HAProxy share concurrent builds, and
keep building when one of them dies."""

import dataclasses
import datetime
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from oidc_provider import Provider

from provisioning.builder.builder import Buildx
from provisioning.builder.sample import SampleSources, build_args, cache_args, ran_on
from provisioning.certs import TLSFiles
from provisioning.consumers import Consumers
from provisioning.platforms import parse_platforms
from provisioning.state import FleetState
from provisioning.targets.local.balancer import LocalBalancer

from .conftest import CACHE, buildctl, buildfleet, cli_env, leftovers, mtls_flags

pytestmark = pytest.mark.integration

# Each build sleeps in a step, so six of them started a second apart all overlap; BUILD_ID
# keeps BuildKit from running the identical steps as one; the step records the addresses of
# the host that ran it. (Builds one machine starts within the same half second share a
# member: see provisioning/targets/local/balancer.py.)
DOCKERFILE = """\
FROM scratch AS step
COPY --from=busybox busybox-amd64 /bin/busybox
ARG BUILD_ID
RUN --network=host ["/bin/busybox", "sh", "-c", "/bin/busybox sleep 8 && /bin/busybox ip -4 addr > /addresses"]
FROM scratch
COPY --from=step /addresses /addresses
"""


class PoolFleet:
    def __init__(self, name: str, root: Path):
        self.name, self.root, self.env = name, root, cli_env(root)
        self.context = root / "context"
        self.context.mkdir()
        (self.context / "Dockerfile").write_text(DOCKERFILE)

    @property
    def state(self) -> FleetState:
        return FleetState(self.root / self.name)

    @property
    def balancer(self) -> LocalBalancer:
        return LocalBalancer(self.state.root / "balancer")

    def up(self) -> subprocess.CompletedProcess:
        return buildfleet("up", "--fleet", self.name, "--project-dir", str(self.root), env=self.env)

    def build(self, index: int, env: dict[str, str] | None = None) -> tuple[int, str]:
        """One build through the fleet's builder, started ``index`` seconds from now: (exit code,
        the host its step ran on or the error). ``env``: a CI job's, with its own docker config."""
        time.sleep(index)
        busybox = next((CACHE / "busybox").glob("*/busybox-amd64")).parent
        dest = self.root / "out" / f"{uuid.uuid4().hex[:8]}"
        result = subprocess.run(
            [
                *("docker", "buildx", "build", "--builder", f"buildfleet-{self.name}", "--platform", "linux/amd64"),
                *("--allow", "network.host", "--build-arg", f"BUILD_ID={uuid.uuid4().hex}-{index}"),
                *("--build-context", f"busybox={busybox}", "--output", f"type=local,dest={dest}", str(self.context)),
            ],
            capture_output=True,
            text=True,
            env=env or self.env,
            timeout=300,
        )
        if result.returncode != 0:
            return result.returncode, result.stderr[-300:]
        hosts = ran_on(self.state.load_inventory(), (dest / "addresses").read_text())
        return 0, ",".join(hosts)

    def builds(self, count: int) -> list[tuple[int, str]]:
        with ThreadPoolExecutor(count) as threads:
            return list(threads.map(self.build, range(count)))

    def member_status(self) -> dict[str, str]:
        return {name.split("/")[1]: row["status"] for name, row in self.balancer.members().items()}

    def wait_status(self, host: str, status: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while self.member_status()[host] != status:
            assert time.monotonic() < deadline, f"{host} never became {status}: {self.member_status()}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def pool(tmp_path_factory, machine_ready):
    fleet = PoolFleet(f"pool{uuid.uuid4().hex[:6]}", tmp_path_factory.mktemp("pool"))
    (fleet.root / "buildfleet.yaml").write_text(
        "amd64Count: 2\nemulationCount: 0\nplatforms: [linux/amd64, linux/386]\n"
    )
    try:
        up = fleet.up()
        assert up.returncode == 0, up.stdout + up.stderr
        fleet.up_output = up.stdout
        yield fleet
    finally:
        pid = fleet.balancer.process.pid()
        down = buildfleet("down", "--fleet", fleet.name, env=fleet.env)
        assert down.returncode == 0 and "balancer process" in down.stdout, down.stdout + down.stderr
        assert pid is not None and not Path(f"/proc/{pid}").exists()  # HAProxy went with the fleet
        assert leftovers(fleet.name) == []


def test_a_pool_is_one_builder_node_at_the_balancer_with_both_members_healthy_over_mtls(pool):
    assert f"create node buildfleet-{pool.name}-amd64-pool" in pool.up_output
    inventory = pool.state.load_inventory()
    (entry,) = inventory.pools
    assert [h.name for h in inventory.members("amd64-pool")] == ["amd64-0", "amd64-1"]
    for member in ("amd64-0", "amd64-1"):  # checked every second while down, up after two passes
        pool.wait_status(member, "UP", seconds=15)
    checks = {row["check_status"] for row in pool.balancer.members().values()}
    assert checks == {"L6OK"}  # a TLS handshake with the fleet's client certificate, not a bare TCP connect
    sample = buildfleet("sample", "--fleet", pool.name, "--json", env=pool.env)
    assert sample.returncode == 0, sample.stdout + sample.stderr
    built = json.loads(sample.stdout)["platforms"]
    assert {(p["platform"], p["host"], p["ok"]) for p in built} == {
        ("linux/amd64", "amd64-pool", True),
        ("linux/386", "amd64-pool", True),
    }
    assert {p["ranOn"] for p in built} <= {"amd64-0", "amd64-1"}
    doctor = buildfleet("doctor", "--fleet", pool.name, "--json", env=pool.env)
    checks = {(c["node"], c["check"]): c["ok"] for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 0 and checks[("amd64-pool", "builder node")], doctor.stdout
    assert checks[("amd64-0", "amd64-pool member")] and checks[("amd64-1", "amd64-pool member")]
    assert ("amd64-0", "builder node") not in checks  # members are not nodes of their own


def test_six_concurrent_amd64_builds_land_on_both_hosts(pool):
    results = pool.builds(6)
    assert [code for code, _ in results] == [0] * 6, results
    spread = {host: [h for _, h in results].count(host) for host in ("amd64-0", "amd64-1")}
    assert spread["amd64-0"] >= 1 and spread["amd64-1"] >= 1 and sum(spread.values()) == 6, results
    print(f"6 concurrent builds per host: {spread}")


def test_bench_concurrency_reports_builds_per_host_and_throughput_against_one_host(pool):
    bench = buildfleet("bench", "--fleet", pool.name, "--concurrency", "4", "--json", env=pool.env)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    report = json.loads(bench.stdout)
    through, alone = report["waves"]
    assert through["through"] == "amd64-pool" and sum(through["perHost"].values()) == 4
    assert alone["perHost"] == {"amd64-0": 4}
    assert report["throughputVsOneHost"] > 0 and "share those CPUs" in report["note"]
    print(f"bench --concurrency 4: {report}")


def test_a_member_killed_mid_way_leaves_the_pool_and_the_remaining_builds_pass_on_the_other(pool):
    with ThreadPoolExecutor(1) as background:
        first = background.submit(pool.builds, 4)
        time.sleep(5)  # the four builds are in their sleep step, spread over both hosts
        subprocess.run(["docker", "kill", f"buildfleet-{pool.name}-amd64-1"], check=True, capture_output=True)
        in_flight = first.result()
    pool.wait_status("amd64-1", "DOWN")
    later = pool.builds(4)
    assert later == [(0, "amd64-0")] * 4, later  # every build after the kill passes, on the live host
    print(f"in flight when amd64-1 was killed: {in_flight}")
    # up starts the killed host again; the balancer takes it back once buildkitd answers
    up = pool.up()
    assert up.returncode == 0, up.stdout + up.stderr
    pool.wait_status("amd64-1", "UP")
    again = pool.builds(6)
    assert {code for code, _ in again} == {0} and {h for _, h in again} == {"amd64-0", "amd64-1"}, again


def test_after_rotate_certs_the_balancer_checks_members_with_the_new_certificates(pool):
    rotated = buildfleet("rotate-certs", "--fleet", pool.name, env=pool.env)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    time.sleep(5)  # longer than two failed checks (2 s apart) take to mark a member down
    for member in ("amd64-0", "amd64-1"):
        pool.wait_status(member, "UP", seconds=15)
    assert {row["check_status"] for row in pool.balancer.members().values()} == {"L6OK"}
    assert {code for code, _ in pool.builds(2)} == {0}


SOAK_SECONDS = 180  # the stream runs at least this long: the changes roll through, and builds go on after them


def test_builds_streaming_through_the_pool_all_pass_while_a_config_change_and_rotate_certs_roll_through(pool):
    """The soak: a build starts every 3 s (each holds its member 8 s) while up rolls out a new
    buildkitd.toml and rotate-certs runs every phase; each member is drained and restarted
    several times meanwhile, and no build fails (builds started meanwhile among them)."""
    stop = threading.Event()
    results: list[tuple[int, str, float]] = []

    def stream() -> None:
        with ThreadPoolExecutor(8) as threads:
            running = []
            while not stop.is_set():
                running.append(threads.submit(timed, pool.build))
                stop.wait(3)
            results.extend(f.result() for f in running)

    config = pool.root / "buildfleet.yaml"
    before = config.read_text()
    began = time.monotonic()
    with ThreadPoolExecutor(1) as background:
        streaming = background.submit(stream)
        try:
            time.sleep(5)
            config.write_text(before + "buildkitMaxParallelism: 3\n")
            changed = pool.up()
            rotated = buildfleet("rotate-certs", "--fleet", pool.name, env=pool.env, timeout=900)
            time.sleep(max(5.0, began + SOAK_SECONDS - time.monotonic()))  # builds go on after the changes too
        finally:
            stop.set()
            streaming.result()
            config.write_text(before)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert changed.stdout.count("drained") >= 2, changed.stdout  # both members, one after the other
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    failed = [r for r in results if r[0] != 0]
    walls = sorted(wall for _, _, wall in results)
    median = walls[len(walls) // 2]
    took = time.monotonic() - began
    print(
        f"soak: {took:.0f} s, {len(results)} builds, {len(failed)} failed, "
        f"slowest {walls[-1]:.1f} s, median {median:.1f} s; each: {[round(w, 1) for w in walls]}"
    )
    assert len(results) >= 10 and failed == [], failed
    assert {host for _, host, _ in results} == {"amd64-0", "amd64-1"}
    assert pool.up().returncode == 0  # back to the fixture's configuration


def timed(build) -> tuple[int, str, float]:
    start = time.monotonic()
    code, host = build(0)
    return code, host, time.monotonic() - start


def consumer_flags(files) -> list[str]:
    return [
        *("--tlscacert", str(files.ca), "--tlscert", str(files.cert), "--tlskey", str(files.key)),
        *("--tlsservername", "127.0.0.1"),
    ]


def copied(files: TLSFiles, directory: Path) -> TLSFiles:
    directory.mkdir()
    for path in (files.ca, files.cert, files.key):
        shutil.copy(path, directory / path.name)
    return TLSFiles(directory / files.ca.name, directory / files.cert.name, directory / files.key.name)


def reaches(pool, files) -> dict[str, bool]:
    """Whether each member, and the pool through its balancer, lets ``files`` in (an mTLS handshake
    and a buildkitd answer: buildctl debug workers)."""
    inventory = pool.state.load_inventory()
    (entry,) = inventory.pools
    members = {m.name: m for m in inventory.members(entry.name)}
    through = dataclasses.replace(members["amd64-0"], buildkitd_port=entry.port)  # the balancer's port
    return {
        name: buildctl(host, *consumer_flags(files)).returncode == 0
        for name, host in {**members, entry.name: through}.items()
    }


def test_a_revoked_client_is_refused_by_every_member_and_through_the_pool_and_the_others_keep_building(pool):
    consumers = Consumers(pool.state.root / "tls")
    for name in ("ci-a", "ci-b"):
        added = buildfleet("client", "add", name, "--fleet", pool.name, env=pool.env)
        assert added.returncode == 0, added.stdout + added.stderr
    everywhere = {"amd64-0": True, "amd64-1": True, "amd64-pool": True}
    a, b = copied(consumers.files("ci-a"), pool.root / "ci-a"), consumers.files("ci-b")  # as a CI job holds them
    assert reaches(pool, a) == everywhere and reaches(pool, b) == everywhere
    revoked = buildfleet("client", "revoke", "ci-a", "--fleet", pool.name, env=pool.env)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert reaches(pool, a) == dict.fromkeys(everywhere, False)  # the job's copies are refused everywhere
    # what the revoked job sees: its CA is not among those the host asks for, so its client sends no certificate
    seen = buildctl(pool.state.load_inventory().host("amd64-0"), *consumer_flags(a)).stderr
    assert "remote error: tls: certificate required" in seen, seen
    assert reaches(pool, b) == everywhere
    assert {code for code, _ in pool.builds(2)} == {0}  # the operator's builder too
    listed = buildfleet("client", "list", "--json", "--fleet", pool.name, env=pool.env)
    states = {c["name"]: c["state"] for c in json.loads(listed.stdout)["clients"]}
    assert states["ci-a"] == "revoked" and states["ci-b"].startswith("valid, ")


def test_an_expired_client_is_refused_and_a_renewed_one_gets_in_without_a_restart(pool):
    consumers = Consumers(pool.state.root / "tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    stale = consumers.add("stale", days=1, now=now - datetime.timedelta(days=3))
    configured = buildfleet("configure", "--fleet", pool.name, env=pool.env)  # its CA into the hosts' bundle
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert reaches(pool, stale) == {"amd64-0": False, "amd64-1": False, "amd64-pool": False}
    renewed = buildfleet("client", "renew", "stale", "--fleet", pool.name, env=pool.env)
    assert renewed.returncode == 0 and "nothing restarts" in renewed.stdout, renewed.stdout + renewed.stderr
    assert reaches(pool, consumers.files("stale")) == {"amd64-0": True, "amd64-1": True, "amd64-pool": True}
    again = buildfleet("configure", "--fleet", pool.name, env=pool.env)
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout  # the renewal changed no host


def test_a_member_with_an_empty_cache_reuses_the_pools_registry_cache(pool):
    """The sample with --registry-cache exports each node's layers to the fleet's registry; after
    both members' own caches are pruned, a build on either imports the userland from there."""
    sample = buildfleet("sample", "--fleet", pool.name, "--registry-cache", "--json", env=pool.env)
    assert sample.returncode == 0, sample.stdout + sample.stderr
    assert all(p["ok"] for p in json.loads(sample.stdout)["platforms"])
    inventory = pool.state.load_inventory()
    tls = pool.state.root / "tls"
    for member in inventory.members("amd64-pool"):
        pruned = buildctl(member, *mtls_flags(tls), command=("prune", "--all"))
        assert pruned.returncode == 0, pruned.stderr
    amd64 = parse_platforms(["linux/amd64"])
    sources = SampleSources.from_artifacts(CACHE, amd64)
    cache = cache_args(inventory.registry, "amd64-pool")
    built = Buildx(env={"DOCKER_CONFIG": pool.env["DOCKER_CONFIG"]}).run(
        build_args(f"buildfleet-{pool.name}", amd64, "type=cacheonly", sources, cache=cache)
    )
    log = built.stderr
    assert "importing cache manifest from" in log, log[-2000:]
    add_step = re.search(r"^#(\d+) \[userland \d/3\] ADD userland-amd64\.tar", log, re.MULTILINE)
    assert add_step and re.search(rf"^#{add_step.group(1)} CACHED", log, re.MULTILINE), log[-2000:]


ISSUER = "http://127.0.0.1:9999"  # the stand-in provider's JWKS, served on the exchange host's own loopback


def serve_jwks(container: str, provider: Provider) -> None:
    """The stand-in provider's published keys where the exchange host fetches them: a static file
    server on that host's own 127.0.0.1 (the host reaches nothing else)."""
    write = "mkdir -p /run/jwks/.well-known && cat > /run/jwks/.well-known/jwks"
    subprocess.run(
        ["docker", "exec", "-i", container, "sh", "-c", write], input=json.dumps(provider.jwks()), text=True, check=True
    )
    serve = ["python3", "-m", "http.server", "9999", "--bind", "127.0.0.1", "--directory", "/run/jwks"]
    subprocess.run(["docker", "exec", "-d", container, *serve], check=True)


def job(script: str, token: str, root: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """The script ci-config --oidc emits, run as a CI job runs it: its own docker config and temp dir."""
    root.mkdir()
    env = {**os.environ, "DOCKER_CONFIG": str(root / "docker"), "TMPDIR": str(root), "BUILDFLEET_OIDC_TOKEN": token}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=300), env


def test_a_ci_job_trades_its_oidc_token_for_an_hours_certificate_that_builds_and_revoking_the_exchange_ends_it(pool):
    provider = Provider(ISSUER)
    container = f"buildfleet-{pool.name}-amd64-0"  # the fleet's first host by name runs the exchange
    serve_jwks(container, provider)
    config = pool.root / "buildfleet.yaml"
    before = config.read_text()
    config.write_text(before + f"exchangeGithubRepositories: [acme/app]\nexchangeGithubIssuer: {ISSUER}\n")
    everywhere = {"amd64-0": True, "amd64-1": True, "amd64-pool": True}
    try:
        up = pool.up()
        assert up.returncode == 0, up.stdout + up.stderr
        assert "make its issuing CA, on this host" in up.stdout and "drained" in up.stdout  # the bundle rolled out
        emitted = buildfleet("ci-config", "--format", "shell", "--oidc", "--fleet", pool.name, env=pool.env)
        assert emitted.returncode == 0 and "BUILDFLEET_CLIENT_KEY" not in emitted.stdout, emitted.stderr
        script = emitted.stdout
        token = provider.token("buildfleet", repository="acme/app")
        joined, env = job(script, token, pool.root / "job")
        assert joined.returncode == 0, joined.stdout + joined.stderr
        (tls,) = [d for d in (pool.root / "job").iterdir() if (d / "cert.pem").exists()]
        files = TLSFiles(tls / "ca.pem", tls / "cert.pem", tls / "key.pem")
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=1, minutes=5)
        assert reaches(pool, files) == everywhere  # every member and the pool take the job's certificate
        assert pool.build(0, env)[0] == 0  # and the job builds through the pool with it
        refused = {
            "other repository": (
                provider.token("buildfleet", repository="mallory/fork"),
                "claim repository='mallory/fork' is not allowed",
            ),
            "expired": (provider.token("buildfleet", repository="acme/app", lifetime=-120), "the token has expired"),
            "wrong audience": (provider.token("someone-else", repository="acme/app"), "another audience"),
            "bad signature": (
                provider.token("buildfleet", key=Provider(ISSUER).key, repository="acme/app"),
                "signature does not match",
            ),
            "replayed": (token, "the token was exchanged before (replayed)"),
        }
        for index, (case, (bad, reason)) in enumerate(refused.items()):
            tried, _ = job(script, bad, pool.root / f"refused-{index}")
            assert tried.returncode != 0 and "refused: " in tried.stderr and reason in tried.stderr, (
                case,
                tried.stderr,
            )
        revoked = buildfleet("client", "revoke", "oidc-exchange", "--fleet", pool.name, env=pool.env)
        assert revoked.returncode == 0, revoked.stdout + revoked.stderr
        assert reaches(pool, files) == dict.fromkeys(everywhere, False)  # what it issued is refused everywhere
        later, _ = job(script, provider.token("buildfleet", repository="acme/app"), pool.root / "after")
        assert later.returncode != 0  # the exchange still signs, but no host trusts its CA any more
        # back on: a new CA, made on the exchange's host, the revoked one trusted nowhere still
        renewed = buildfleet("client", "renew", "oidc-exchange", "--fleet", pool.name, env=pool.env)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        assert "make a new issuing CA, on this host (revoked)" in renewed.stdout
        again, env = job(script, provider.token("buildfleet", repository="acme/app"), pool.root / "renewed")
        assert again.returncode == 0, again.stdout + again.stderr
        (tls,) = [d for d in (pool.root / "renewed").iterdir() if (d / "cert.pem").exists()]
        assert reaches(pool, TLSFiles(tls / "ca.pem", tls / "cert.pem", tls / "key.pem")) == everywhere
        assert reaches(pool, files) == dict.fromkeys(everywhere, False)  # the revoked CA's certificate still out
    finally:
        config.write_text(before)
        subprocess.run(["docker", "exec", container, "pkill", "-f", "http.server 9999"], capture_output=True)
