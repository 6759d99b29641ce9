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
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from benchmarks.environment import (
    CpuTimes,
    Postgres,
    postgres_cpu_seconds,
    tree_cpu_seconds,
    wait_until_quiet,
)

REPO = Path(__file__).resolve().parent.parent
LOADGEN = REPO / "benchmarks" / "loadgen.py"
PEER_VENVS = REPO / "benchmarks" / ".venvs"  # made by scripts/peer_venvs.sh
PEERS_DIR = REPO / "benchmarks" / "peers"  # code run in those venvs
MLSERVER_MODEL = "sentiment"


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int
    duration: float
    warmup: float
    bodies: Path
    quiet_threshold: float = 20.0  # wait for the machine to be under this % busy first...
    quiet_max_wait: float = 120.0  # ...but no longer than this
    rate: float | None = None  # open loop at this many req/s (concurrency: most connections)


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
    # With track_shadow: rows counts production rows only, shadow rows are counted apart,
    # and the server's shadow counters are read from /metrics once its shadow work is done.
    shadow_rows: int = 0
    shadow_predictions: int = 0  # predictd_shadow_predictions_total
    shadow_dropped: int = 0  # predictd_shadow_dropped_total
    shadow_drain_s: float = 0.0  # after the load, until shadow work had caught up
    items_per_request: int = 1  # /batch: predictions (rows) per 2xx answer

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
        return (self.ok * self.items_per_request if self.expect_rows else 0) - self.rows


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class Server:
    """A server subprocess with its output in a log file; always terminated on exit."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
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
        if not k.startswith(("PREDICTD_", "REFAPP_", "PEER_", "BENTOML_", "MLSERVER_"))
        and k not in ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONHOME")
    }


def predictd_server(
    name: str,
    database_url: str,
    model: Path | None,
    workdir: Path,
    *,
    record: bool,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """``predictd serve``; without ``model`` it serves what the database's registry holds
    (``extra_env`` then names it, e.g. ``PREDICTD_MODEL_NAME``)."""
    env = (
        _clean_env()
        | {
            "DATABASE_URL": database_url,
            "PREDICTD_AUTO_MIGRATE": "true",
            "PREDICTD_SPOOL_DIR": str(workdir / "spool"),
            "PREDICTD_ARTIFACT_DIR": str(workdir / "artifacts"),
            "PREDICTD_LOG_LEVEL": "WARNING",
            "PREDICTD_RECORD": "true" if record else "false",
            "PREDICTD_AUTH": "off",  # bound to 127.0.0.1
        }
        | (extra_env or {})
    )
    argv = [sys.executable, "-m", "predictd", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    if model is not None:
        argv += ["--model", str(model)]
    return Server(name, argv, env, workdir)


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


def inline_server(name: str, model: Path, workdir: Path) -> Server:
    env = _clean_env() | {"PEER_MODEL_PATH": str(model), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "uvicorn", "benchmarks.inline_app:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
    argv += ["--no-access-log", "--log-level", "warning"]
    return Server(name, argv, env, workdir)


class PeerUnavailable(Exception):
    """A peer server that cannot run here; ``str()`` says why, on one line."""


@dataclass(frozen=True)
class PeerVenv:
    """A peer's virtualenv (``scripts/peer_venvs.sh``) and the versions its stamp lists."""

    path: Path
    versions: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def env(self) -> dict[str, str]:
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return _clean_env() | {"VIRTUAL_ENV": str(self.path), "PATH": path}


def peer_venv(name: str) -> PeerVenv:
    """``name``'s virtualenv, checked: installed, and with .venv's scikit-learn and skops
    (the model must load as it does in predictd). Raises PeerUnavailable."""
    venv = PEER_VENVS / name
    stamp = venv / "peer-stamp.txt"
    hint = f"run scripts/peer_venvs.sh {name}"
    if not (venv / "bin" / "python").exists() or not stamp.exists():
        raise PeerUnavailable(f"not installed: no {venv.relative_to(REPO)} ({hint})")
    versions = dict(req.split("==", 1) for req in stamp.read_text().split() if "==" in req)
    for package in ("scikit-learn", "skops"):
        there, here = versions.get(package, "-"), metadata.version(package)
        if there != here:
            raise PeerUnavailable(
                f"not installed: {package} {there} in {venv.relative_to(REPO)}, {here} in "
                f".venv ({hint})"
            )
    return PeerVenv(venv, versions)


def bentoml_server(name: str, model: Path, workdir: Path, venv: PeerVenv) -> Server:
    """``bentoml serve`` of benchmarks/peers/bentoml_service.py (one worker)."""
    env = venv.env() | {
        "PEER_MODEL_PATH": str(model),
        "BENTOML_HOME": str(workdir / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    argv = [str(venv.bin / "bentoml"), "serve", "bentoml_service:Sentiment"]
    argv += ["--working-dir", str(PEERS_DIR), "--host", "127.0.0.1", "--port", "{port}"]
    return Server(name, argv, env, workdir)


def mlserver_server(name: str, model: Path, workdir: Path, venv: PeerVenv) -> Server:
    """``mlserver start`` on a model folder written here: the settings and the model's
    settings (benchmarks/peers/mlserver_runtime.py's runtime, the skops file as its uri).
    Inference in the server's own process (``parallel_workers`` 0)."""
    models = workdir / "mlserver-models"
    (models / MLSERVER_MODEL).mkdir(parents=True, exist_ok=True)
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
        "debug": False,  # the default, True, logs every request
    }
    model_settings = {
        "name": MLSERVER_MODEL,
        "implementation": "mlserver_runtime.SkopsSentiment",
        "parameters": {"uri": str(model)},
    }
    (models / "settings.json").write_text(json.dumps(settings, indent=2))
    (models / MLSERVER_MODEL / "model-settings.json").write_text(
        json.dumps(model_settings, indent=2)
    )
    env = venv.env() | {"PYTHONPATH": str(PEERS_DIR)}
    argv = [str(venv.bin / "mlserver"), "start", str(models)]
    return Server(name, argv, env, workdir, port=http_port)


def run_loadgen(url: str, load: LoadSettings) -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), "--url", url, "--bodies", str(load.bodies)]
    argv += ["--concurrency", str(load.concurrency)]
    if load.rate is not None:
        argv += ["--rate", f"{load.rate:.3f}"]
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


def wait_for_rows(
    pg: Postgres,
    url: str,
    want: int,
    stall_s: float = 10.0,
    count: Callable[[], int] | None = None,
) -> float:
    """Wait until the table holds ``want`` rows (``count()`` reaches ``want``) or stops
    growing; returns seconds waited."""
    started = last_change = time.monotonic()
    last = -1
    while True:
        rows = count() if count is not None else pg.count_rows(url)
        now = time.monotonic()
        if rows >= want:
            return now - started
        if rows != last:
            last, last_change = rows, now
        elif now - last_change > stall_s:
            return now - started
        time.sleep(0.05)


def scrape_counters(base: str, names: tuple[str, ...]) -> dict[str, float]:
    """The named Prometheus counters from ``base``/metrics, summed over their label sets."""
    text = httpx.get(base + "/metrics", timeout=10).text
    found = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        metric, _, value = line.rpartition(" ")
        name = metric.split("{", 1)[0]
        if name in found:
            found[name] += float(value)
    return found


def _production_rows(pg: Postgres, url: str) -> int:
    return sum(n for v, n in pg.count_variants(url).items() if v != "shadow")


SHADOW_COUNTERS = ("predictd_shadow_predictions_total", "predictd_shadow_dropped_total")


def _wait_for_shadow(server: Server, pg: Postgres, url: str, answers: int) -> float:
    """After the load: wait until every answer's shadow work is done (predicted and recorded,
    or dropped) or stops progressing; returns seconds waited."""
    started = time.monotonic()

    def settled() -> int:
        got = scrape_counters(server.base, SHADOW_COUNTERS)
        done = int(got["predictd_shadow_predictions_total"])
        return min(done, pg.count_variants(url).get("shadow", 0)) + int(
            got["predictd_shadow_dropped_total"]
        )

    wait_for_rows(pg, url, answers, stall_s=5.0, count=settled)
    return time.monotonic() - started


def bench_target(
    server: Server,
    description: str,
    pg: Postgres,
    database_url: str,
    load: LoadSettings,
    *,
    ready_path: str,
    expect_rows: bool,
    track_shadow: bool = False,
    shadow_on: bool = False,
    path: str = "/predict",
    items_per_request: int = 1,
) -> TargetResult:
    """One load run against ``server``. ``track_shadow``: count production and shadow rows
    apart and read the shadow counters; ``shadow_on``: also wait for the shadow work."""
    try:
        server.wait_ready(ready_path)
        waited, background = wait_until_quiet(load.quiet_threshold, load.quiet_max_wait)
        cpu0, pg0 = tree_cpu_seconds(server.proc.pid), postgres_cpu_seconds()
        busy0 = CpuTimes.now()
        t0, children0 = time.monotonic(), _children_cpu()
        stats = run_loadgen(server.base + path, load)
        elapsed, loadgen_cpu = time.monotonic() - t0, _children_cpu() - children0
        cpu1, pg1 = tree_cpu_seconds(server.proc.pid), postgres_cpu_seconds()
        busy1 = CpuTimes.now()
        result = TargetResult(server.name, description, stats, expect_rows)
        result.items_per_request = items_per_request
        result.cores = os.cpu_count() or 1
        result.background_busy_pct, result.waited_quiet_s = background, waited
        result.server_cpu_s = cpu1 - cpu0
        result.server_cpu_pct = 100 * result.server_cpu_s / elapsed
        result.loadgen_cpu_pct = 100 * loadgen_cpu / elapsed  # its start-up included
        result.postgres_cpu_pct = 100 * (pg1 - pg0) / elapsed
        result.machine_busy_pct = busy1.busy_pct_since(busy0)
        result.steal_pct = busy1.steal_pct_since(busy0) * result.cores
        if expect_rows:
            count = (lambda: _production_rows(pg, database_url)) if track_shadow else None
            want = result.ok * items_per_request
            result.drain_s = wait_for_rows(pg, database_url, want, count=count)
        if shadow_on:
            result.shadow_drain_s = _wait_for_shadow(server, pg, database_url, result.ok)
        if track_shadow:
            counters = scrape_counters(server.base, SHADOW_COUNTERS)
            result.shadow_predictions = int(counters["predictd_shadow_predictions_total"])
            result.shadow_dropped = int(counters["predictd_shadow_dropped_total"])
    finally:
        code = server.stop()
    if code not in (0, -signal.SIGTERM):
        result.notes.append(f"server exit status {code}")
    if track_shadow:
        variants = pg.count_variants(database_url)
        result.shadow_rows = variants.pop("shadow", 0)
        result.rows = sum(variants.values())
    else:
        result.rows = pg.count_rows(database_url)
    if result.rows_lost:
        result.notes.append(f"log tail:\n{server.log_tail(10)}")
    return result
