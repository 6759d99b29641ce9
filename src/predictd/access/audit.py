"""The audit log: who did, or was refused, what.

A change writes its row with ``record`` inside the transaction that makes the change, so the
log and the database never disagree. Who is acting comes from a context variable the HTTP
auth dependency sets per request (the CLI sets its own), so services need no extra argument.
A refusal has no transaction to join, and an attacker makes as many as they like:
``RefusalLog`` counts them in memory, one row per client address, minute and key, and writes
the counts every few seconds (a row's ``times`` grows as more arrive). Its memory is bounded;
what does not fit is logged and counted, never queued without end. Every text is cut to its
column's length, so a long path is recorded shortened rather than dropped.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.engine import Database
from predictd.db.tables import audit_log

log = logging.getLogger("predictd.audit")


@dataclass(frozen=True, slots=True)
class Actor:
    key_name: str | None  # None: nobody authenticated
    scope: str | None = None  # the scope the request needed
    request_id: str | None = None


_actor: ContextVar[Actor | None] = ContextVar("predictd_actor", default=None)


def current_actor() -> Actor:
    found = _actor.get()
    if found is not None:
        return found
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", "admin")


def set_actor(actor: Actor) -> None:
    _actor.set(actor)


def begin_request() -> Token[Actor | None]:
    """Start a request with nobody acting (the auth dependency names the key)."""
    return _actor.set(Actor(None))


def end_request(token: Token[Actor | None]) -> None:
    _actor.reset(token)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


_LIMITS = {c.name: c.type.length for c in audit_log.c if isinstance(c.type, String)}


def clip(column: str, value: str | None) -> str | None:
    """``value`` cut to fit ``column`` (marked with an ellipsis where it was cut)."""
    limit = _LIMITS[column]
    if value is None or limit is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…"


def _row(
    actor: Actor,
    action: str,
    target: str | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    allowed: bool,
) -> dict[str, Any]:
    return {
        "ts": datetime.now(UTC),
        "key_name": clip("key_name", actor.key_name),
        "scope": clip("scope", actor.scope),
        "action": clip("action", action),
        "target": clip("target", target),
        "before": dict(before) if before is not None else None,
        "after": dict(after) if after is not None else None,
        "allowed": allowed,
        "request_id": clip("request_id", actor.request_id),
        "client": None,
        "times": 1,
    }


async def record(
    conn: AsyncConnection,
    action: str,
    target: str | None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """One allowed change, in the caller's transaction."""
    await conn.execute(
        audit_log.insert(), [_row(current_actor(), action, target, before, after, True)]
    )


REFUSALS_FLUSH_S = 2.0  # how often counted refusals are written
REFUSALS_HELD = 10_000  # distinct (address, minute, key) counts held between writes
REFUSALS_WRITE_S = 5.0  # longest one write may take (a hung database must not hold shutdown)


@dataclass(slots=True)
class _Refusals:
    row: dict[str, Any]
    unwritten: int = 1
    row_id: int | None = field(default=None)


class RefusalLog:
    """Refused requests, counted per client address, minute and key name, written in the
    background: a flood of refusals costs a few rows, not a row each."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, datetime, str | None], _Refusals] = {}
        self.dropped = 0  # refusals not counted because REFUSALS_HELD was reached
        self._lock = asyncio.Lock()

    def note(self, address: str, actor: Actor, action: str) -> None:
        """One refusal (cheap, never waits)."""
        row = _row(actor, action, None, None, None, False)
        minute = row["ts"].replace(second=0, microsecond=0)
        slot = (address, minute, row["key_name"])
        found = self._counts.get(slot)
        if found is not None:
            found.unwritten += 1
            return
        if len(self._counts) >= REFUSALS_HELD:
            self.dropped += 1
            log.warning("request refused", extra={"client": address, "action": row["action"],
                        "key": actor.key_name})  # fmt: skip
            return
        row["client"] = clip("client", address)
        self._counts[slot] = _Refusals(row)

    async def flush(self, db: Database) -> None:
        """Write the counts gathered since the last flush (new rows, or more ``times`` on
        this minute's rows) in one transaction; after a failure they wait for the next."""
        async with self._lock:
            waiting = [(r, r.unwritten) for r in self._counts.values() if r.unwritten]
            if waiting:
                try:
                    async with asyncio.timeout(REFUSALS_WRITE_S), db.engine.begin() as conn:
                        ids = [await _write(conn, r, n) for r, n in waiting]
                except Exception as exc:
                    log.warning("refusals not written to the audit log", extra={
                                "error": repr(exc), "rows": len(waiting)})  # fmt: skip
                    return
                for (refusals, written), row_id in zip(waiting, ids, strict=True):
                    refusals.row_id = row_id
                    refusals.unwritten -= written  # more may have come while writing
            this_minute = datetime.now(UTC).replace(second=0, microsecond=0)
            self._counts = {
                slot: r for slot, r in self._counts.items() if r.unwritten or slot[1] >= this_minute
            }

    async def forever(self, db: Database, interval_s: float = REFUSALS_FLUSH_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush(db)


async def _write(conn: AsyncConnection, refusals: _Refusals, count: int) -> int:
    """Add ``count`` refusals to their row (made on the first write); returns its id."""
    if refusals.row_id is None:
        row = refusals.row | {"times": count}
        inserted = await conn.execute(audit_log.insert().returning(audit_log.c.id), [row])
        return int(inserted.scalar_one())
    await conn.execute(
        update(audit_log)
        .where(audit_log.c.id == refusals.row_id)
        .values(times=audit_log.c.times + count)
    )
    return refusals.row_id


async def purge(db: Database, days: int) -> int:
    """Delete audit rows older than ``days`` (the retention of `db cleanup --audit-days`)."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    async with db.engine.begin() as conn:
        result = await conn.execute(delete(audit_log).where(audit_log.c.ts < cutoff))
    return int(result.rowcount or 0)
