"""Part A: the servers under test, started as subprocesses and driven by loadgen.py."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.environment import (
    CpuTimes,
    Postgres,
    cpu_seconds,
    postgres_cpu_seconds,
    wait_until_quiet,
)

REPO = Path(__file__).resolve().parent.parent
LOADGEN = REPO / "benchmarks" / "loadgen.py"


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int
    duration: float
    warmup: float
    bodies: Path
    quiet_threshold: float = 20.0  # wait for the machine to be under this % busy first...
    quiet_max_wait: float = 120.0  # ...but no longer than this


@dataclass
class TargetResult:
    name: str
    description: str
    load: dict[str, Any]
    expect_rows: bool
    round: int = 1
    rows: int = 0
    drain_s: float = 0.0
    server_cpu_pct: float = 0.0
    server_cpu_s: float = 0.0
    postgres_cpu_pct: float = 0.0
    loadgen_cpu_pct: float = 0.0
    machine_busy_pct: float = 0.0  # of all cores, steal excluded
    steal_pct: float = 0.0  # of one core: vCPU time the hypervisor gave to other guests
    cores: int = 1
    background_busy_pct: float = 0.0  # machine busy % in the second before the load started
    waited_quiet_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.round == 1 else f"{self.name} #{self.round}"

    @property
    def rps(self) -> float:
        return float(self.load["rps"])

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU per answer: unlike req/s, not inflated by CPU other guests steal."""
        return 1000 * self.server_cpu_s / self.ok if self.ok else float("nan")

    @property
    def ok(self) -> int:
        return int(self.load["ok_total"])

    @property
    def other_cpu_pct(self) -> float:
        """CPU (% of one core) used during the load by anything but server, PostgreSQL and
        load generator: other work on the machine competing with the run."""
        ours = self.server_cpu_pct + self.postgres_cpu_pct + self.loadgen_cpu_pct
        return max(0.0, self.machine_busy_pct * self.cores - ours)

    @property
    def rows_lost(self) -> int:
        """2xx answers without a row (negative: rows without an answer)."""
        return (self.ok if self.expect_rows else 0) - self.rows


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server subprocess with its output in a log file; always terminated on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [part.replace("{port}", str(self.port)) for part in argv],
            env=env,
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the suite does not hit it half-way
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, path: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.base + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGTERM (graceful: predictd flushes its recorder), SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREDICTD_", "REFAPP_")) and k != "DATABASE_URL"
    }


def predictd_server(
    name: str, database_url: str, model: Path, workdir: Path, *, record: bool
) -> Server:
    env = _clean_env() | {
        "DATABASE_URL": database_url,
        "PREDICTD_AUTO_MIGRATE": "true",
        "PREDICTD_SPOOL_DIR": str(workdir / "spool"),
        "PREDICTD_ARTIFACT_DIR": str(workdir / "artifacts"),
        "PREDICTD_LOG_LEVEL": "WARNING",
        "PREDICTD_RECORD": "true" if record else "false",
    }
    argv = [sys.executable, "-m", "predictd", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    return Server(name, [*argv, "--model", str(model)], env, workdir)


def reference_server(name: str, database_url: str, model: Path, workdir: Path) -> Server:
    env = _clean_env() | {
        "REFAPP_DATABASE_URL": database_url,
        "REFAPP_MODEL_PATH": str(model),
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", "uvicorn", "benchmarks.reference_app:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
    argv += ["--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "30"]
    return Server(name, argv, env, workdir)


def run_loadgen(url: str, load: LoadSettings) -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), "--url", url, "--bodies", str(load.bodies)]
    argv += ["--concurrency", str(load.concurrency)]
    argv += ["--duration", str(load.duration), "--warmup", str(load.warmup)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=load.warmup + load.duration + 180
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_rows(pg: Postgres, url: str, want: int, stall_s: float = 10.0) -> float:
    """Wait until the table holds ``want`` rows or stops growing; returns seconds waited."""
    started = last_change = time.monotonic()
    last = -1
    while True:
        rows = pg.count_rows(url)
        now = time.monotonic()
        if rows >= want:
            return now - started
        if rows != last:
            last, last_change = rows, now
        elif now - last_change > stall_s:
            return now - started
        time.sleep(0.05)


def bench_target(
    server: Server,
    description: str,
    pg: Postgres,
    database_url: str,
    load: LoadSettings,
    *,
    ready_path: str,
    expect_rows: bool,
) -> TargetResult:
    try:
        server.wait_ready(ready_path)
        waited, background = wait_until_quiet(load.quiet_threshold, load.quiet_max_wait)
        cpu0, pg0, busy0 = cpu_seconds(server.proc.pid), postgres_cpu_seconds(), CpuTimes.now()
        t0, children0 = time.monotonic(), _children_cpu()
        stats = run_loadgen(server.base + "/predict", load)
        elapsed, loadgen_cpu = time.monotonic() - t0, _children_cpu() - children0
        cpu1, pg1, busy1 = cpu_seconds(server.proc.pid), postgres_cpu_seconds(), CpuTimes.now()
        result = TargetResult(server.name, description, stats, expect_rows)
        result.cores = os.cpu_count() or 1
        result.background_busy_pct, result.waited_quiet_s = background, waited
        result.server_cpu_s = cpu1 - cpu0
        result.server_cpu_pct = 100 * result.server_cpu_s / elapsed
        result.loadgen_cpu_pct = 100 * loadgen_cpu / elapsed  # its start-up included
        result.postgres_cpu_pct = 100 * (pg1 - pg0) / elapsed
        result.machine_busy_pct = busy1.busy_pct_since(busy0)
        result.steal_pct = busy1.steal_pct_since(busy0) * result.cores
        if expect_rows:
            result.drain_s = wait_for_rows(pg, database_url, result.ok)
    finally:
        code = server.stop()
    if code not in (0, -signal.SIGTERM):
        result.notes.append(f"server exit status {code}")
    result.rows = pg.count_rows(database_url)
    if result.rows_lost:
        result.notes.append(f"log tail:\n{server.log_tail(10)}")
    return result
