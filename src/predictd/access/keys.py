"""API keys: created once (the key is shown then and never again), kept as SHA-256, revoked
by name.

Each server holds the key table in memory (``KeyRing``) and re-reads it every
``PREDICTD_KEYS_REFRESH_S``, so a known key is checked without the database and a revocation
reaches every replica within that. A key the server does not know yet (made since the last
re-read) is looked up in the database on its first use, once however many requests bring it
at the same time, and within ``PREDICTD_KEYS_LOOKUP_TIMEOUT_S``; a hash found nowhere is
remembered for a while (bounded in number and time), so a flood of wrong keys is not a flood
of queries. Each re-read that changes the table is saved to a snapshot beside the spool
(``snapshot``): a server that starts while the database is away serves the keys it knew, and
the first re-read once the database answers applies what changed meanwhile (revocations).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from predictd.access import audit, snapshot
from predictd.access.scopes import SCOPES, Scope, parse_known
from predictd.access.snapshot import KeyEntry
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.tables import api_keys
from predictd.errors import Conflict, NotFound, Unavailable

log = logging.getLogger("predictd.access")

KEY_PREFIX = "pdk_"
BOOTSTRAP_NAME = "admin-token"  # PREDICTD_ADMIN_TOKEN, as it appears in the audit log


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a key's name and scopes."""

    name: str | None  # None: anonymous (PREDICTD_AUTH=off)
    scopes: frozenset[Scope]
    key_id: int | None = None


def _public(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    data.pop("key_hash", None)
    data["scopes"] = sorted(data["scopes"], key=SCOPES.index)
    return data


class KeyService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.lookups = 0  # single-key queries run (``find``): what a flood of wrong keys costs

    async def create(self, name: str, scopes: Iterable[Scope]) -> tuple[str, dict[str, Any]]:
        """A new key named ``name``: returns the key (to show once) and its stored row."""
        key = new_key()
        row = {
            "name": name,
            "key_hash": key_hash(key),
            "prefix": key[: len(KEY_PREFIX) + 4],
            "scopes": sorted(set(scopes), key=SCOPES.index),
            "created_at": datetime.now(UTC),
        }
        async with translate_errors("creating an API key"):
            try:
                async with self.db.engine.begin() as conn:
                    result = await conn.execute(api_keys.insert().returning(*api_keys.c), [row])
                    stored = _public(result.one())
                    await audit.record(conn, "keys.create", name, after=_audited(stored))
            except IntegrityError as exc:
                raise Conflict(f"a live key named {name!r} exists: revoke it first") from exc
        return key, stored

    async def listing(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with translate_errors("listing API keys"), self.db.engine.connect() as conn:
            return [_public(row) for row in await conn.execute(query)]

    async def revoke(self, name: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        async with translate_errors("revoking an API key"), self.db.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(*api_keys.c)
            )
            found = result.first()
            if found is None:
                raise NotFound(f"no live key named {name!r}")
            revoked = _public(found)
            before = _audited(revoked) | {"revoked_at": None}
            await audit.record(conn, "keys.revoke", name, before=before, after=_audited(revoked))
        return revoked

    async def table(self) -> list[KeyEntry]:
        """Every key, live and revoked: what checking keys needs, never a key."""
        c = api_keys.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(c.id, c.name, c.key_hash, c.scopes, c.revoked_at))
            return [_entry(row) for row in rows]

    async def find(self, digest: str) -> KeyEntry | None:
        """The key whose hash is ``digest``, live or revoked; None if there is none."""
        self.lookups += 1
        c = api_keys.c
        query = select(c.id, c.name, c.key_hash, c.scopes, c.revoked_at).where(c.key_hash == digest)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _entry(row)

    async def touch(self, ids: Iterable[int], when: datetime) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.id.in_(list(ids))).values(last_used_at=when)
            )


def _entry(row: Any) -> KeyEntry:
    return KeyEntry(row[0], row[1], row[2], tuple(row[3]), row[4] is not None)


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "prefix", "scopes", "created_at", "revoked_at")
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items() if k in keep
    }


class Lookup(enum.Enum):
    NEEDED = "needed"  # the key is not known here yet: ask the database (``KeyRing.look_up``)


NEEDED = Lookup.NEEDED
UNKNOWN_TTL_S = 60.0  # how long a hash found nowhere is refused without asking again
UNKNOWN_MAX = 10_000  # hashes remembered as unknown (least recently refused go first)
LOOKUPS_AT_ONCE = 4  # database lookups in flight per process; more wait their turn
PAUSE_S = 1.0  # after a failed lookup, unknown keys get 503 without asking for this long


class KeyRing:
    """The key table of the database, in memory: the live keys by hash, the revoked hashes,
    and the hashes recently found nowhere."""

    def __init__(
        self,
        service: KeyService,
        admin_token: str | None = None,
        *,
        snapshot_path: Path | None = None,
        lookup_timeout_s: float = 1.0,
    ) -> None:
        self.service = service
        self.snapshot_path = snapshot_path
        self.lookup_timeout_s = lookup_timeout_s
        self._bootstrap = key_hash(admin_token) if admin_token else None
        self._by_hash: dict[str, Principal] = {}
        self._revoked: set[str] = set()
        self._unknown: OrderedDict[str, float] = OrderedDict()  # hash -> refused until
        self._used: set[int] = set()
        self._inflight: dict[str, asyncio.Task[Principal | None]] = {}
        self._lookup_slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        self._paused_until = 0.0
        self._saved: bytes | None = None
        # database: read from it by this process; snapshot: the last copy saved beside the
        # spool, trusted once the database has failed to answer; none: nothing known yet.
        self.source: Literal["none", "snapshot", "database"] = "none"
        self._database_failed = False
        if snapshot_path is not None:
            self._load_snapshot(snapshot_path)

    @property
    def loaded(self) -> bool:
        return self.source != "none"

    async def verify(self, presented: str) -> Principal | None:
        """The principal a bearer key belongs to; None for an unknown or revoked key.
        Raises Unavailable when the database would have to be asked and cannot answer."""
        found = self.cached(presented)
        return await self.look_up(presented) if found is NEEDED else found

    def cached(self, presented: str) -> Principal | Lookup | None:
        """What is known here without the database: the principal, None (refused), or
        NEEDED. The common case — a known key — costs one hash and one dict lookup."""
        digest = key_hash(presented)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(BOOTSTRAP_NAME, frozenset({"admin"}))
        trusted = self.source == "database" or (self.source == "snapshot" and self._database_failed)
        if not trusted:  # a snapshot not yet confirmed, or nothing: the database decides
            return NEEDED
        found = self._by_hash.get(digest)
        if found is not None:
            if found.key_id is not None:
                self._used.add(found.key_id)
            return found
        if digest in self._revoked:
            return None
        refused_until = self._unknown.get(digest)
        if refused_until is not None and time.monotonic() < refused_until:
            return None
        return NEEDED

    async def look_up(self, presented: str) -> Principal | None:
        """Ask the database about a key not known here; concurrent requests with the same key
        share one query. With the database away or slow, the snapshot's word (if it has one)
        stands, else 503."""
        digest = key_hash(presented)
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(self._look_up(digest))
            self._inflight[digest] = task
            task.add_done_callback(functools.partial(self._finished, digest))
        found = await asyncio.shield(task)  # a waiter that goes away leaves it to the others
        if found is not None and found.key_id is not None:
            self._used.add(found.key_id)
        return found

    def _finished(self, digest: str, task: asyncio.Task[Principal | None]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved here even when every waiter went away

    async def _look_up(self, digest: str) -> Principal | None:
        if time.monotonic() >= self._paused_until:
            try:
                async with asyncio.timeout(self.lookup_timeout_s), self._lookup_slots:
                    entry = await self.service.find(digest)
            except Exception as exc:
                self._paused_until = time.monotonic() + PAUSE_S
                self._database_failed = True
                log.warning("API key lookup failed", extra={"error": repr(exc)})
            else:
                return self._learn(digest, entry)
        if digest in self._by_hash:
            return self._by_hash[digest]
        if digest in self._revoked:
            return None
        raise Unavailable("API keys cannot be checked while the database is unreachable")

    def _learn(self, digest: str, entry: KeyEntry | None) -> Principal | None:
        if entry is None:
            self._by_hash.pop(digest, None)
            self._unknown[digest] = time.monotonic() + UNKNOWN_TTL_S
            self._unknown.move_to_end(digest)
            while len(self._unknown) > UNKNOWN_MAX:
                self._unknown.popitem(last=False)
            return None
        if entry.revoked:
            self._by_hash.pop(digest, None)
            self._revoked.add(digest)
            return None
        principal = Principal(entry.name, parse_known(entry.scopes), entry.key_id)
        self._by_hash[digest] = principal
        return principal

    async def refresh(self) -> None:
        """Re-read the key table (replacing what the snapshot said), save it if it changed,
        and record which keys were used since the last time."""
        try:
            entries = await self.service.table()
        except Exception:
            self._database_failed = True
            raise
        self._replace(entries)
        self.source, self._database_failed = "database", False
        await self._save(entries)
        used, self._used = self._used, set()
        if used:
            await self.service.touch(used, datetime.now(UTC))

    async def forever(self, interval_s: float) -> None:
        """Re-read the keys every ``interval_s``; a failed read keeps the last known set."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.debug("API keys not refreshed", extra={"error": repr(exc)})
            await asyncio.sleep(interval_s)

    def _replace(self, entries: list[KeyEntry]) -> None:
        self._by_hash = {
            e.digest: Principal(e.name, parse_known(e.scopes), e.key_id)
            for e in entries
            if not e.revoked
        }
        self._revoked = {e.digest for e in entries if e.revoked}

    def _load_snapshot(self, path: Path) -> None:
        entries = snapshot.read(path)
        if entries is None:
            return
        self._replace(entries)
        self._saved = snapshot.encode(entries)
        self.source = "snapshot"
        log.info("API keys loaded from the snapshot", extra={"path": str(path),
                 "keys": len(self._by_hash), "revoked": len(self._revoked)})  # fmt: skip

    async def _save(self, entries: list[KeyEntry]) -> None:
        if self.snapshot_path is None:
            return
        content = snapshot.encode(entries)
        if content == self._saved:
            return
        try:
            await asyncio.to_thread(snapshot.write, self.snapshot_path, content)
        except OSError as exc:  # the keys in memory are right; the next change retries
            log.warning("API key snapshot not saved", extra={"error": repr(exc)})
            return
        self._saved = content
