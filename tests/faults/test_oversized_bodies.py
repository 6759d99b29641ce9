"""Twenty concurrent oversized uploads, chunked (no Content-Length) and declared, against a real
server: each is refused with 413 once the limit is crossed, no body is buffered whole, and the
server's memory grows by well under 60 MiB."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.support.server import ServerPool, ServerProcess

UPLOAD_MIB = 16
CHUNK = b"x" * 65536
CLIENTS = 20


def rss_mib(server: ServerProcess) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def flood() -> AsyncIterator[bytes]:
    for _ in range(UPLOAD_MIB * 16):
        yield CHUNK


async def upload(client: httpx.AsyncClient, chunked: bool) -> int | str:
    headers = {"content-type": "application/json"}
    try:
        if chunked:
            response = await client.post("/predict", content=flood(), headers=headers)
        else:
            body = CHUNK * (UPLOAD_MIB * 16)
            response = await client.post("/predict", content=body, headers=headers)
    except httpx.TransportError as exc:  # the server may close mid-upload after answering
        return type(exc).__name__
    return response.status_code


def test_concurrent_oversized_uploads_stay_bounded(servers: ServerPool, tmp_path: Path) -> None:
    server = servers.start(f"sqlite:///{tmp_path / 'p.db'}", spool_dir=tmp_path / "spool",
                           env={"PREDICTD_MAX_BODY_BYTES": str(1 << 20)})  # fmt: skip
    with server.client() as client:  # warm up: imports, first request
        assert client.post("/predict", json={"text": "warm"}).status_code == 200
    before = rss_mib(server)

    async def run() -> list[int | str]:
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as c:
            return await asyncio.gather(*(upload(c, chunked=i % 2 == 0) for i in range(CLIENTS)))

    outcomes = asyncio.run(run())
    grown = rss_mib(server) - before
    assert all(o == 413 or isinstance(o, str) for o in outcomes), outcomes
    assert sum(o == 413 for o in outcomes) >= CLIENTS // 2, outcomes
    assert grown < 60, f"RSS grew {grown:.1f} MiB for {CLIENTS} x {UPLOAD_MIB} MiB uploads"
    with server.client() as client:
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json={"text": "still here"}).status_code == 200
    print(f"RSS {before:.1f} MiB -> +{grown:.1f} MiB; outcomes {sorted(map(str, outcomes))}")
