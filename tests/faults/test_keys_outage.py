"""API keys through a database outage, with real server processes behind the TCP proxy: a
server restarted while its database is cut serves the keys it knew (from the snapshot beside
its spool), keeps refusing a key revoked before the cut, records every answer once when the
database returns, and then applies a revocation made during the outage."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import httpx

from predictd.access.keys import KeyService, new_key
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.settings import Settings
from tests.support.proxy import TcpProxy
from tests.support.server import (
    ServerPool,
    database_name,
    wait_all_recorded,
    wait_for,
)

AUTH_ON = {"PREDICTD_AUTH": "on", "PREDICTD_KEYS_REFRESH_S": "0.2"}


def make_keys(url: str, *names: str) -> dict[str, str]:
    async def run() -> dict[str, str]:
        db = Database(Settings(database_url=url).database)
        try:
            await migrate.upgrade(db)
            return {n: (await KeyService(db).create(n, ["predict"]))[0] for n in names}
        finally:
            await db.dispose()

    return asyncio.run(run())


def revoke(url: str, name: str) -> None:
    async def run() -> None:
        db = Database(Settings(database_url=url).database)
        try:
            await KeyService(db).revoke(name)
        finally:
            await db.dispose()

    asyncio.run(run())


def status_with(client: httpx.Client, key: str) -> int:
    headers = {"authorization": f"Bearer {key}"}
    return client.post("/predict", json={"text": "I love it"}, headers=headers).status_code


def test_keys_survive_a_restart_during_a_database_outage(
    proxy: TcpProxy, servers: ServerPool, postgres_url: str, tmp_path: Path
) -> None:
    via_proxy = proxy.url(database_name(postgres_url))
    spool = tmp_path / "spool"
    keys = make_keys(postgres_url, "keeper", "leaver")

    first = servers.start(via_proxy, spool_dir=spool, env=AUTH_ON)
    with first.client() as client:
        assert status_with(client, keys["keeper"]) == 200
        assert status_with(client, keys["leaver"]) == 200
        revoke(postgres_url, "leaver")
        wait_for(lambda: status_with(client, keys["leaver"]) == 401, 10, "the revocation")
    first.terminate()

    proxy.cut()
    second = servers.start(via_proxy, spool_dir=spool, env=AUTH_ON)
    ids: list[str] = []
    with second.client() as client:
        for n in range(20):
            answer = client.post(
                "/predict",
                json={"text": f"outage {n}: I love it"},
                headers={"authorization": f"Bearer {keys['keeper']}"},
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["prediction_id"])
        assert status_with(client, keys["leaver"]) == 401  # revoked before the cut
        assert status_with(client, new_key()) == 503  # cannot be checked: not a guess

        # Revoked while this server cannot see the database: honoured until it can (the
        # trade-off the README states), refused once the link is back.
        revoke(postgres_url, "keeper")
        assert status_with(client, keys["keeper"]) == 200
        proxy.restore()
        wait_all_recorded(postgres_url, ids, 30, second.log_tail)
        wait_for(lambda: status_with(client, keys["keeper"]) == 401, 15, "the revocation to apply")
    second.terminate()

    snapshot = spool / "keys.json"  # what it served from: private, and no key in it
    assert stat.S_IMODE(os.stat(snapshot).st_mode) == 0o600
    saved = snapshot.read_text()
    assert keys["keeper"] not in saved
    assert keys["leaver"] not in saved
