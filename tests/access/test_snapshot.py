"""The key snapshot beside the spool: written atomically and private, read as untrusted input
(anything odd is ignored with a warning, never a crash), and what a server started without
a database checks keys against; one that cannot be written is reported in /metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from predictd.access import snapshot
from predictd.access.keys import key_hash, new_key
from predictd.access.snapshot import KeyEntry
from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"


def entries(live: str, revoked: str) -> list[KeyEntry]:
    return [
        KeyEntry(1, "live", key_hash(live), ("predict",), False),
        KeyEntry(2, "gone", key_hash(revoked), ("predict",), True),
    ]


def test_written_private_and_read_back(tmp_path: Path) -> None:
    path = snapshot.path_beside(tmp_path / "spool")
    saved = entries(new_key(), new_key())
    snapshot.write(path, snapshot.encode(saved))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert snapshot.read(path) == saved
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temporary left


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"format": 2, "keys": []}',
        b'{"format": 1, "keys": [{"id": 1, "name": "x", "hash": "zz", "scopes": [],'
        b' "revoked": false}]}',
        b'{"format": 1, "keys": [{"id": "1", "name": "x", "scopes": []}]}',
        b"\xff\xfe",
    ],
)
def test_a_malformed_snapshot_is_ignored(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, "predictd.access"):
        assert snapshot.read(path) is None
    assert "API key snapshot ignored" in caplog.text


def test_a_snapshot_others_may_write_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(snapshot.encode(entries(new_key(), new_key())))
    path.chmod(0o666)
    assert snapshot.read(path) is None
    assert snapshot.read(tmp_path / "absent.json") is None


async def test_a_server_without_database_checks_keys_against_the_snapshot(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    live, revoked = new_key(), new_key()
    settings = make_settings(tmp_path, UNREACHABLE, auth="on", db_connect_timeout_s=0.5,
                             model_path=artifacts.sentiment.path)  # fmt: skip
    snapshot.write(snapshot.path_beside(settings.recording.spool_dir),
                   snapshot.encode(entries(live, revoked)))  # fmt: skip
    async with running_app(settings) as (_, client):
        for key, status in ((live, 200), (revoked, 401), (new_key(), 503)):
            answer = await client.post("/predict", json={"text": "hi"},
                                       headers={"authorization": f"Bearer {key}"})  # fmt: skip
            assert answer.status_code == status, answer.text


async def test_a_corrupt_snapshot_never_stops_start_up(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, UNREACHABLE, auth="on", db_connect_timeout_s=0.5,
                             model_path=artifacts.sentiment.path)  # fmt: skip
    path = snapshot.path_beside(settings.recording.spool_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"format": 1, "keys": [null]}')
    os.chmod(path, 0o600)
    async with running_app(settings) as (_, client):
        assert (await client.get("/health")).status_code == 200
        answer = await client.post("/predict", json={"text": "hi"},
                                   headers={"authorization": f"Bearer {new_key()}"})  # fmt: skip
        assert answer.status_code == 503


async def test_a_snapshot_that_cannot_be_written_is_reported(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    """A revocation missing from the snapshot would be undone by a restart during an
    outage: /metrics says so (predictd_key_snapshot_stale) until a write succeeds."""
    admin = new_key()
    settings = make_settings(tmp_path, db_url, auth="on", keys_refresh_s=0.05,
                             admin_token=admin, model_path=artifacts.sentiment.path)  # fmt: skip
    path = snapshot.path_beside(settings.recording.spool_dir)
    path.mkdir(parents=True)  # a directory where the file goes: every write fails
    headers = {"authorization": f"Bearer {admin}"}
    async with running_app(settings) as (_, client):

        async def scraped(line: str) -> bool:
            text = (await client.get("/metrics", headers=headers)).text
            return line in text.splitlines()

        await wait_until(lambda: scraped("predictd_key_snapshot_stale 1.0"))
        assert not await scraped("predictd_key_snapshot_write_failures_total 0.0")
        path.rmdir()
        await wait_until(lambda: scraped("predictd_key_snapshot_stale 0.0"))
    assert snapshot.read(path) is not None


async def wait_until(check: Callable[[], Awaitable[bool]], tries: int = 500) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("never happened")
