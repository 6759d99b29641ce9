"""A PostgreSQL primary and a streaming replica of it, made for one test with Debian's
PostgreSQL binaries (initdb, pg_basebackup, pg_ctl) on free ports, run as the `postgres` user,
removed afterwards. The shared server of the rest of the suite is not touched."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import services
from tests.support.server import free_port


@dataclass(frozen=True)
class Pair:
    primary_url: str
    replica_url: str
    replica_port: int
    replica_socket: Path


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_basebackup"))
    return Path(found[-1]).parent if found else None


def _as_postgres(*args: str | Path, timeout: float = 120) -> None:
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{args[0]}: {done.stdout}{done.stderr}"


def _wait_ready(bin_dir: Path, socket: Path, port: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [bin_dir / "pg_isready", "-h", str(socket), "-p", str(port)],
            capture_output=True, check=False,
        )  # fmt: skip
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"PostgreSQL on port {port} did not become ready")


@contextmanager
def primary_and_replica() -> Iterator[Pair]:
    bin_dir = _bin()
    if bin_dir is None or shutil.which("runuser") is None or os.geteuid() != 0:
        services.unavailable("PostgreSQL server binaries and root (to run them as postgres)")
    assert bin_dir is not None
    try:
        postgres = pwd.getpwnam("postgres")
    except KeyError:
        services.unavailable("a postgres system user")
    # Short path: a Unix socket's path is limited to about 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="pdr-"))
    os.chown(root, postgres.pw_uid, postgres.pw_gid)
    primary, replica = root / "primary", root / "replica"
    ports = {primary: free_port(), replica: free_port()}
    started: list[Path] = []
    try:
        # initdb -A trust also trusts replication connections from 127.0.0.1.
        _as_postgres(bin_dir / "initdb", "-D", primary, "-A", "trust", "-U", "postgres")
        for data in (primary, replica):
            if data is replica:
                _as_postgres(
                    bin_dir / "pg_basebackup", "-h", "127.0.0.1", "-p", str(ports[primary]),
                    "-U", "postgres", "-D", replica, "-R", "-X", "stream",
                )  # fmt: skip
            options = (f"-p {ports[data]} -k {root} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c full_page_writes=off")  # fmt: skip
            _as_postgres(bin_dir / "pg_ctl", "-D", data, "-l", data / "server.log", "-o",
                         options, "-w", "start")  # fmt: skip
            started.append(data)
            _wait_ready(bin_dir, root, ports[data])
        yield Pair(
            primary_url=f"postgresql://postgres@127.0.0.1:{ports[primary]}/postgres",
            replica_url=f"postgresql://postgres@127.0.0.1:{ports[replica]}/postgres",
            replica_port=ports[replica],
            replica_socket=root,
        )
    finally:
        for data in reversed(started):
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(bin_dir / "pg_ctl"), "-D", str(data),
                 "-m", "immediate", "stop"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
