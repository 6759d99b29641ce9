"""Running `predictd serve` as a real subprocess, and asserting on what reached PostgreSQL.

``ServerPool`` starts servers, remembers every process it started, and kills whatever is still
running on ``close()`` (call it in teardown). Each server's stdout/stderr goes to a log file
whose tail is put into assertion messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType

import asyncpg
import httpx
from sqlalchemy.engine import make_url

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 6000
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')  # one label="value" in a sample line


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pg_dsn(url: str) -> str:
    """A URL asyncpg accepts (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_name(url: str) -> str:
    name = make_url(url).database
    assert name, f"no database in {url}"
    return name


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    spool_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout_s: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout_s)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log>"
        return text[-chars:]

    def describe(self) -> str:
        return (
            f"predictd pid {self.proc.pid} (exit {self.proc.poll()}), log tail:\n{self.log_tail()}"
        )

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    raise AssertionError(f"server exited during startup\n{self.describe()}")
                try:
                    if client.get("/health").status_code == 200 and self.phase(client) != (
                        "starting"
                    ):
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"server not healthy after {timeout_s} s\n{self.describe()}")

    @staticmethod
    def phase(client: httpx.Client) -> str:
        """starting | serving | draining, from /ready's server check."""
        detail: str = client.get("/ready").json()["checks"]["server"]["detail"]
        return detail

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code (kills and fails if it does not stop)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"server ignored SIGTERM for {timeout_s} s\n{self.describe()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL to the server and whatever it started (workers): no shutdown code runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """Sum of a Prometheus series' samples (all label sets) from /metrics; with
        ``labels``, only the samples whose labels include all of those."""
        with self.client() as client:
            response = client.get("/metrics")
        response.raise_for_status()
        wanted = dict(labels or {})
        total, seen = 0.0, False
        for line in response.text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{", 1)[0] != name:
                continue
            if wanted:
                found = dict(_LABEL.findall(series.partition("{")[2]))
                if any(found.get(k) != v for k, v in wanted.items()):
                    continue
            total += float(value)
            seen = True
        if not seen:
            labelled = f"{name}{wanted}" if wanted else name
            raise AssertionError(f"metric {labelled} not exposed")
        return total


@dataclass
class ServerPool:
    """Starts `predictd serve` processes; ``close()`` kills any still running."""

    root: Path
    artifact: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(
        self,
        database_url: str,
        *,
        spool_dir: Path,
        durability: str = "process",
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        model: Path | EllipsisType | None = ...,
        wrap: Sequence[str] = (),
        args: Sequence[str] = (),
        launcher: Sequence[str] | None = None,
    ) -> ServerProcess:
        """Start one server. ``model``: the artifact given with ``--model`` (default: the
        pool's); ``None`` starts it without ``--model``, serving only what the registry says.
        ``wrap``: a command the server runs under (strace, unshare), ending in its argv;
        ``args``: more `serve` options (``--workers``); ``launcher``: another `predictd`
        (an installed wheel's) instead of this interpreter's."""
        index = len(self.started)
        cwd = self.root / f"cwd{index}"
        cwd.mkdir(parents=True, exist_ok=True)
        port = free_port()
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PREDICTD_")
            and key not in ("DATABASE_URL", "REDIS_URL")
            and not (launcher is not None and key in ("PYTHONPATH", "VIRTUAL_ENV"))
        }
        environment.update(
            {
                "DATABASE_URL": database_url,
                "PREDICTD_SPOOL_DIR": str(spool_dir),
                "PREDICTD_ARTIFACT_DIR": str(self.root / "artifacts"),
                "PREDICTD_AUTO_MIGRATE": "true",
                "PREDICTD_DB_CONNECT_TIMEOUT_S": "1",
                "PREDICTD_RECORD_FLUSH_MS": "5",
                # Short back-off so shipping resumes soon after the link comes back.
                "PREDICTD_RECORD_RETRY_MAX_S": "1",
                "PREDICTD_LOG_FORMAT": "text",
                "PREDICTD_DURABILITY": durability,
                "PREDICTD_AUTH": "off",  # bound to 127.0.0.1
                "PREDICTD_SHUTDOWN_DELAY_S": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        environment.update(env or {})
        log_path = self.root / f"server{index}.log"
        command = [
            *wrap,
            *(launcher or (sys.executable, "-m", "predictd")),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if model is not None:
            command += ["--model", str(self.artifact if model is ... else model)]
        command += args
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so close() reaches workers
            )
        server = ServerProcess(proc, port, log_path, spool_dir)
        self.started.append(server)
        if wait:
            server.wait_healthy()
        return server

    def close(self) -> None:
        for server in self.started:
            with contextlib.suppress(ProcessLookupError):  # workers of --workers N too
                os.killpg(server.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # a kernel-level hang
                server.proc.wait(STOP_TIMEOUT_S)

    def report(self) -> str:
        return "\n\n".join(s.describe() for s in self.started)


# -- what reached the database ----------------------------------------------------------


async def _id_counts(url: str, ids: list[str]) -> Counter[str]:
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.predictions') IS NOT NULL")
        if not exists:
            return Counter({i: 0 for i in ids})
        rows = await conn.fetch(
            "SELECT id::text AS id, count(*) AS n FROM predictions "
            "WHERE id = ANY($1::uuid[]) GROUP BY id",
            ids,
        )
    finally:
        await conn.close()
    found = {str(r["id"]): int(r["n"]) for r in rows}
    return Counter({i: found.get(i, 0) for i in ids})


def id_counts(url: str, ids: Iterable[str | uuid.UUID]) -> Counter[str]:
    """Rows per prediction id, read straight from PostgreSQL (use the DIRECT url)."""
    wanted = [str(i) for i in ids]
    return asyncio.run(_id_counts(url, wanted))


def count_rows(url: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(pg_dsn(url), timeout=5)
        try:
            if not await conn.fetchval("SELECT to_regclass('public.predictions') IS NOT NULL"):
                return 0
            n: int = await conn.fetchval("SELECT count(*) FROM predictions")
            return n
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_for(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    details: Callable[[], str] = lambda: "",
    interval_s: float = 0.2,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    if condition():
        return
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{details()}")


def wait_all_recorded(
    url: str,
    ids: Iterable[str | uuid.UUID],
    timeout_s: float = 30.0,
    details: Callable[[], str] = lambda: "",
) -> Counter[str]:
    """Wait until every id has a row; then assert each has exactly one. Returns the counts."""
    wanted = [str(i) for i in ids]
    counts: Counter[str] = Counter()

    def done() -> bool:
        nonlocal counts
        counts = id_counts(url, wanted)
        return all(counts[i] >= 1 for i in wanted)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done():
        time.sleep(0.25)
    missing = [i for i in wanted if counts[i] == 0]
    duplicated = {i: n for i, n in counts.items() if n > 1}
    assert not missing, (
        f"{len(missing)} of {len(wanted)} ids missing after {timeout_s} s "
        f"(e.g. {missing[:3]})\n{details()}"
    )
    assert not duplicated, f"ids recorded more than once: {duplicated}\n{details()}"
    return counts


def predict_many(client: httpx.Client, count: int, prefix: str = "fault") -> list[str]:
    """Send ``count`` predictions one by one; every one must be answered 200."""
    ids: list[str] = []
    for n in range(count):
        response = client.post("/predict", json={"text": f"{prefix} {n}: I love this product"})
        assert response.status_code == 200, response.text
        ids.append(response.json()["prediction_id"])
    return ids
