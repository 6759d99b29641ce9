"""Prometheus metrics across ``serve --workers N``: prometheus-client's multiprocess mode.

Each worker writes its samples to files in one shared directory (PROMETHEUS_MULTIPROC_DIR, set
by ``serve`` before the workers start); a scrape, whichever worker answers it, adds them all
up. Gauges that one process would read at scrape time are set by every worker once a second
instead, and the live gauges of workers that died are forgotten at the next scrape.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID = re.compile(r"_(\d+)\.db$")


def directory() -> Path | None:
    """The shared directory when this process is one of several workers."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """The directory the workers about to start will share: the operator's
    PROMETHEUS_MULTIPROC_DIR, emptied of an earlier run's samples, or a temporary one."""
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="predictd-metrics-"))
        os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        if not given:
            os.environ.pop(ENV, None)
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_workers(path: Path) -> None:
    """Drop the live gauges (queue depth, spool bytes...) of processes that are gone."""
    for file in path.glob("gauge_live*.db"):
        found = _PID.search(file.name)
        if found and not _alive(int(found[1])):
            multiprocess.mark_process_dead(int(found[1]), str(path))  # type: ignore[no-untyped-call]


def collect(path: Path, own: Iterable[Collector] = ()) -> bytes:
    """Every worker's samples, added up, in the Prometheus text format; then ``own``, this
    process's collectors of values every worker reads alike (not added up)."""
    forget_dead_workers(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    for collector in own:
        registry.register(collector)
    return generate_latest(registry)
