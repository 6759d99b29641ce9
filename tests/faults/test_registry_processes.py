"""The model registry across real processes: `predictd models ...` CLI invocations change the
registry in PostgreSQL while `predictd serve` subprocesses follow it. Nothing is mocked.

The promises under test: every server follows a promotion or rollback within its poll interval
(at once through PostgreSQL NOTIFY for CLI changes, by the poll alone for a change that sends no
notice); a hot swap under load fails no request and records every answer exactly once with the
version that answered it; an artifact whose bytes changed after registration is never served,
and a file that is not a model never becomes a version; promotions racing from several
processes leave exactly one production version.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Artifacts
from tests.support.server import (
    ServerPool,
    ServerProcess,
    pg_dsn,
    wait_all_recorded,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CLI_TIMEOUT_S = 60.0
POLL_S = 1.0  # test 1: PREDICTD_REGISTRY_POLL_S
FOLLOW_BOUND_S = POLL_S + 2.0  # a CLI change must be served within one poll plus a margin
FAST_POLL_S = 0.5  # tests 2 and 3
SHIP_TIMEOUT_S = 30.0

# Runs several `predictd` CLI commands in one interpreter, in order, ``pause_s`` apart, and
# exits with the first non-zero status. The commands are the real Typer commands; this saves
# the ~2.5 s interpreter start-up per command (setup, and swaps spaced ~1 s apart), and with a
# gate lets racing processes finish starting up first, then all go at once: each creates
# GATE.ready.PID once loaded and waits for GATE to exist.
_BATCH = """
import json, os, sys, time
from predictd.cli.main import app
commands, pause_s, gate = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if gate:
    open(f"{gate}.ready.{os.getpid()}", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            sys.exit("the gate never opened")
        time.sleep(0.005)
for n, argv in enumerate(commands):
    if n:
        time.sleep(pause_s)
    code = app(argv, prog_name="predictd", standalone_mode=False)
    if code:
        sys.exit(code)
"""


@dataclass(frozen=True)
class Cli:
    """`python -m predictd ...` with the environment of the pool's servers (same database,
    same artifact store)."""

    env: dict[str, str]
    cwd: Path

    @classmethod
    def for_pool(cls, servers: ServerPool, database_url: str) -> Cli:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PREDICTD_") and key not in ("DATABASE_URL", "REDIS_URL")
        }
        env.update(
            {
                "DATABASE_URL": database_url,
                "PREDICTD_ARTIFACT_DIR": str(servers.root / "artifacts"),
                "PREDICTD_AUTO_MIGRATE": "true",
                "PREDICTD_LOG_FORMAT": "text",
                "PYTHONUNBUFFERED": "1",
            }
        )
        cwd = servers.root / "cli"
        cwd.mkdir(parents=True, exist_ok=True)
        return cls(env, cwd)

    @property
    def artifact_dir(self) -> Path:
        return Path(self.env["PREDICTD_ARTIFACT_DIR"])

    def _exec(self, argv: Sequence[str], check: bool) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )
        if check:
            assert result.returncode == 0, describe(result)
        return result

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._exec([sys.executable, "-m", "predictd", *args], check)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "predictd", *args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def _batch_argv(
        commands: Sequence[Sequence[str]], pause_s: float, gate: Path | None
    ) -> list[str]:
        listed = json.dumps([list(c) for c in commands])
        return [sys.executable, "-c", _BATCH, listed, str(pause_s), str(gate or "")]

    def batch(
        self, commands: Sequence[Sequence[str]], pause_s: float = 0.0
    ) -> subprocess.CompletedProcess[str]:
        return self._exec(self._batch_argv(commands, pause_s, None), check=True)

    def start_gated(self, command: Sequence[str], gate: Path) -> subprocess.Popen[str]:
        """One CLI command in a process that waits, once started up, for ``gate`` to exist."""
        return subprocess.Popen(
            self._batch_argv([command], 0.0, gate),
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{result.args!r} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def register(path: Path, stage: str = "none") -> list[str]:
    return ["models", "register", str(path), "--name", "sentiment", "--stage", stage]


@pytest.fixture
def cli(servers: ServerPool, postgres_url: str) -> Cli:
    return Cli.for_pool(servers, postgres_url)


@pytest.fixture
def two_versions(cli: Cli, artifacts: Artifacts, postgres_url: str) -> Cli:
    """sentiment v1 (production) and sentiment_alt as v2 (stage none), via the CLI."""
    cli.batch(
        [register(artifacts.sentiment.path, "production"), register(artifacts.sentiment_alt.path)]
    )
    assert stages(postgres_url) == {1: "production", 2: "none"}
    return cli


# -- reading PostgreSQL directly ------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    version: int
    stage: str
    promoted_at: datetime | None
    artifact_uri: str
    artifact_sha256: str


def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(pg_dsn(url), timeout=5)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows
        finally:
            await conn.close()

    return asyncio.run(run())


def registry_rows(url: str, name: str = "sentiment") -> dict[int, Row]:
    rows = _fetch(
        url,
        "SELECT version, stage, promoted_at, artifact_uri, artifact_sha256 "
        "FROM model_versions WHERE name = $1 ORDER BY version",
        name,
    )
    return {r["version"]: Row(**dict(r)) for r in rows}


def stages(url: str) -> dict[int, str]:
    return {v: row.stage for v, row in registry_rows(url).items()}


def recorded_versions(url: str, ids: Sequence[str]) -> dict[str, int]:
    rows = _fetch(
        url,
        "SELECT id::text AS id, model_version FROM predictions WHERE id = ANY($1::uuid[])",
        list(ids),
    )
    return {r["id"]: r["model_version"] for r in rows}


def assert_recorded_as_answered(url: str, answered: dict[str, int], servers: ServerPool) -> None:
    """Every answered id has exactly one row, and its model_version is the one answered."""
    wait_all_recorded(url, answered, SHIP_TIMEOUT_S, servers.report)
    recorded = recorded_versions(url, list(answered))
    wrong = {i: (v, recorded.get(i)) for i, v in answered.items() if recorded.get(i) != v}
    assert not wrong, f"(answered, recorded) model_version differ for {len(wrong)} ids: " + str(
        dict(list(wrong.items())[:5])
    )


# -- talking to a server --------------------------------------------------------------------


def model_info(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/model-info")
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()
    return info


def predict(client: httpx.Client, text: str) -> dict[str, Any]:
    response = client.post("/predict", json={"text": text})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def start_servers(
    servers: ServerPool, url: str, tmp_path: Path, count: int, poll_s: float
) -> list[ServerProcess]:
    """``count`` servers without ``--model``: they serve what the registry says."""
    env = {"PREDICTD_MODEL_NAME": "sentiment", "PREDICTD_REGISTRY_POLL_S": str(poll_s)}
    started = [
        servers.start(url, spool_dir=tmp_path / f"spool{i}", env=env, model=None, wait=False)
        for i in range(count)
    ]
    for server in started:
        server.wait_healthy()
    return started


@dataclass(frozen=True)
class Followed:
    """When a registry change was committed, when the process that made it exited, and when
    each server first said (in /model-info) that it serves the new version; all
    ``time.monotonic()``."""

    committed: float
    exited: float
    seen: list[float | None]  # None: not within the deadline

    def since(self, start: float) -> list[float | None]:
        return [None if t is None else round(t - start, 3) for t in self.seen]


def first_served(
    servers: Sequence[ServerProcess],
    version: int,
    deadline: float,
    also: Callable[[], bool] = lambda: True,
) -> list[float | None]:
    """When each server's /model-info first said ``version``; polls until all do and
    ``also()`` holds, or until ``deadline``."""
    seen: list[float | None] = [None] * len(servers)
    clients = [s.client(timeout_s=2.0) for s in servers]
    try:
        while time.monotonic() < deadline:
            finished = also()
            for n, client in enumerate(clients):
                if seen[n] is None and model_info(client)["version"] == version:
                    seen[n] = time.monotonic()
            if finished and None not in seen:
                break
            time.sleep(0.02)
    finally:
        for client in clients:
            client.close()
    return seen


def run_and_follow(
    cli: Cli, args: Sequence[str], servers: Sequence[ServerProcess], version: int
) -> Followed:
    """Run a CLI command; watch every server's /model-info until all serve ``version``."""
    proc = cli.start(*args)
    assert proc.stdout is not None
    exit_times: list[float] = []

    def exited() -> bool:
        if not exit_times and proc.poll() is not None:
            exit_times.append(time.monotonic())
        return bool(exit_times)

    try:
        line = proc.stdout.readline()  # printed right after the change committed
        committed = time.monotonic()
        if not line:
            _, err = proc.communicate(timeout=CLI_TIMEOUT_S)
            raise AssertionError(f"`predictd {' '.join(args)}` failed ({proc.returncode}):{err}")
        assert f"v{version} is now production" in line, line
        seen = first_served(servers, version, committed + FOLLOW_BOUND_S + 10, exited)
        _, err = proc.communicate(timeout=CLI_TIMEOUT_S)
        exited()
        assert proc.returncode == 0, f"`predictd {' '.join(args)}` exited {proc.returncode}:{err}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return Followed(committed, exit_times[0], seen)


def promote_silently(url: str, version: int) -> float:
    """Promote sentiment ``version`` with plain SQL, as an operator in psql or an older
    predictd would: no NOTIFY, so only the servers' poll can pick it up. Returns the
    monotonic time of the commit."""

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn(url), timeout=5)
        try:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE model_versions SET stage = 'archived' "
                    "WHERE name = 'sentiment' AND stage = 'production' AND version <> $1",
                    version,
                )
                await conn.execute(
                    "UPDATE model_versions SET stage = 'production', promoted_at = now() "
                    "WHERE name = 'sentiment' AND version = $1",
                    version,
                )
        finally:
            await conn.close()

    asyncio.run(run())
    return time.monotonic()


# -- (1) two servers follow a CLI promotion and rollback ------------------------------------


def test_two_servers_follow_a_cli_promotion_and_rollback(
    two_versions: Cli, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    cli = two_versions
    pair = start_servers(servers, postgres_url, tmp_path, 2, POLL_S)
    answered: dict[str, int] = {}
    for server in pair:
        with server.client() as client:
            info = model_info(client)
            assert (info["name"], info["version"], info["source"], info["stage"]) == (
                "sentiment",
                1,
                "registry",
                "production",
            ), info
            assert info["last_load_error"] is None, info

    # The CLI's changes NOTIFY the servers; the plain-SQL one leaves it to the poll.
    steps = ("models promote sentiment 2", "models rollback sentiment", "SQL promote 2")
    for step, version in zip(steps, (2, 1, 2), strict=True):
        if step.startswith("models"):
            followed = run_and_follow(cli, step.split(), pair, version)
        else:
            committed = promote_silently(postgres_url, version)
            seen = first_served(pair, version, committed + FOLLOW_BOUND_S + 10)
            followed = Followed(committed, committed, seen)
        since_commit = followed.since(followed.committed)
        since_exit = followed.since(followed.exited)
        print(
            f"`{step}`: the servers served v{version} {since_commit} s after the commit "
            f"({since_exit} s relative to the exit of the process that made it)"
        )
        late = [d for d in since_commit if d is None or d > FOLLOW_BOUND_S]
        assert not late, (
            f"after `{step}`, the servers served v{version} {since_commit} s after the commit, "
            f"{since_exit} s after the process that made it exited (None: not within "
            f"{FOLLOW_BOUND_S + 10} s); expected within {FOLLOW_BOUND_S} s "
            f"(poll interval {POLL_S} s)\n{servers.report()}"
        )
        for n, server in enumerate(pair):
            with server.client() as client:
                for i in range(5):
                    answer = predict(client, f"after {step} {n}/{i}: what a great day")
                    assert (answer["model_name"], answer["model_version"]) == (
                        "sentiment",
                        version,
                    ), answer
                    assert answer["variant"] == "production", answer
                    answered[answer["prediction_id"]] = version
                info = model_info(client)
                assert (info["version"], info["source"]) == (version, "registry"), info
    assert stages(postgres_url) == {1: "archived", 2: "production"}
    assert_recorded_as_answered(postgres_url, answered, servers)


# -- (2) hot swaps under load ---------------------------------------------------------------

LOAD_WORKERS = 4
LOAD_MAX_S = 40.0  # a hard cap on the load; it normally stops a second after the last swap


def test_hot_swaps_under_load_fail_no_request(
    two_versions: Cli, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    cli = two_versions
    (server,) = start_servers(servers, postgres_url, tmp_path, 1, FAST_POLL_S)
    stop = threading.Event()
    lock = threading.Lock()
    answered: dict[str, int] = {}
    timeline: list[int] = []  # model_version of each answer, in the order they came back
    failures: list[str] = []
    started = time.monotonic()

    def load(worker: int) -> None:
        n = 0
        with server.client(timeout_s=15) as client:
            while not stop.is_set() and time.monotonic() - started < LOAD_MAX_S:
                n += 1
                try:
                    response = client.post(
                        "/predict", json={"text": f"swap load {worker}/{n}: I love it"}
                    )
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    if response.status_code == 200:
                        body = response.json()
                        answered[body["prediction_id"]] = body["model_version"]
                        timeline.append(body["model_version"])
                    else:
                        failures.append(f"{response.status_code}: {response.text[:300]}")

    def answers() -> int:
        with lock:
            return len(timeline)

    with ThreadPoolExecutor(max_workers=LOAD_WORKERS) as pool:
        futures = [pool.submit(load, w) for w in range(LOAD_WORKERS)]
        try:
            wait_for(lambda: answers() >= 20, 15, "the load to get going", servers.report)
            # promote v2, roll back, promote v2, roll back: one CLI process, ~1 s apart.
            swaps = cli.batch(
                [
                    ["models", "promote", "sentiment", "2"],
                    ["models", "rollback", "sentiment"],
                    ["models", "promote", "sentiment", "2"],
                    ["models", "rollback", "sentiment"],
                ],
                pause_s=1.0,
            )
            assert swaps.stdout.count("is now production") == 4, describe(swaps)
            with server.client() as client:
                wait_for(
                    lambda: model_info(client)["version"] == 1,
                    10,
                    "the server to serve v1 after the last rollback",
                    servers.report,
                )
            settled = answers()
            wait_for(lambda: answers() >= settled + 20, 15, "answers after the last swap")
        finally:
            stop.set()
        for future in futures:
            future.result(timeout=30)

    assert not failures, f"{len(failures)} requests failed during hot swaps: {failures[:10]}"
    assert set(timeline) == {1, 2}, f"answered versions: {sorted(set(timeline))}"
    assert timeline[-1] == 1, "the last answers must come from v1 (rolled back)"
    switches = sum(1 for a, b in itertools.pairwise(timeline) if a != b)
    assert switches >= 4, f"only {switches} version changes seen in the answers"
    print(f"{len(timeline)} answers across 4 swaps, {switches} version changes, none failed")
    assert stages(postgres_url) == {1: "production", 2: "archived"}
    assert_recorded_as_answered(postgres_url, answered, servers)


# -- (3) a tampered artifact is never served; a non-model is never registered ---------------


def store_files(artifact_dir: Path) -> set[Path]:
    """The content-addressed files (the servers' load manifest lives there too: not counted)."""
    return {
        p for p in artifact_dir.rglob("*") if p.is_file() and not p.name.startswith("manifest.")
    }


def test_a_broken_artifact_is_never_served_nor_registered(
    two_versions: Cli, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    cli = two_versions
    (server,) = start_servers(servers, postgres_url, tmp_path, 1, FAST_POLL_S)
    v1, v2 = registry_rows(postgres_url)[1], registry_rows(postgres_url)[2]
    stored = Path(v2.artifact_uri.removeprefix("file://"))
    sha = v2.artifact_sha256
    assert stored == (cli.artifact_dir / sha[:2] / f"{sha}.skops").resolve(), stored
    data = bytearray(stored.read_bytes())
    for offset in (len(data) // 3, len(data) // 2):  # same size, different bytes
        data[offset] ^= 0xFF
    stored.write_bytes(bytes(data))

    # A file that is not a model at all is registered meanwhile (independent of the server).
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"this is not a model, just some text\n" * 20)
    files_before = store_files(cli.artifact_dir)
    assert files_before == {stored, Path(v1.artifact_uri.removeprefix("file://"))}, files_before
    bad_register = cli.start("models", "register", str(garbage), "--name", "sentiment")
    promote = cli.start("models", "promote", "sentiment", "2")

    # Ask from before the promotion until the server has reported the failure and more than
    # two polls passed since the CLI exited: every answer must come from v1.
    seen_versions: set[int] = set()
    info: dict[str, Any] = {}
    n, started, promoted = 0, time.monotonic(), 0.0
    with server.client() as client:
        while True:
            n += 1
            seen_versions.add(predict(client, f"tampered {n}: great value")["model_version"])
            info = model_info(client)
            assert info["version"] == 1, info
            if not promoted and promote.poll() is not None:
                promoted = time.monotonic()
            elapsed = time.monotonic() - promoted
            if promoted and info["last_load_error"] and elapsed > 3 * FAST_POLL_S:
                break
            assert time.monotonic() - started < CLI_TIMEOUT_S, f"no load error reported: {info}"
            time.sleep(0.05)
        ready = client.get("/ready")
    out, err = promote.communicate(timeout=CLI_TIMEOUT_S)
    assert promote.returncode == 0, f"promote exited {promote.returncode}: {out}{err}"
    assert "sentiment v2 is now production" in out, out
    assert stages(postgres_url) == {1: "archived", 2: "production"}
    assert seen_versions == {1}, seen_versions
    assert "sha256" in info["last_load_error"], info
    assert info["artifact_sha256"] == v1.artifact_sha256, info
    assert ready.status_code == 200, ready.text
    model_check = ready.json()["checks"]["model"]
    assert model_check["state"] == "ok", model_check
    assert "sentiment v1" in model_check["detail"], model_check
    assert "sha256" in model_check["detail"], model_check
    log = server.log_path.read_text(errors="replace")
    assert "ALERT" in log, server.log_tail()
    tampered = server.metric(
        "predictd_model_load_failures_total", {"model": "sentiment", "reason": "tampered"}
    )
    assert tampered >= 1, tampered
    print(f"tampered v2 refused; {n} answers, all from v1, the last {elapsed:.2f} s after")

    out, err = bad_register.communicate(timeout=CLI_TIMEOUT_S)
    result = subprocess.CompletedProcess(bad_register.args, bad_register.returncode, out, err)
    assert result.returncode != 0, describe(result)
    assert result.stderr.startswith("error:"), describe(result)
    assert "garbage.skops" in result.stderr, describe(result)
    assert "not a readable skops artifact" in result.stderr, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert set(registry_rows(postgres_url)) == {1, 2}
    assert [r.artifact_sha256 for r in registry_rows(postgres_url).values()] == [
        v1.artifact_sha256,
        sha,
    ]
    assert store_files(cli.artifact_dir) == files_before
    listing = cli.run("models", "list", "--name", "sentiment")
    lines = [line.split("\t")[:3] for line in listing.stdout.splitlines() if line.strip()]
    assert lines == [["sentiment", "v1", "archived"], ["sentiment", "v2", "production"]], describe(
        listing
    )


# -- (4) promotions racing from several processes -------------------------------------------


def test_racing_cli_promotions_leave_one_production_version(
    cli: Cli, artifacts: Artifacts, postgres_url: str, tmp_path: Path
) -> None:
    """The in-process race is in tests/registry/test_lifecycle.py; this one races processes,
    released together once all have started up (so their transactions really overlap)."""
    cli.batch(
        [
            register(artifacts.sentiment.path, "production"),
            register(artifacts.sentiment_alt.path),
            register(artifacts.sentiment.path),
            register(artifacts.sentiment_alt.path),
        ]
    )
    assert stages(postgres_url) == {1: "production", 2: "none", 3: "none", 4: "none"}

    targets = [2, 3, 4, 2, 3, 4]
    gate = tmp_path / "go"
    procs = [cli.start_gated(["models", "promote", "sentiment", str(v)], gate) for v in targets]
    results: list[tuple[int, int, str, str]] = []
    try:
        wait_for(
            lambda: (
                len(list(tmp_path.glob("go.ready.*"))) == len(procs)
                or any(p.poll() is not None for p in procs)
            ),
            CLI_TIMEOUT_S,
            "every promoting process to start up",
        )
        gate.touch()
        for target, proc in zip(targets, procs, strict=True):
            out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
            results.append((target, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    failed = [r for r in results if r[1] != 0]
    assert not failed, f"promotions failed: {failed}"
    for target, _, out, _ in results:
        assert f"sentiment v{target} is now production" in out, out

    rows = registry_rows(postgres_url)
    production = [v for v, row in rows.items() if row.stage == "production"]
    assert len(production) == 1, rows
    assert rows[1].stage == "archived", rows
    for v in (2, 3, 4):
        assert rows[v].promoted_at is not None, rows  # every promotion did happen...
        assert rows[v].stage in ("production", "archived"), rows  # ...and only one stayed
    latest = max((row.promoted_at, v) for v, row in rows.items() if row.promoted_at)[1]
    assert production == [latest], f"production is v{production}, last promoted v{latest}"
