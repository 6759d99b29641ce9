"""The machine and the PostgreSQL server the benchmarks run on, and throwaway databases."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_SETTINGS = ("shared_buffers", "synchronous_commit", "fsync", "max_connections")
PACKAGES: tuple[str, ...] = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools")
PACKAGES += ("sqlalchemy", "asyncpg", "psycopg2-binary", "httpx", "scikit-learn", "skops")
PACKAGES += ("granian",)


def _connect(url: str) -> Any:
    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    return conn


class Postgres:
    """Admin access to the server: create and drop the benchmark's databases."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def scalar(self, sql: str, url: str | None = None) -> Any:
        conn = _connect(url or self.admin_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
                return None if row is None else row[0]
        finally:
            conn.close()

    def execute(self, sql: str, url: str | None = None) -> None:
        conn = _connect(url or self.admin_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self, label: str) -> str:
        name = f"predictd_bench_{label}_{uuid.uuid4().hex[:8]}"
        self.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def count_rows(self, url: str, table: str = "predictions") -> int:
        exists = self.scalar(f"SELECT to_regclass('{table}') IS NOT NULL", url)
        return int(self.scalar(f"SELECT count(*) FROM {table}", url)) if exists else 0

    def count_variants(self, url: str) -> dict[str, int]:
        """predictd's rows per ``variant`` (production, canary, shadow)."""
        if not self.scalar("SELECT to_regclass('predictions') IS NOT NULL", url):
            return {}
        conn = _connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT variant, count(*) FROM predictions GROUP BY variant")
                return {str(v): int(n) for v, n in cur.fetchall()}
        finally:
            conn.close()

    def checkpoint(self) -> None:
        """Flush dirty buffers between runs so one target's WAL does not bill the next."""
        self.execute("CHECKPOINT")

    def drop_all(self) -> list[str]:
        dropped = []
        for name in self.created:
            try:
                self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
            except psycopg2.Error as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        self.created = [n for n in self.created if n not in dropped]
        return dropped


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    virtual: bool
    ram_gib: float
    os: str
    python: str
    postgres: str
    postgres_settings: dict[str, str]
    packages: dict[str, str]


def code_version(repo: Path) -> tuple[str, str]:
    """(git commit and whether src/ differs from it, digest of every file under src/):
    the digest is taken again at the end to notice code that changed during the run."""
    digest = hashlib.sha256()
    for path in sorted((repo / "src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(repo)).encode())
            digest.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        label = f"commit {head}" + (" with uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        label = "not a git checkout"
    return label, digest.hexdigest()[:12]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _is_virtual() -> bool:
    try:
        return " hypervisor" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def describe_machine(pg: Postgres) -> Machine:
    settings = {}
    for name in PG_SETTINGS:
        settings[name] = str(pg.scalar(f"SHOW {name}"))
    return Machine(
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 0,
        virtual=_is_virtual(),
        ram_gib=_ram_gib(),
        os=platform.platform(),
        python=platform.python_version(),
        postgres=str(pg.scalar("SHOW server_version")),
        postgres_settings=settings,
        packages={p: _version(p) for p in PACKAGES},
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process and of its live descendants: a server with the worker
    processes it started (BentoML's run in sessions of their own)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    used: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        used[int(entry.name)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += used.get(p, 0)
        todo += children.get(p, [])
    return total / ticks


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative jiffies of the whole machine, from /proc/stat."""

    busy: float  # user, nice, system, irq, softirq: work done by this machine
    steal: float  # time the hypervisor gave this VM's vCPUs to someone else
    total: float

    @classmethod
    def now(cls) -> CpuTimes:
        try:
            first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return cls(0.0, 0.0, 0.0)
        v = [float(x) for x in first] + [0.0] * 8
        idle = v[3] + v[4]  # idle + iowait
        steal = v[7]
        total = sum(v[:8])  # guest time is already counted in user
        return cls(total - idle - steal, steal, total)

    def busy_pct_since(self, before: CpuTimes) -> float:
        """Percent of all cores busy (100 = every core) between ``before`` and now."""
        total = self.total - before.total
        return 100 * (self.busy - before.busy) / total if total > 0 else 0.0

    def steal_pct_since(self, before: CpuTimes) -> float:
        total = self.total - before.total
        return 100 * (self.steal - before.steal) / total if total > 0 else 0.0


def busy_percent(seconds: float) -> float:
    """How busy the whole machine is over ``seconds`` (100 = every core), steal excluded."""
    before = CpuTimes.now()
    time.sleep(seconds)
    return CpuTimes.now().busy_pct_since(before)


def wait_until_quiet(threshold: float, max_wait: float) -> tuple[float, float]:
    """Wait (up to ``max_wait`` s) for a second in which the machine is under ``threshold``%
    busy, so other work on the box (test suites...) does not share the CPU with a run.
    Returns (seconds waited, busy % of the last second)."""
    started = time.monotonic()
    while True:
        busy = busy_percent(1.0)
        waited = time.monotonic() - started
        if busy < threshold or waited >= max_wait:
            return waited, busy


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by every process named postgres (the server and backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            total += cpu_seconds(int(entry.name))
    return total
