"""The audit log: who did, or was refused, what.

A change writes its row with ``record`` inside the transaction that makes the change, so the
log and the database never disagree. Who is acting comes from a context variable the HTTP
auth dependency sets per request (the CLI sets its own), so services need no extra argument.
A refusal has no transaction to join, and an attacker makes as many as they like:
``RefusalLog`` counts them in memory, one row per client address, minute and key, and writes
the counts every few seconds, a few hundred rows per statement (a row's ``times`` grows as
more arrive). Its memory is bounded; what does not fit is counted and logged in one line per
interval, never queued without end. Every text is cut to its
column's length, so a long path is recorded shortened rather than dropped.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, delete, update
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
    *,
    allowed: bool = True,
) -> None:
    """One change, in the caller's transaction; ``allowed=False`` for a decision the rules
    refused that the log must still name (an approval by its own requester, say), as
    opposed to the bulk of refused requests, which ``RefusalLog`` counts."""
    await conn.execute(
        audit_log.insert(), [_row(current_actor(), action, target, before, after, allowed)]
    )


REFUSALS_FLUSH_S = 2.0  # how often counted refusals are written
REFUSALS_HELD = 10_000  # distinct (address, minute, key) counts held between writes
REFUSALS_CHUNK = 500  # rows written per statement (and per transaction)
REFUSALS_WRITE_S = 5.0  # longest one chunk may take (a hung database must not hold shutdown)
DROPPED_WARNING_S = 10.0  # at most one warning this often for refusals not counted


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
        self._dropped_unlogged = 0  # of those, not yet in a warning
        self._next_warning = 0.0  # monotonic time the next warning may be logged at
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
            self._dropped_unlogged += 1
            self._warn_dropped()
            return
        row["client"] = clip("client", address)
        self._counts[slot] = _Refusals(row)

    def _warn_dropped(self) -> None:
        """One line per ``DROPPED_WARNING_S`` with how many refusals went uncounted, so a
        flood of refusals does not become a flood of log lines."""
        now = time.monotonic()
        if not self._dropped_unlogged or now < self._next_warning:
            return
        log.warning("refusals not counted: too many addresses refused at once", extra={
                    "dropped": self._dropped_unlogged, "held": len(self._counts)})  # fmt: skip
        self._dropped_unlogged = 0
        self._next_warning = now + DROPPED_WARNING_S

    async def flush(self, db: Database, within_s: float | None = None) -> None:
        """Write the counts gathered since the last flush (new rows, or more ``times`` on
        this minute's rows), ``REFUSALS_CHUNK`` rows per transaction: a chunk that fails
        stops the flush, and its counts and the rest wait for the next one. ``within_s``
        bounds the whole flush (shutdown), not only each chunk."""
        loop = asyncio.get_running_loop()
        deadline = None if within_s is None else loop.time() + within_s
        async with self._lock:
            self._warn_dropped()
            waiting = [(r, r.unwritten) for r in self._counts.values() if r.unwritten]
            for start in range(0, len(waiting), REFUSALS_CHUNK):
                chunk = waiting[start : start + REFUSALS_CHUNK]
                limit_s = REFUSALS_WRITE_S
                if deadline is not None:
                    limit_s = min(limit_s, deadline - loop.time())
                try:
                    if limit_s <= 0:
                        raise TimeoutError("no time left to write refusals")
                    async with asyncio.timeout(limit_s), db.engine.begin() as conn:
                        ids = iter(await _write(conn, chunk))
                except Exception as exc:
                    log.warning("refusals not written to the audit log", extra={
                                "error": repr(exc), "rows": len(waiting) - start})  # fmt: skip
                    return
                for refusals, written in chunk:  # committed: now the new ids are real
                    if refusals.row_id is None:
                        refusals.row_id = next(ids)
                    refusals.unwritten -= written  # more may have come while writing
            this_minute = datetime.now(UTC).replace(second=0, microsecond=0)
            self._counts = {
                slot: r for slot, r in self._counts.items() if r.unwritten or slot[1] >= this_minute
            }

    async def forever(self, db: Database, interval_s: float = REFUSALS_FLUSH_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush(db)


async def _write(conn: AsyncConnection, chunk: list[tuple[_Refusals, int]]) -> list[int]:
    """Add each count to its row: the rows not written before in one multi-row INSERT (their
    new ids are returned, in order), the others in one executemany UPDATE."""
    new = [r.row | {"times": n} for r, n in chunk if r.row_id is None]
    more = [{"row_id": r.row_id, "more": n} for r, n in chunk if r.row_id is not None]
    ids: list[int] = []
    if new:
        insert = audit_log.insert().returning(audit_log.c.id, sort_by_parameter_order=True)
        ids = [int(i) for i in (await conn.execute(insert, new)).scalars()]
    if more:
        times = audit_log.c.times + bindparam("more")
        grow = update(audit_log).where(audit_log.c.id == bindparam("row_id")).values(times=times)
        await conn.execute(grow, more)
    return ids


async def purge(db: Database, days: int) -> int:
    """Delete audit rows older than ``days`` (the retention of `db cleanup --audit-days`)."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    async with db.engine.begin() as conn:
        result = await conn.execute(delete(audit_log).where(audit_log.c.ts < cutoff))
    return int(result.rowcount or 0)
