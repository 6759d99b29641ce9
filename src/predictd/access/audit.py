"""The audit log: who did, or was refused, what.

A change writes its row with ``record`` inside the transaction that makes the change, so the
log and the database never disagree. Who is acting comes from a context variable the HTTP
auth dependency sets per request (the CLI sets its own), so services need no extra argument.
A refusal has no transaction to join: ``denied`` writes it on its own, and only logs it when
the database is away.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
        "key_name": actor.key_name,
        "scope": actor.scope,
        "action": action,
        "target": target,
        "before": dict(before) if before is not None else None,
        "after": dict(after) if after is not None else None,
        "allowed": allowed,
        "request_id": actor.request_id,
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


async def denied(db: Database, actor: Actor, action: str, target: str | None) -> None:
    """A refused request, in its own transaction; never raises."""
    row = _row(actor, action, target, None, None, False)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(audit_log.insert(), [row])
    except Exception as exc:
        log.warning(
            "audit row not written", extra={**row, "ts": str(row["ts"]), "error": repr(exc)}
        )
