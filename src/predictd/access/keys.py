"""API keys: created once (the key is shown then and never again), kept as SHA-256, revoked
by name. ``KeyService`` holds every query on the key table; checking a presented key against
it, in memory and through database outages, is ``keyring.KeyRing``'s.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from predictd.access import audit
from predictd.access.scopes import SCOPES, Scope
from predictd.access.snapshot import KeyEntry
from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.db.tables import api_keys
from predictd.errors import Conflict, NotFound

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

    async def table(self) -> list[KeyEntry]:
        """Every key, live and revoked: what checking keys needs, never a key."""
        c = api_keys.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(c.id, c.name, c.key_hash, c.scopes, c.revoked_at))
            return [_entry(row) for row in rows]

    async def find(self, digest: str) -> KeyEntry | None:
        """The key whose hash is ``digest``, live or revoked; None if there is none."""
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
