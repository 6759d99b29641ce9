"""Fault injection against real processes: `predictd serve` subprocesses, the real PostgreSQL,
and a TCP proxy between them that we cut and restore. Nothing is mocked.

The promise under test: every prediction that was answered 2xx ends up in the predictions
table exactly once — through a database outage at startup or mid-load, a SIGKILL, a corrupted
or torn spool segment, and a SIGTERM.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.support.proxy import TcpProxy
from tests.support.server import (
    ServerPool,
    ServerProcess,
    count_rows,
    database_name,
    id_counts,
    predict_many,
    wait_all_recorded,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HEADER = struct.Struct("<IIQ")  # u32 length | u32 crc32 | u64 lsn, then the payload
SHIP_TIMEOUT_S = 30.0


def segment_files(spool_dir: Path) -> list[Path]:
    return sorted((spool_dir / "w0").glob("*.seg"))


def spool_bytes_on_disk(spool_dir: Path) -> int:
    return sum(p.stat().st_size for p in segment_files(spool_dir))


@dataclass(frozen=True)
class Frame:
    offset: int
    lsn: int
    payload: bytes

    @property
    def size(self) -> int:
        return HEADER.size + len(self.payload)

    @property
    def prediction_id(self) -> str:
        value: str = orjson.loads(self.payload)["id"]
        return value


def read_frames(path: Path) -> list[Frame]:
    """Parse a segment the way the spool frames it; fails on anything but whole frames."""
    data = path.read_bytes()
    frames: list[Frame] = []
    offset = 0
    while offset < len(data):
        length, _crc, lsn = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        payload = data[start : start + length]
        assert len(payload) == length, f"torn frame at {offset} in {path}"
        frames.append(Frame(offset, lsn, payload))
        offset = start + length
    return frames


def ready_checks(server: ServerProcess) -> tuple[int, dict[str, str]]:
    with server.client() as client:
        response = client.get("/ready")
    checks = {name: c["state"] for name, c in response.json()["checks"].items()}
    return response.status_code, checks


def _details(servers: ServerPool) -> str:
    return servers.report()


def assert_clean_exit(server: ServerProcess, code: int) -> None:
    """A SIGTERM'ed server must finish its shutdown and exit with status 0."""
    assert code == 0, (
        f"`predictd serve` exited with status {code} after SIGTERM (expected 0)\n"
        f"{server.describe()}"
    )


# -- (1) the database is down when the server starts -----------------------------------------


def test_database_down_at_startup_then_restored(
    proxy: TcpProxy, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    proxy.cut()
    spool = tmp_path / "spool"
    server = servers.start(proxy.url(database_name(postgres_url)), spool_dir=spool)

    with server.client() as client:
        ids = predict_many(client, 50, prefix="down-at-start")
        info = client.get("/model-info").json()
    assert info["source"] == "unregistered"  # served straight from the artifact

    status, checks = ready_checks(server)
    assert status == 200, checks
    assert checks == {"server": "ok", "model": "ok", "database": "degraded", "spool": "ok"}
    assert spool_bytes_on_disk(spool) > 0
    assert server.metric("predictd_spool_bytes") > 0
    assert count_rows(postgres_url) == 0  # nothing went past the cut

    proxy.restore()
    wait_all_recorded(postgres_url, ids, SHIP_TIMEOUT_S, lambda: _details(servers))
    wait_for(
        lambda: server.metric("predictd_spool_bytes") == 0,
        10,
        "the spool to drain",
        lambda: _details(servers),
    )
    assert count_rows(postgres_url) == len(ids)
    assert_clean_exit(server, server.terminate())


# -- (2) the link is cut in the middle of a load --------------------------------------------


def test_cut_mid_load_and_restore(
    proxy: TcpProxy, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    server = servers.start(proxy.url(database_name(postgres_url)), spool_dir=tmp_path / "spool")
    stop = threading.Event()
    answered: list[str] = []
    failures: Counter[str] = Counter()
    lock = threading.Lock()

    def load(worker: int) -> None:
        n = 0
        with server.client(timeout_s=15) as client:
            while not stop.is_set():
                n += 1
                response = client.post("/predict", json={"text": f"load {worker}/{n} good stuff"})
                with lock:
                    if response.is_success:
                        answered.append(response.json()["prediction_id"])
                    else:
                        failures[f"{response.status_code}: {response.text[:200]}"] += 1

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(load, w) for w in range(4)]
        try:
            time.sleep(1.0)
            with lock:
                before_cut = len(answered)
            live_at_cut = proxy.live_connections
            proxy.cut()
            time.sleep(1.0)
            with lock:
                during_cut = len(answered) - before_cut
            proxy.restore()
            time.sleep(1.0)
        finally:
            stop.set()
        for future in futures:
            future.result(timeout=30)

    assert before_cut > 0, before_cut
    assert during_cut > 0, during_cut  # answered while the database was unreachable
    assert live_at_cut > 0  # the cut dropped real connections
    assert not failures, failures
    assert server.metric("predictd_db_write_errors_total") >= 1  # the cut was felt
    wait_all_recorded(postgres_url, answered, SHIP_TIMEOUT_S, lambda: _details(servers))
    assert count_rows(postgres_url) == len(answered)
    assert_clean_exit(server, server.terminate())


# -- (3) SIGKILL while the records live only in the spool -----------------------------------


@pytest.mark.parametrize("durability", ["process", "strict"])
def test_sigkill_with_unshipped_records_then_restart(
    proxy: TcpProxy, servers: ServerPool, postgres_url: str, tmp_path: Path, durability: str
) -> None:
    spool = tmp_path / "spool"
    url = proxy.url(database_name(postgres_url))
    proxy.cut()
    first = servers.start(url, spool_dir=spool, durability=durability)
    with first.client() as client:
        ids = predict_many(client, 40, prefix=f"kill-{durability}")
    first.kill()
    assert first.proc.returncode == -9
    assert spool_bytes_on_disk(spool) > 0
    assert count_rows(postgres_url) == 0

    proxy.restore()
    second = servers.start(url, spool_dir=spool, durability=durability)
    wait_all_recorded(postgres_url, ids, SHIP_TIMEOUT_S, lambda: _details(servers))
    assert count_rows(postgres_url) == len(ids)
    assert_clean_exit(second, second.terminate())


# -- (4) a corrupted record and a torn tail in a spool segment ------------------------------


def test_corrupted_and_truncated_spool_segment(
    proxy: TcpProxy, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    url = proxy.url(database_name(postgres_url))
    proxy.cut()
    first = servers.start(url, spool_dir=spool)
    with first.client() as client:
        ids = predict_many(client, 30, prefix="corrupt")
    first.kill()

    segments = [p for p in segment_files(spool) if p.stat().st_size > 0]
    assert len(segments) == 1, segments
    segment = segments[0]
    frames = read_frames(segment)
    assert sorted(f.prediction_id for f in frames) == sorted(ids)

    # Flip bytes in the middle of one record's payload: its checksum fails on recovery.
    victim = frames[len(frames) // 2]
    data = bytearray(segment.read_bytes())
    middle = victim.offset + HEADER.size + len(victim.payload) // 2
    for i in range(middle, middle + 4):
        data[i] ^= 0xFF
    corrupted_frame = bytes(data[victim.offset : victim.offset + victim.size])
    # And a half-written record at the end: a header claiming 100 bytes, then only 10.
    torn = HEADER.pack(100, 0xDEADBEEF, frames[-1].lsn + 1) + b"x" * 10
    segment.write_bytes(bytes(data) + torn)

    proxy.restore()
    second = servers.start(url, spool_dir=spool)

    quarantine = spool / "w0" / "quarantine"
    assert quarantine.is_file(), second.describe()
    assert quarantine.read_bytes() == corrupted_frame
    assert second.metric("predictd_records_quarantined_total") >= 1

    survivors = [i for i in ids if i != victim.prediction_id]
    wait_all_recorded(postgres_url, survivors, SHIP_TIMEOUT_S, lambda: _details(servers))
    assert id_counts(postgres_url, [victim.prediction_id])[victim.prediction_id] == 0
    assert count_rows(postgres_url) == len(survivors)
    log = second.log_tail(100_000)
    assert "torn tail" in log, log
    # The torn tail never reached the database as a record, and the server keeps serving.
    with second.client() as client:
        more = predict_many(client, 5, prefix="after-recovery")
    wait_all_recorded(postgres_url, more, SHIP_TIMEOUT_S, lambda: _details(servers))
    assert_clean_exit(second, second.terminate())


# -- (5) SIGTERM flushes what is queued ------------------------------------------------------


def test_sigterm_ships_everything_answered(
    proxy: TcpProxy, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    # A long flush interval keeps the last records queued when SIGTERM arrives.
    server = servers.start(
        proxy.url(database_name(postgres_url)),
        spool_dir=tmp_path / "spool",
        env={"PREDICTD_RECORD_FLUSH_MS": "2000"},
    )
    with server.client() as client:
        ids = predict_many(client, 60, prefix="sigterm")
    # Precondition: some answered records are still waiting to be shipped.
    assert count_rows(postgres_url) < len(ids)
    code = server.terminate()

    counts = id_counts(postgres_url, ids)
    missing = [i for i in ids if counts[i] == 0]
    duplicated = {i: n for i, n in counts.items() if n > 1}
    assert not missing, (missing[:3], server.describe())
    assert not duplicated, duplicated
    assert count_rows(postgres_url) == len(ids)
    assert "predictd stopped" in server.log_tail(), server.describe()
    assert_clean_exit(server, code)
