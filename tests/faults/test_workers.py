"""`predictd serve --workers 2` as real processes on PostgreSQL: each worker holds a spool
directory of its own; spool directories left by dead processes are claimed and shipped;
/metrics adds up every worker's samples whichever worker answers; SIGTERM drains every
worker before the supervisor exits 0."""

from __future__ import annotations

import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from predictd.recording.spool import Spool
from tests.recording.test_recorder import make_record
from tests.support.server import ServerPool, wait_all_recorded, wait_for

TEXTS = ["I love this product", "This is terrible, I want a refund", "The box contains two cables"]


def leave_orphans(base: Path, directories: int, per_directory: int) -> list[str]:
    """Spool directories as processes that died before shipping leave them: records
    written, nothing committed, locks released."""
    spools = [
        Spool(base, segment_bytes=1 << 20, max_bytes=64 << 20, fsync=False)
        for _ in range(directories)
    ]
    ids: list[str] = []
    for spool in spools:
        spool.open()  # each claims the next free directory: w0, w1, w2...
        records = [make_record(model_name="sentiment") for _ in range(per_directory)]
        spool.append([r.to_bytes() for r in records])
        ids += [str(r.id) for r in records]
    for spool in spools:
        spool.close()
    return ids


def held(directory: Path) -> bool:
    fd = os.open(directory / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_two_workers_share_nothing_but_the_database(
    tmp_path: Path, postgres_url: str, servers: ServerPool
) -> None:
    spool = tmp_path / "spool"
    orphaned = leave_orphans(spool, directories=3, per_directory=50)
    server = servers.start(
        postgres_url,
        spool_dir=spool,
        args=["--workers", "2"],
        env={"PREDICTD_SHUTDOWN_DELAY_S": "2"},
    )
    # Each worker claims a directory as its own and replays it; the third is adopted by a
    # worker's heir, shipped, emptied and let go.
    wait_all_recorded(postgres_url, orphaned, details=servers.report)
    directories = [spool / f"w{i}" for i in range(3)]

    def settled() -> bool:
        free = [d for d in directories if not held(d)]
        return len(free) == 1 and not any(free[0].glob("*.seg"))

    wait_for(settled, 15, "two held spools and one shipped and emptied", servers.report)

    def predict(text: str) -> str:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            answer = client.post("/predict", json={"text": text})
            assert answer.status_code == 200, answer.text
            return str(answer.json()["prediction_id"])

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(predict, [TEXTS[i % 3] for i in range(300)]))
    wait_all_recorded(postgres_url, answered, details=servers.report)

    # Whichever worker answers the scrape, the counters are the sum over both.
    seen = {server.metric("predictd_predictions_total") for _ in range(8)}
    assert seen == {300.0}, seen
    shipped = server.metric("predictd_records_shipped_total")
    assert shipped >= 300 + len(orphaned), shipped
    assert server.metric("predictd_recorder_queue_depth") == 0

    # SIGTERM: every worker turns /ready 503 and keeps answering for the delay.
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        server.proc.terminate()
        started = time.monotonic()
        wait_for(lambda: client.get("/ready").status_code == 503, 1.5, "/ready 503")
        during = [client.post("/predict", json={"text": TEXTS[0]}) for _ in range(20)]
        assert time.monotonic() - started < 2.0, "the drain delay had passed already"
    assert {r.status_code for r in during} == {200}
    assert server.proc.wait(30) == 0
    wait_all_recorded(postgres_url, [r.json()["prediction_id"] for r in during])
