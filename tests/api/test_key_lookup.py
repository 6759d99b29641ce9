"""A key works on the request after it is made; wrong keys cost a bounded number of database
lookups; refusals are limited per client address (a lookup takes one first, given back for
a valid key), one address has few lookups running at once, and refusals are counted into few
audit rows."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from typer.testing import CliRunner

from predictd.access.keyring import LOOKUPS_PER_CLIENT
from predictd.access.keys import KeyService, new_key
from predictd.cli import app as cli
from predictd.db.engine import Database
from predictd.db.tables import audit_log
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo, running_app, services_of

TEXT = {"text": "I love it"}
UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def wait_keys_read(app: FastAPI) -> None:
    """Until the server has read the key table once (its timer then waits a minute)."""
    for _ in range(500):
        if services_of(app).keys.loaded:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the key table was never read")


async def refused_rows(settings: Settings) -> list[dict[str, Any]]:
    db = Database(settings.database)
    try:
        async with db.engine.connect() as conn:
            query = select(audit_log).where(audit_log.c.allowed.is_(False)).order_by("id")
            return [dict(r._mapping) for r in await conn.execute(query)]
    finally:
        await db.dispose()


async def test_a_new_key_works_on_the_next_request(
    tmp_path: Path, db_url: str, artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, db_url, auth="on", keys_refresh_s=60)
    await register_demo(settings, artifacts.sentiment)
    db = Database(settings.database)
    try:
        async with running_app(settings) as (app, client):
            await wait_keys_read(app)
            made, _ = await KeyService(db).create("made-by-service", ["predict"])
            answer = await client.post("/predict", json=TEXT, headers=bearer(made))
            assert answer.status_code == 200, answer.text

            monkeypatch.setenv("DATABASE_URL", db_url)
            command = ["keys", "create", "--name", "made-by-cli", "--scope", "predict"]
            result = await asyncio.to_thread(CliRunner().invoke, cli, command)
            assert result.exit_code == 0, result.output
            key = result.stdout.strip().splitlines()[0]
            answer = await client.post("/predict", json=TEXT, headers=bearer(key))
            assert answer.status_code == 200, answer.text
    finally:
        await db.dispose()


async def test_wrong_keys_cost_a_bounded_number_of_lookups(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, auth="on", keys_refresh_s=60,
                             refusal_burst=5, refusal_rate_per_s=0.001)  # fmt: skip
    await register_demo(settings, artifacts.sentiment)
    db = Database(settings.database)
    try:
        known, _ = await KeyService(db).create("known", ["predict"])
        async with running_app(settings) as (app, client):
            await wait_keys_read(app)

            async def post(key: str) -> httpx.Response:
                return await client.post("/predict", json=TEXT, headers=bearer(key))

            # One wrong key, many times: one lookup, then remembered as unknown.
            before = lookups(app)
            wrong = new_key()
            assert [(await post(wrong)).status_code for _ in range(3)] == [401] * 3
            assert lookups(app) - before == 1

            # A new key brought by 50 requests at once: one lookup among them.
            fresh, _ = await KeyService(db).create("fresh", ["predict"])
            before = lookups(app)
            answers = await asyncio.gather(*(post(fresh) for _ in range(50)))
            assert [a.status_code for a in answers] == [200] * 50
            assert lookups(app) - before == 1

            # 100 different wrong keys from one address: its 5 refusals (2 left after the
            # 3 above) are looked up, the rest are 429 before any lookup.
            before = lookups(app)
            codes = [(await post(new_key())).status_code for _ in range(100)]
            assert codes == [401] * 2 + [429] * 98
            assert lookups(app) - before == 2
            limited = await post(new_key())
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.json()["error"]["code"] == "rate_limited"

            # Known keys from that address are not held back.
            assert (await post(known)).status_code == 200
            assert (await post(fresh)).status_code == 200
            assert lookups(app) - before == 2
            # Nor is a request without a key beyond its budget: 429, no lookup, no 401.
            assert (await client.post("/predict", json=TEXT)).status_code == 429
    finally:
        await db.dispose()


async def test_refusals_are_counted_into_one_row_per_address_and_minute(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, auth="on", refusal_burst=1000)
    await register_demo(settings, artifacts.sentiment)
    long_name = "x" * 3000
    async with running_app(settings) as (_, client):
        for _ in range(30):
            assert (await client.post("/predict", json=TEXT)).status_code == 401
        wrong = {"authorization": "Bearer pdk_nope"}
        for _ in range(10):
            answer = await client.get(f"/models/{long_name}/versions", headers=wrong)
            assert answer.status_code == 401
    rows = await refused_rows(settings)
    # 40 refusals, all from the test client's address and without a key: one row per minute
    # (two when the test ran across a minute's end), each holding its count.
    assert sum(r["times"] for r in rows) == 40
    assert len(rows) <= 2
    assert len({r["ts"].replace(second=0, microsecond=0) for r in rows}) == len(rows)
    assert {(r["client"], r["key_name"], r["scope"]) for r in rows} == {
        ("127.0.0.1", None, "predict")
    }
    assert rows[0]["action"] == "POST /predict"


async def test_a_long_path_is_recorded_cut_to_fit(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, auth="on")
    await register_demo(settings, artifacts.sentiment)
    async with running_app(settings) as (_, client):
        answer = await client.get(f"/models/{'x' * 3000}/versions")
        assert answer.status_code == 401
    rows = await refused_rows(settings)
    assert len(rows) == 1
    action = rows[0]["action"]
    assert len(action) == 100
    assert action.startswith("GET /models/xxxx")
    assert action.endswith("…")


def lookups(app: FastAPI) -> float:
    """Database lookups of unknown keys this server has made (predictd_key_lookups_total)."""
    registry = services_of(app).metrics.registry
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == "predictd_key_lookups"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def test_concurrent_wrong_keys_cannot_outrun_the_refusal_budget(
    tmp_path: Path, postgres_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, postgres_url, auth="on", keys_refresh_s=60,
                             refusal_burst=5, refusal_rate_per_s=0.001)  # fmt: skip
    await register_demo(settings, artifacts.sentiment)
    async with running_app(settings) as (app, client):
        await wait_keys_read(app)
        answers = await asyncio.gather(
            *(client.post("/predict", json=TEXT, headers=bearer(new_key())) for _ in range(20))
        )
        codes = Counter(a.status_code for a in answers)
        # Each lookup took its refusal first: at most the budget's 5 reached the database.
        assert lookups(app) <= 5
        assert codes[401] <= 5
        assert codes[401] + codes[429] == 20, codes


async def test_keys_that_cannot_be_checked_spend_the_budget(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, UNREACHABLE, auth="on", db_connect_timeout_s=0.5,
                             model_path=artifacts.sentiment.path, refusal_burst=3,
                             refusal_rate_per_s=0.001)  # fmt: skip
    async with running_app(settings) as (_, client):
        codes = [
            (await client.post("/predict", json=TEXT, headers=bearer(new_key()))).status_code
            for _ in range(5)
        ]
    assert codes == [503] * 3 + [429] * 2  # a 503 is not a free lookup


async def test_one_address_has_few_lookups_running_at_once(
    tmp_path: Path, postgres_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, postgres_url, auth="on", keys_refresh_s=60,
                             refusal_burst=100, keys_lookup_timeout_s=30)  # fmt: skip
    await register_demo(settings, artifacts.sentiment)
    extra = 3
    db = Database(settings.database)
    try:
        async with running_app(settings) as (app, client):
            await wait_keys_read(app)
            async with db.engine.connect() as locker:  # lookups wait on the lock: in flight
                await locker.execute(text("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE"))
                tasks = [
                    asyncio.create_task(client.post("/predict", json=TEXT, headers=bearer(k)))
                    for k in [new_key() for _ in range(LOOKUPS_PER_CLIENT + extra)]
                ]
                early = await first_done(tasks, extra, within_s=20)
                await locker.rollback()
            answers = await asyncio.gather(*tasks)
    finally:
        await db.dispose()
    assert [a.status_code for a in early] == [429] * extra  # answered while the others wait
    codes = Counter(a.status_code for a in answers)
    assert codes == {429: extra, 401: LOOKUPS_PER_CLIENT}


async def first_done(
    tasks: list[asyncio.Task[httpx.Response]], count: int, within_s: float
) -> list[httpx.Response]:
    """The first ``count`` answers, or fewer if they do not come within ``within_s``."""
    pending = set(tasks)
    done: list[httpx.Response] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(done) < count and pending and loop.time() < deadline:
        finished, pending = await asyncio.wait(
            pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
        )
        done += [t.result() for t in finished]
    return done
