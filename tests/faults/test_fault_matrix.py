"""The fault matrix (docs/reliability.md): real `predictd serve` processes under load, a
PostgreSQL cluster of the tests' own that is stopped, frozen (SIGSTOP) and crashed
(`-m immediate`), SIGKILL/SIGTERM of predictd, a spool on a tiny private tmpfs, and fsync
errors injected with strace. Loss is judged like Jepsen: every answer the load generator got
is checked against what reached the database (tests/support/load.py).

Each test asserts its pass criterion; with PREDICTD_FAULT_FIGURES=<file> it also writes what
it measured (tests/support/figures.py). PREDICTD_FAULT_OUTAGE_S (default 30) sets how long
the database stays stopped or frozen in matrix items 1 and 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support import figures, services
from tests.support.load import Ledger, Load, Probes, Verdict, judge
from tests.support.pgcluster import OwnCluster
from tests.support.server import (
    ServerPool,
    ServerProcess,
    database_name,
    free_port,
    id_counts,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OUTAGE_S = float(os.environ.get("PREDICTD_FAULT_OUTAGE_S", "30"))
DRAIN_LIMIT_S = 30.0
PROBE_P99_LIMIT_S = 0.050
READY_LIMIT_S = 10.0


def wait_judged(url: str, ledger: Ledger, prefix: str, timeout_s: float, details: str) -> Verdict:
    """Wait until every answered prediction is stored (or time runs out), then judge."""
    deadline = time.monotonic() + timeout_s
    verdict = judge(url, ledger, prefix)
    while verdict.lost and time.monotonic() < deadline:
        time.sleep(0.25)
        verdict = judge(url, ledger, prefix)
    verdict.assert_nothing_lost(details)
    return verdict


def idle_in_transaction(cluster: OwnCluster, url: str) -> int:
    rows = asyncio.run(
        cluster.fetch(
            "postgres",
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE datname = $1 AND state LIKE 'idle in transaction%'",
            database_name(url),
        )
    )
    n: int = rows[0]["n"]
    return n


def rollups_match_rows(cluster: OwnCluster, url: str) -> tuple[int, int]:
    """(sum of the per-minute rollup counts, rows in predictions): analytics stay exact."""
    rows = asyncio.run(
        cluster.fetch(
            database_name(url),
            "SELECT (SELECT coalesce(sum(count), 0) FROM prediction_rollups) AS rolled, "
            "(SELECT count(*) FROM predictions) AS stored",
        )
    )
    return int(rows[0]["rolled"]), int(rows[0]["stored"])


# -- 1 and 2: the database stopped, then frozen, for OUTAGE_S under load --------------------


def outage_under_load(
    servers: ServerPool,
    cluster: OwnCluster,
    url: str,
    spool: Path,
    *,
    prefix: str,
    fail: Callable[[], None],
    heal: Callable[[], None],
) -> dict[str, float]:
    server = servers.start(url, spool_dir=spool)
    probes = Probes(server.base_url).start()
    load = Load(server.base_url, prefix=prefix, clients=8, rate_per_s=150).start()
    time.sleep(2)
    failed_at = time.monotonic()
    fail()
    time.sleep(OUTAGE_S)
    heal()
    healed_at = time.monotonic()
    time.sleep(2)
    ledger = load.stop()
    verdict = wait_judged(url, ledger, prefix, DRAIN_LIMIT_S, servers.report())
    drained_s = time.monotonic() - healed_at
    samples = probes.stop()

    assert not ledger.refused, f"non-2xx answers {ledger.statuses}\n{servers.report()}"
    assert not ledger.indeterminate, f"{len(ledger.indeterminate)} requests got no answer"
    for path in ("/health", "/ready"):
        seen = probes.statuses(path)
        assert set(seen) == {200}, f"{path} answered {dict(seen)} during the outage"
    assert drained_s <= DRAIN_LIMIT_S, f"backlog drained {drained_s:.1f} s after recovery"
    assert probes.p99() <= PROBE_P99_LIMIT_S, f"probe p99 {probes.p99() * 1000:.1f} ms"
    assert server.metric("predictd_spool_bytes") >= 0  # still serving /metrics
    return {
        "outage_s": OUTAGE_S,
        "answered": verdict.answered,
        "stored": verdict.stored,
        "lost": len(verdict.lost),
        "duplicates": len(verdict.duplicates),
        "phantoms": len(verdict.phantoms),
        "non_2xx": len(ledger.refused),
        "during_outage_answered": sum(
            1 for at, _ in ledger.latencies if failed_at <= at <= healed_at
        ),
        "max_latency_ms": round(ledger.max_latency() * 1000, 1),
        "max_latency_during_outage_ms": round(ledger.max_latency(failed_at, healed_at) * 1000, 1),
        "drained_s_after_recovery": round(drained_s, 2),
        "probes": len(samples),
        "probe_p99_ms": round(probes.p99() * 1000, 2),
    }


def test_1_database_stopped_under_load(
    servers: ServerPool, own_cluster: OwnCluster, own_pg: str, tmp_path: Path
) -> None:
    result = outage_under_load(
        servers, own_cluster, own_pg, tmp_path / "spool", prefix="m1",
        fail=lambda: own_cluster.stop("fast"), heal=own_cluster.start,
    )  # fmt: skip
    figures.record("1 PostgreSQL stopped under load", **result)


def test_2_database_frozen_under_load(
    servers: ServerPool, own_cluster: OwnCluster, own_pg: str, tmp_path: Path
) -> None:
    result = outage_under_load(
        servers, own_cluster, own_pg, tmp_path / "spool", prefix="m2",
        fail=own_cluster.freeze, heal=own_cluster.thaw,
    )  # fmt: skip
    assert result["max_latency_ms"] <= 1000, result
    # Whatever was waiting on the frozen server finishes or is rolled back: nothing is left
    # holding a transaction open.
    wait_for(
        lambda: idle_in_transaction(own_cluster, own_pg) == 0,
        10,
        "no connection idle in transaction",
        servers.report,
    )
    figures.record("2 PostgreSQL frozen (SIGSTOP) under load", **result, idle_in_transaction=0)


# -- 3: PostgreSQL crashes (-m immediate) in the middle of draining a backlog ------------------

BACKLOG = 20_000
BATCH = 100


def spool_backlog(server: ServerProcess, rep: int) -> list[str]:
    ids: list[str] = []
    with server.client(timeout_s=30) as client:
        for n in range(BACKLOG // BATCH):
            items = [{"text": f"m3 {rep} {n} {i}: I love it"} for i in range(BATCH)]
            response = client.post("/batch", json={"items": items})
            assert response.status_code == 200, response.text
            ids.extend(p["prediction_id"] for p in response.json()["predictions"])
    return ids


def stored_count(cluster: OwnCluster, url: str) -> int:
    with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError):
        sql = "SELECT count(*) AS n FROM predictions"
        rows = asyncio.run(cluster.fetch(database_name(url), sql))
        return int(rows[0]["n"])
    return -1


def test_3_database_crashes_mid_drain(
    servers: ServerPool, own_cluster: OwnCluster, own_pg: str, tmp_path: Path
) -> None:
    # Smaller batches make the drain take long enough to be caught in the middle.
    server = servers.start(own_pg, spool_dir=tmp_path / "spool",
                           env={"PREDICTD_RECORD_BATCH": "250"})  # fmt: skip
    answered: list[str] = []
    reps: list[dict[str, float]] = []
    for rep in range(5):
        own_cluster.stop("fast")
        answered += spool_backlog(server, rep)
        before = len(answered) - BACKLOG
        own_cluster.start()
        deadline = time.monotonic() + 20
        while (stored := stored_count(own_cluster, own_pg)) <= before:
            assert time.monotonic() < deadline, f"drain never started\n{server.describe()}"
            time.sleep(0.005)
        own_cluster.stop("immediate")
        at_crash = stored - before
        time.sleep(1)
        own_cluster.start()
        restarted = time.monotonic()
        total = len(answered)
        wait_for(lambda: stored_count(own_cluster, own_pg) >= total, 10,  # noqa: B023
                 f"rep {rep}: the drain to resume and finish", server.describe)  # fmt: skip
        reps.append({"stored_at_crash": at_crash, "resumed_s": time.monotonic() - restarted})

    counts = id_counts(own_pg, answered)
    missing = [i for i, n in counts.items() if n == 0]
    duplicated = {i: n for i, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} answered predictions not stored: {missing[:3]}"
    assert not duplicated, duplicated
    rolled, stored = rollups_match_rows(own_cluster, own_pg)
    assert stored == len(answered), f"{stored} rows for {len(answered)} answers"
    assert rolled == stored, f"rollups count {rolled} predictions, the table holds {stored}"
    mid = [r for r in reps if 0 < r["stored_at_crash"] < BACKLOG]
    assert len(mid) == len(reps), f"crashes not all mid-drain: {reps}"
    figures.record(
        "3 PostgreSQL -m immediate mid-drain",
        repetitions=len(reps),
        backlog=BACKLOG,
        stored_at_crash=[int(r["stored_at_crash"]) for r in reps],
        max_resume_s=round(max(r["resumed_s"] for r in reps), 2),
        answered=len(answered),
        stored=stored,
        lost=len(missing),
        duplicates=len(duplicated),
        rollup_count=rolled,
    )


# -- 4: predictd SIGKILLed at random moments, the database alternately up and down -------------


def wait_ready(server: ServerProcess, timeout_s: float) -> float:
    started = time.monotonic()
    with httpx.Client(base_url=server.base_url, timeout=1.0) as client:
        while time.monotonic() - started < timeout_s:
            assert server.running, f"server exited while starting\n{server.describe()}"
            with contextlib.suppress(httpx.TransportError):
                if client.get("/ready").status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout_s} s\n{server.describe()}")


def test_4_sigkill_at_random_moments(
    servers: ServerPool, own_cluster: OwnCluster, own_pg: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    rng = random.Random(4)
    ledger = Ledger()
    ready_s: list[float] = []
    for i in range(10):
        database_up = i % 2 == 0
        if database_up and not own_cluster.running:
            own_cluster.start()
        elif not database_up and own_cluster.running:
            own_cluster.stop("fast")
        server = servers.start(own_pg, spool_dir=spool, wait=False)
        ready_s.append(wait_ready(server, READY_LIMIT_S + 20))
        load = Load(server.base_url, prefix="m4", clients=4, rate_per_s=100).start()
        time.sleep(rng.uniform(0.2, 1.5))
        server.kill()
        ledger.merge(load.stop())
    if not own_cluster.running:
        own_cluster.start()
    final = servers.start(own_pg, spool_dir=spool)
    verdict = wait_judged(own_pg, ledger, "m4", DRAIN_LIMIT_S, servers.report())
    assert final.running
    assert not ledger.refused, ledger.statuses
    assert max(ready_s) <= READY_LIMIT_S, f"restart to ready took {ready_s}"
    figures.record(
        "4 SIGKILL of predictd x10, database alternately up/down",
        kills=10,
        answered=verdict.answered,
        stored=verdict.stored,
        lost=len(verdict.lost),
        duplicates=len(verdict.duplicates),
        phantoms=len(verdict.phantoms),
        unanswered_in_flight=len(ledger.indeterminate),
        stored_of_unanswered=verdict.stored_indeterminate,
        max_restart_to_ready_s=round(max(ready_s), 2),
    )


# -- 5: SIGTERM under load ----------------------------------------------------------------------


def test_5_sigterm_under_load(
    servers: ServerPool, own_cluster: OwnCluster, own_pg: str, tmp_path: Path
) -> None:
    delay_s = 3.0
    spool = tmp_path / "spool"
    server = servers.start(own_pg, spool_dir=spool,
                           env={"PREDICTD_SHUTDOWN_DELAY_S": str(delay_s)})  # fmt: skip
    probes = Probes(server.base_url, interval_s=0.05).start()
    load = Load(server.base_url, prefix="m5", clients=8, rate_per_s=150).start()
    time.sleep(2)
    termed = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(delay_s + 30)
    exited_s = time.monotonic() - termed
    ledger = load.stop()
    probes.stop()

    assert code == 0, server.describe()
    ready_after = [s for s in probes.samples if s.path == "/ready" and s.at >= termed + 0.2]
    answered_after = [s for s in ready_after if s.status]
    assert answered_after, "no /ready answered while draining"
    assert {s.status for s in answered_after} == {503}, [s.status for s in answered_after]
    served_while_draining = sum(1 for at, _ in ledger.latencies if termed + 0.5 < at < termed + 2.5)
    assert served_while_draining > 0, "nothing was served during the drain period"
    assert not ledger.refused, f"non-2xx during shutdown: {ledger.statuses}"
    assert exited_s <= delay_s + 10, f"exit took {exited_s:.1f} s"

    servers.start(own_pg, spool_dir=spool)  # whatever stayed in the spool ships now
    verdict = wait_judged(own_pg, ledger, "m5", DRAIN_LIMIT_S, servers.report())
    figures.record(
        "5 SIGTERM under load",
        shutdown_delay_s=delay_s,
        exit_code=code,
        exit_after_s=round(exited_s, 2),
        ready_503_within_s=round(answered_after[0].at - termed, 3),
        answered=verdict.answered,
        answered_while_draining=served_while_draining,
        non_2xx=len(ledger.refused),
        refused_connections_after_exit=len(ledger.indeterminate),
        lost=len(verdict.lost),
        phantoms=len(verdict.phantoms),
    )


# -- 6: Redis hung, resumed, then killed, under load through a real server ----------------------


def test_6_redis_hung_then_dead_under_load(
    servers: ServerPool,
    own_redis: subprocess.Popen[bytes],
    own_pg: str,
    tmp_path: Path,
) -> None:
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{own_redis.port}/0",  # type: ignore[attr-defined]
        "PREDICTD_RATE_LIMIT_PER_S": "100000",  # every request asks Redis, none is limited
        "PREDICTD_REDIS_TIMEOUT_MS": "50",
    }
    server = servers.start(own_pg, spool_dir=tmp_path / "spool", env=env)
    load = Load(server.base_url, prefix="m6", clients=8, rate_per_s=150).start()
    time.sleep(2)
    hung_at = time.monotonic()
    own_redis.send_signal(signal.SIGSTOP)
    time.sleep(5)
    own_redis.send_signal(signal.SIGCONT)
    time.sleep(7)  # past the breaker's cool-down: the shared buckets are used again
    killed_at = time.monotonic()
    own_redis.kill()
    time.sleep(5)
    ledger = load.stop()
    verdict = wait_judged(own_pg, ledger, "m6", DRAIN_LIMIT_S, servers.report())
    assert not ledger.refused, f"non-2xx answers {ledger.statuses}\n{servers.report()}"
    assert not ledger.indeterminate
    assert ledger.max_latency() <= 1.0, ledger.max_latency()
    slow = [s for at, s in ledger.latencies if at >= hung_at and s >= 0.045]
    figures.record(
        "6 Redis hung 5 s, resumed, killed (rate limiter on, real server)",
        answered=verdict.answered,
        non_2xx=len(ledger.refused),
        lost=len(verdict.lost),
        max_latency_ms=round(ledger.max_latency() * 1000, 1),
        max_latency_after_hang_ms=round(ledger.max_latency(hung_at, killed_at) * 1000, 1),
        max_latency_after_kill_ms=round(ledger.max_latency(killed_at) * 1000, 1),
        requests_over_45ms_after_hang=len(slow),
    )


# -- 7: the spool on a full disk (a private 8 MiB tmpfs) while PostgreSQL is down ---------------


def ready_status(server: ServerProcess) -> int:
    with server.client() as client:
        return client.get("/ready").status_code


def tmpfs_wrap(spool: Path) -> list[str]:
    """Run the server in its own mount namespace with ``spool`` on an 8 MiB tmpfs."""
    script = 'mount -t tmpfs -o size=8m predictd-spool "$1" && shift && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(spool)]


@pytest.fixture
def can_mount() -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        services.unavailable("unshare -m and root (to mount a private tmpfs)")


def fill_spool(server: ServerProcess, prefix: str) -> tuple[list[str], list[httpx.Response]]:
    """Big batches until the disk refuses one; returns (ids answered, the refusals)."""
    text = "I love this product. " * 200  # ~4 KiB, so 8 MiB fills in seconds
    ids: list[str] = []
    refusals: list[httpx.Response] = []
    with server.client(timeout_s=30) as client:
        for n in range(400):
            items = [{"text": f"{prefix} {n} {i} {text}"} for i in range(50)]
            response = client.post("/batch", json={"items": items})
            if response.status_code != 200:
                refusals.append(response)
                break
            ids.extend(p["prediction_id"] for p in response.json()["predictions"])
            if n % 5 == 4 and server.metric("predictd_records_unrecorded_total") > 0:
                break  # shed: the disk is full and predictions go unrecorded
    return ids, refusals


@pytest.mark.parametrize("policy", ["reject", "shed"])
def test_7_spool_disk_full(
    policy: str,
    can_mount: None,
    servers: ServerPool,
    own_cluster: OwnCluster,
    own_pg: str,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    server = servers.start(own_pg, spool_dir=spool, wrap=tmpfs_wrap(spool),
                           env={"PREDICTD_SPOOL_FULL_POLICY": policy})  # fmt: skip
    own_cluster.stop("fast")
    ids, refusals = fill_spool(server, f"m7{policy}")
    answered = list(ids)
    with server.client() as client:
        singles = [client.post("/predict", json={"text": f"m7 {policy} {n}: fine"})
                   for n in range(20)]  # fmt: skip
        ready_full = client.get("/ready")
    if policy == "reject":
        assert refusals, "an 8 MiB disk never filled"
        for response in [*refusals, *singles]:
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "spool_full", response.text
            assert int(response.headers["retry-after"]) >= 1
        assert ready_full.status_code == 503, ready_full.text
        assert ready_full.json()["checks"]["spool"]["state"] == "failing"
    else:
        assert not refusals, [r.text for r in refusals]
        assert {r.status_code for r in singles} == {200}
        answered += [r.json()["prediction_id"] for r in singles]
    unrecorded = server.metric("predictd_records_unrecorded_total")

    own_cluster.start()

    def stored() -> int:
        return sum(id_counts(own_pg, answered).values())

    wait_for(lambda: stored() >= len(answered) - unrecorded, DRAIN_LIMIT_S,
             "the spool to drain", server.describe)  # fmt: skip
    counts = id_counts(own_pg, answered)
    assert all(n <= 1 for n in counts.values())
    stored_n = sum(counts.values())
    if policy == "reject":
        assert stored_n == len(answered), f"{stored_n} stored of {len(answered)} answered"
        assert unrecorded == 0
    else:
        assert unrecorded == len(answered) - stored_n, (unrecorded, len(answered), stored_n)
        assert unrecorded > 0
    # Space is back once the drained segments are deleted: predictions are kept again.
    wait_for(lambda: ready_status(server) == 200, DRAIN_LIMIT_S, "ready again", server.describe)
    with server.client() as client:
        after = client.post("/predict", json={"text": "m7 after: lovely"})
    assert after.status_code == 200, after.text
    wait_for(lambda: id_counts(own_pg, [after.json()["prediction_id"]]).total() == 1, 10,
             "the prediction after recovery to be stored", server.describe)  # fmt: skip
    figures.record(
        f"7 spool disk full ({policy})",
        answered=len(answered),
        stored=stored_n,
        refused_503=len(refusals) + sum(1 for r in singles if r.status_code == 503),
        counted_unrecorded=int(unrecorded),
        answered_minus_stored=len(answered) - stored_n,
    )


# -- 8: fsync errors in strict durability ------------------------------------------------------


@pytest.fixture
def strace() -> None:
    if shutil.which("strace") is None:
        services.unavailable("strace (to inject fsync errors)")


def kill_tree(pid: int) -> None:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        for child in children.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)


def test_8_fsync_errors_in_strict_mode(
    strace: None, servers: ServerPool, own_pg: str, tmp_path: Path
) -> None:
    # Every third fdatasync/fsync fails with EIO.
    inject = "inject=fsync,fdatasync:error=EIO:when=3+3"
    wrap = ["strace", "-f", "-qq", "-o", "/dev/null", "--seccomp-bpf",
            "-e", "trace=fsync,fdatasync", "-e", inject]  # fmt: skip
    server = servers.start(own_pg, spool_dir=tmp_path / "spool", durability="strict", wrap=wrap)
    try:
        load = Load(server.base_url, prefix="m8", clients=4, rate_per_s=100).start()
        time.sleep(4)
        ledger = load.stop()
        failed: list[httpx.Response] = []
        with server.client() as client:
            for n in range(40):
                request_id = f"m8-single-{n}"
                response = client.post("/predict", json={"text": f"m8 {n}"},
                                       headers={"x-request-id": request_id})  # fmt: skip
                if response.status_code == 200:
                    ledger.answered[request_id] = response.json()["prediction_id"]
                else:
                    ledger.refused[request_id] = response.status_code
                    failed.append(response)
        # A record whose fsync failed is never shipped by this process: a refused request
        # stored anyway would show up as a phantom.
        verdict = wait_judged(own_pg, ledger, "m8", DRAIN_LIMIT_S, server.describe())
        time.sleep(1)  # anything shipped late would show up now
        verdict = judge(own_pg, ledger, "m8")
        verdict.assert_nothing_lost(server.describe())
    finally:
        kill_tree(server.proc.pid)
    assert failed, "no fsync error reached a request: the injection did not work"
    assert {r.status_code for r in failed} == {503}, [r.text for r in failed]
    assert {r.json()["error"]["code"] for r in failed} == {"not_durable"}
    assert set(ledger.refused.values()) == {503}, ledger.statuses
    assert len(ledger.answered) > 0
    figures.record(
        "8 fsync EIO in strict durability",
        answered_2xx=verdict.answered,
        refused_503_not_durable=len(ledger.refused),
        stored=verdict.stored,
        lost=len(verdict.lost),
        duplicates=len(verdict.duplicates),
        stored_of_refused=len(verdict.phantoms),
    )


# -- 11: probe semantics ------------------------------------------------------------------------


def test_11_probes_while_starting_and_with_dependencies_away(
    servers: ServerPool, own_cluster: OwnCluster, own_pg: str, tmp_path: Path
) -> None:
    # Started against a frozen database and a Redis nobody listens on: /health answers at
    # once, /ready says `starting` (503) until the first model is loaded, then 200.
    own_cluster.freeze()
    try:
        launched = time.monotonic()
        server = servers.start(own_pg, spool_dir=tmp_path / "spool", wait=False,
                               env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})  # fmt: skip
        seen: list[tuple[int, int, str]] = []
        with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
            while time.monotonic() - launched < READY_LIMIT_S + 20:
                assert server.running, server.describe()
                try:
                    health = client.get("/health").status_code
                    ready = client.get("/ready")
                except httpx.TransportError:
                    time.sleep(0.02)
                    continue
                seen.append((health, ready.status_code, ready.json()["checks"]["server"]["detail"]))
                if ready.status_code == 200:
                    break
                time.sleep(0.02)
        ready_s = time.monotonic() - launched
    finally:
        own_cluster.thaw()
    assert seen, "no probe was answered"
    assert seen[-1][1] == 200, seen[-5:]
    assert {h for h, _, _ in seen} == {200}
    assert (200, 503, "starting") in seen, "never saw /ready 503 while starting"
    assert all(r == 503 for _, r, phase in seen if phase == "starting")
    assert ready_s <= READY_LIMIT_S, f"ready after {ready_s:.1f} s"
    figures.record(
        "11 probes: start against a frozen database, Redis away",
        health_answers=len(seen),
        health_non_200=sum(1 for h, _, _ in seen if h != 200),
        ready_503_while_starting=sum(1 for _, r, p in seen if p == "starting"),
        ready_after_s=round(ready_s, 2),
    )
