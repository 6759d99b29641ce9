"""API keys: created once (the key is shown then and never again), kept as SHA-256, revoked
by name. Each server holds the live keys in memory (``KeyRing``) and re-reads them every few
seconds, so a request never waits on the database to be authenticated, and a revocation
reaches every replica within ``PREDICTD_KEYS_REFRESH_S``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from predictd.access import audit
from predictd.access.scopes import SCOPES, Scope, parse_known
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

    async def live(self) -> list[tuple[int, str, str, list[str]]]:
        c = api_keys.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(c.id, c.name, c.key_hash, c.scopes).where(c.revoked_at.is_(None))
            )
            return [(row[0], row[1], row[2], list(row[3])) for row in rows]

    async def touch(self, ids: Iterable[int], when: datetime) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.id.in_(list(ids))).values(last_used_at=when)
            )


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "prefix", "scopes", "created_at", "revoked_at")
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items() if k in keep
    }


class KeyRing:
    """The live keys of the database, in memory."""

    def __init__(self, service: KeyService, admin_token: str | None = None) -> None:
        self.service = service
        self._bootstrap = key_hash(admin_token) if admin_token else None
        self._by_hash: dict[str, Principal] = {}
        self._used: set[int] = set()
        self.loaded = False

    def verify(self, presented: str) -> Principal | None:
        """The principal a bearer key belongs to; None for an unknown or revoked key.
        Raises Unavailable while the keys were never read (the database has been away since
        start): refusing is safer than guessing."""
        digest = key_hash(presented)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(BOOTSTRAP_NAME, frozenset({"admin"}))
        if not self.loaded:
            raise Unavailable("API keys cannot be checked until the database has been reached")
        found = self._by_hash.get(digest)
        if found is None:
            return None
        if found.key_id is not None:
            self._used.add(found.key_id)
        return found

    async def refresh(self) -> None:
        rows = await self.service.live()
        self._by_hash = {
            digest: Principal(name, parse_known(scopes), key_id)
            for key_id, name, digest, scopes in rows
        }
        self.loaded = True
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
