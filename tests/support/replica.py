"""A PostgreSQL primary and a streaming replica of it (pg_basebackup), both clusters of the
test's own (tests/support/pgcluster.py): the suite's shared server is not touched."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support import pgcluster, services
from tests.support.pgcluster import START_TIMEOUT_S, OwnCluster


def _wait_accepting(cluster: OwnCluster) -> None:
    """pg_isready rather than a query: usable from inside a running event loop."""
    deadline = time.monotonic() + START_TIMEOUT_S
    command = [str(cluster.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(cluster.port)]
    while subprocess.run(command, capture_output=True, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"own PostgreSQL not up\n{cluster.log_tail()}"
        time.sleep(0.1)


@contextmanager
def primary_and_replica() -> Iterator[tuple[OwnCluster, OwnCluster]]:
    why = pgcluster.available()
    if why is not None:
        services.unavailable(why)
    made: list[OwnCluster] = []
    try:
        primary = OwnCluster()
        made.append(primary)
        primary.start()
        _wait_accepting(primary)
        replica = OwnCluster(replica_of=primary)
        made.append(replica)
        replica.start()
        _wait_accepting(replica)
        yield primary, replica
    finally:
        for cluster in reversed(made):
            cluster.destroy()
