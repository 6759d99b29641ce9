"""Part A: the servers under test, started as subprocesses and driven by a load generator:
wrk (benchmarks/wrk_bodies.lua) for closed-loop runs when it is installed, else (and always
for open-loop runs) benchmarks/loadgen.py."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
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
WRK_SCRIPT = REPO / "benchmarks" / "wrk_bodies.lua"
WRK_TIMEOUT_S = 30  # wrk's --timeout: its latency histogram holds answers up to this slow
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
    generator: str = "python"  # closed loop: "wrk" or "python" (loadgen.py); open loop: python


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
    # 2xx answers on the load's path as the server itself counted them (predictd's /metrics),
    # read once they stopped changing after the load; None: not read (no /metrics).
    server_ok: int | None = None

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
    def in_flight(self) -> int:
        """Requests the load generator sent and left unanswered when it stopped (wrk does
        not wait for them; the server may still answer and record them). 0 for loadgen.py."""
        return int(self.load.get("in_flight", 0))

    @property
    def answers(self) -> int:
        """2xx answers the rows are checked against: the server's own count when it was
        read (it includes answers to requests the load generator left in flight), else the
        load generator's."""
        return self.ok if self.server_ok is None else max(self.ok, self.server_ok)

    @property
    def rows_in_flight(self) -> int:
        """Rows above the load generator's 2xx count that requests left in flight explain
        (only without the server's own count): at most in_flight x items."""
        if not self.expect_rows or self.server_ok is not None:
            return 0
        extra = self.rows - self.ok * self.items_per_request
        return extra if 0 < extra <= self.in_flight * self.items_per_request else 0

    @property
    def rows_lost(self) -> int:
        """2xx answers without a row (negative: rows without an answer)."""
        want = self.answers * self.items_per_request if self.expect_rows else 0
        return want - self.rows + self.rows_in_flight

    @property
    def answers_unaccounted(self) -> int:
        """The server's 2xx count minus the load generator's, beyond what the requests left
        in flight explain (0 when the server's count was not read, or agrees)."""
        if self.server_ok is None:
            return 0
        extra = self.server_ok - self.ok
        return 0 if 0 <= extra <= self.in_flight else extra


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
                # Its own session: the group takes worker processes along (granian's).
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
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


def _predictd_env(
    database_url: str, workdir: Path, *, record: bool, extra_env: dict[str, str] | None
) -> dict[str, str]:
    return (
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
    env = _predictd_env(database_url, workdir, record=record, extra_env=extra_env)
    argv = [sys.executable, "-m", "predictd", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    if model is not None:
        argv += ["--model", str(model)]
    return Server(name, argv, env, workdir)


def granian_bin() -> Path | None:
    """.venv's ``granian`` (the ``bench`` extra), None when it is not installed."""
    path = Path(sys.executable).parent / "granian"
    return path if path.exists() else None


def predictd_granian_server(
    name: str,
    database_url: str,
    model: Path,
    workdir: Path,
    *,
    record: bool,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """The app ``predictd serve`` runs, built by ``predictd.app:create_app_from_env`` (the
    factory for external servers: settings from the environment) under granian instead of
    uvicorn: one worker process (forked by granian's main process), single-threaded Rust
    runtime, uvloop."""
    granian = granian_bin()
    if granian is None:
        raise RuntimeError("granian is not installed in .venv (pip install -e '.[bench]')")
    env = _predictd_env(database_url, workdir, record=record, extra_env=extra_env)
    env["PREDICTD_MODEL_PATH"] = str(model.resolve())
    argv = [str(granian), "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
    argv += ["--port", "{port}", "--workers", "1", "--loop", "uvloop", "--runtime-mode", "st"]
    argv += ["--no-ws", "--log-level", "warning", "predictd.app:create_app_from_env"]
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


def wrk_bin() -> str | None:
    """The wrk executable (Debian package ``wrk``), None when it is not installed."""
    found = shutil.which("wrk")
    if found is None and Path("/usr/bin/wrk").exists():
        found = "/usr/bin/wrk"
    return found


@functools.cache
def wrk_version() -> str:
    """``wrk -v``'s first words, e.g. "wrk debian/4.1.0-3+b2 [epoll]" ("-" without wrk)."""
    wrk = wrk_bin()
    if wrk is None:
        return "-"
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    line = (done.stdout or done.stderr).strip().splitlines()[:1]
    return line[0].split(" Copyright")[0].strip() if line else "wrk"


def wrk_seconds(seconds: float) -> int:
    """wrk runs whole seconds (-d): ``seconds`` rounded, at least 1."""
    return max(1, math.floor(seconds + 0.5))


def _wrk_once(
    wrk: str, url: str, load: LoadSettings, seconds: int, first: int
) -> tuple[dict[str, Any], float, float]:
    """One wrk run; (its JSON line, wall seconds, CPU seconds)."""
    argv = [wrk, "-t1", "-c", str(load.concurrency), "-d", f"{seconds}s"]
    argv += ["--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(WRK_SCRIPT), url, "--"]
    argv += [str(load.bodies), str(first), str(load.concurrency), "1"]
    t0, cpu0 = time.monotonic(), _children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    wall, cpu = time.monotonic() - t0, _children_cpu() - cpu0
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        output = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{output}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result, wall, cpu


def run_wrk(url: str, load: LoadSettings) -> dict[str, Any]:
    """Closed loop with wrk (one thread, ``load.concurrency`` connections), the same JSON as
    loadgen.py: a warm-up run whose figures are discarded (its answers still count in
    ``ok_total``, which rows are checked against), then the measured run, which starts at the
    body after the last one the warm-up sent. ``in_flight``: requests sent and left
    unanswered when a run stopped (both runs), which the server may still answer and record."""
    wrk = wrk_bin()
    if wrk is None:
        raise RuntimeError("wrk is not installed (scripts/ensure_bench_tools.sh)")
    if load.rate is not None:
        raise ValueError("wrk runs the closed loop only; open loop goes through loadgen.py")
    runs: list[dict[str, Any]] = []
    wall = cpu = 0.0
    first = 0
    warmup = [wrk_seconds(load.warmup)] if load.warmup > 0 else []
    for seconds in [*warmup, wrk_seconds(load.duration)]:
        result, run_wall, run_cpu = _wrk_once(wrk, url, load, seconds, first)
        runs.append(result)
        wall, cpu, first = wall + run_wall, cpu + run_cpu, int(result["next_body"])
    measured = runs[-1]
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in runs:
        statuses.update({str(k): int(v) for k, v in r["statuses"].items()})
        errors.update({str(k): int(v) for k, v in r["errors"].items()})
    total = dict.fromkeys(("ok_total", "non_2xx_total", "errors_total", "sent", "in_flight"), 0)
    for key in total:
        total[key] = sum(int(r[key]) for r in runs)
    merged = measured | total
    merged |= {
        "url": url,
        "loadgen": "wrk",
        "wrk": wrk_version(),
        "warmup_s": float(runs[0]["duration_s"]) if warmup else 0.0,
        "elapsed_s": wall,
        "statuses": dict(sorted(statuses.items())),
        "errors": dict(errors),
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / wall if wall else 0.0,
        "timeouts": sum(int(r["timeouts"]) for r in runs),
    }
    return merged


def run_python_loadgen(url: str, load: LoadSettings) -> dict[str, Any]:
    """benchmarks/loadgen.py in its own process (closed or, with ``load.rate``, open loop)."""
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
    result["loadgen"] = "python"
    return result


def run_loadgen(url: str, load: LoadSettings) -> dict[str, Any]:
    """The load run ``load`` asks for: wrk for a closed loop with ``generator`` "wrk",
    loadgen.py otherwise. Either returns loadgen.py's JSON keys."""
    if load.rate is None and load.generator == "wrk":
        return run_wrk(url, load)
    return run_python_loadgen(url, load)


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


_SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
ANSWERS_COUNTER = "predictd_http_requests_total"


def scrape_answers(base: str, path: str) -> int:
    """2xx answers the server counted on route ``path`` (``predictd_http_requests_total``
    with ``endpoint`` = the route's path and a 2xx ``status``), from ``base``/metrics."""
    text = httpx.get(base + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None or match[1] != ANSWERS_COUNTER:
            continue
        labels = dict(_LABEL.findall(match[2] or ""))
        if labels.get("endpoint") == path and labels.get("status", "").startswith("2"):
            total += float(match[3])
    return int(total)


def settled_answers(base: str, path: str, quiet_s: float = 0.5, max_wait: float = 15.0) -> int:
    """scrape_answers once it has not changed for ``quiet_s`` (requests the load generator
    left in flight answered), or after ``max_wait``."""
    deadline = time.monotonic() + max_wait
    last, since = scrape_answers(base, path), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = scrape_answers(base, path)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


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
    count_answers: bool = False,
) -> TargetResult:
    """One load run against ``server``. ``track_shadow``: count production and shadow rows
    apart and read the shadow counters; ``shadow_on``: also wait for the shadow work;
    ``count_answers``: read the server's own count of 2xx answers on ``path`` from its
    /metrics (predictd) once it settles, and check the rows against that."""
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
        if count_answers:
            result.server_ok = settled_answers(server.base, path)
            if result.answers_unaccounted:
                result.notes.append(
                    f"the server counted {result.server_ok} 2xx answers on {path}, the load "
                    f"generator {result.ok} with {result.in_flight} left in flight"
                )
        if expect_rows:
            count = (lambda: _production_rows(pg, database_url)) if track_shadow else None
            want = result.answers * items_per_request
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


def rows_check(runs: list[TargetResult]) -> tuple[str, bool]:
    """The "rows lost" verdict over ``runs`` (one target's): its text, and whether every run
    has one row per 2xx answer (x items). Rows are checked against the server's own count of
    2xx answers when it was read; otherwise against the load generator's, where rows above it
    are accepted up to the requests it left in flight (wrk), never rows below it."""
    lost = sum(r.rows_lost for r in runs)
    rows = sum(r.rows for r in runs)
    met = all(r.rows_lost == 0 and r.answers_unaccounted == 0 for r in runs)
    if not runs[0].expect_rows:
        return f"{rows} rows", met
    ok = sum(r.ok for r in runs)
    answers = sum(r.answers for r in runs)
    items = runs[0].items_per_request
    times = f" x {items}" if items != 1 else ""
    if any(r.server_ok is not None for r in runs):
        text = f"{lost} ({rows} rows / {answers} 2xx{times} counted by the server"
        text += f", {ok} seen by the load generator" if ok != answers else ""
    else:
        text = f"{lost} ({rows} rows / {ok} 2xx{times}"
    extra = sum(r.rows_in_flight for r in runs)
    if extra:
        text += f"; {-(-extra // items)} in flight when the load stopped"
        text += f" ({extra} rows)" if items != 1 else ""
    unaccounted = sum(abs(r.answers_unaccounted) for r in runs)
    if unaccounted:
        text += f"; the server's 2xx count is off the load generator's by {unaccounted}"
    return text + ")", met


def load_text(generator: str, concurrency: int, warmup: float, duration: float) -> str:
    """How a part's closed-loop load was generated, for the report: a sentence's start."""
    if generator != "wrk":
        return (
            "Closed-loop load from `benchmarks/loadgen.py` (httpx.AsyncClient on uvloop, in "
            f"its own process): {concurrency} connections, {warmup:g} s warm-up, then "
            f"{duration:g} s measured"
        )
    warm = f"a {wrk_seconds(warmup)} s warm-up run whose figures are discarded, then "
    return (
        f"Closed-loop load from wrk ({wrk_version()}, in its own process; `wrk -t1 "
        f"-c{concurrency}` with `benchmarks/wrk_bodies.lua`, which cycles through the request "
        f"bodies): {concurrency} connections, {warm if warmup > 0 else ''}"
        f"a {wrk_seconds(duration)} s measured run (wrk runs whole seconds)"
    )


def load_notes(generator: str) -> list[str]:
    """What a reader must know about the load generator's figures: paragraphs (or none)."""
    if generator != "wrk":
        return []
    return [
        "Latency percentiles are wrk's: they cover every answer and include wrk's correction "
        "for coordinated omission (samples filled in below each answer slower than twice the "
        "mean interval), so they do not compare one for one with loadgen.py's. wrk stops "
        "without waiting for the requests in flight, which the server may still answer and "
        "record: predictd's rows are checked against the server's own count of 2xx answers on "
        "the path (`predictd_http_requests_total` from /metrics, read once it stops "
        "changing), and must equal it; a server without that count (the reference app) may "
        "have more rows than the 2xx wrk saw by at most the requests wrk left in flight (the "
        "verdict says how many), never fewer.",
        "",
    ]
