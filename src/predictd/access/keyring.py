"""Checking a presented API key: the key table, held in memory by each server.

Each server re-reads the table every ``PREDICTD_KEYS_REFRESH_S``, so a known key is checked
without the database and a revocation reaches every replica within that. A key the server
does not know yet (made since the last re-read) is looked up in the database on its first
use, once however many requests bring it at the same time. The lookups are bounded three
ways, so that a flood of wrong keys is neither a flood of queries nor a reason to distrust a
healthy database:

- at most ``LOOKUPS_AT_ONCE`` queries run at once, each within
  ``PREDICTD_KEYS_LOOKUP_TIMEOUT_S``; only a query that fails or overruns that counts as the
  database failing (unknown keys then get 503 for ``PAUSE_S`` without asking);
- at most ``LOOKUPS_WAITING`` more wait for one of them, each for at most the same timeout;
  beyond either, 503 ``overloaded`` at once — the database is busy, not away;
- one client address has at most ``LOOKUPS_PER_CLIENT`` lookups of distinct keys running
  (429 beyond), so one client cannot fill the queue for everyone else.

A hash found nowhere is remembered for a while (bounded in number and time), so repeating a
wrong key costs no query. Each re-read that changes the table is saved to a snapshot beside
the spool (``snapshot``): a server that starts while the database is away serves the keys it
knew, and the first re-read once the database answers applies what changed meanwhile
(revocations). A snapshot that could not be written is reported by the
``predictd_key_snapshot_stale`` gauge.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from predictd.access import snapshot
from predictd.access.keys import BOOTSTRAP_NAME, KeyService, Principal, key_hash
from predictd.access.scopes import parse_known
from predictd.access.snapshot import KeyEntry
from predictd.errors import Overloaded, TooManyRequests, Unavailable
from predictd.observability import Metrics

log = logging.getLogger("predictd.access")


class Lookup(enum.Enum):
    NEEDED = "needed"  # the key is not known here yet: ask the database (``KeyRing.look_up``)


NEEDED = Lookup.NEEDED
UNKNOWN_TTL_S = 60.0  # how long a hash found nowhere is refused without asking again
UNKNOWN_MAX = 10_000  # hashes remembered as unknown (least recently refused go first)
LOOKUPS_AT_ONCE = 4  # database lookups in flight per process
LOOKUPS_WAITING = 64  # lookups waiting for one of those; more are answered 503 at once
LOOKUPS_PER_CLIENT = 2  # distinct keys one client address may have looked up at once
PAUSE_S = 1.0  # after a failed lookup, unknown keys get 503 without asking for this long


class KeyRing:
    """The key table of the database, in memory: the live keys by hash, the revoked hashes,
    and the hashes recently found nowhere."""

    def __init__(
        self,
        service: KeyService,
        metrics: Metrics,
        admin_token: str | None = None,
        *,
        snapshot_path: Path | None = None,
        lookup_timeout_s: float = 1.0,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.snapshot_path = snapshot_path
        self.lookup_timeout_s = lookup_timeout_s
        self._bootstrap = key_hash(admin_token) if admin_token else None
        self._by_hash: dict[str, Principal] = {}
        self._revoked: set[str] = set()
        self._unknown: OrderedDict[str, float] = OrderedDict()  # hash -> refused until
        self._used: set[int] = set()
        self._inflight: dict[str, asyncio.Task[Principal | None]] = {}
        self._lookup_slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)
        self._waiting = 0  # lookups waiting for a slot
        self._by_client: dict[str, int] = {}  # client address -> its lookups in flight
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

    def pending(self, presented: str) -> bool:
        """Whether a lookup of this key is running (a request joining it costs no query)."""
        return key_hash(presented) in self._inflight

    async def look_up(self, presented: str, client: str | None = None) -> Principal | None:
        """Ask the database about a key not known here; concurrent requests with the same key
        share one query. ``client`` (the caller's address, None for no limit) may have only
        ``LOOKUPS_PER_CLIENT`` distinct keys looked up at once (429 beyond). With the database
        away or failing, the snapshot's word (if it has one) stands, else 503; with the
        lookups queue full, 503 ``overloaded``."""
        digest = key_hash(presented)
        task = self._inflight.get(digest)
        if task is None:
            if client is not None:
                running = self._by_client.get(client, 0)
                if running >= LOOKUPS_PER_CLIENT:
                    raise TooManyRequests(
                        f"too many unknown API keys from {client} at once; retry later",
                        retry_after_s=1,
                    )
                self._by_client[client] = running + 1
            task = asyncio.create_task(self._look_up(digest))
            self._inflight[digest] = task
            task.add_done_callback(functools.partial(self._finished, digest, client))
        found = await asyncio.shield(task)  # a waiter that goes away leaves it to the others
        if found is not None and found.key_id is not None:
            self._used.add(found.key_id)
        return found

    def _finished(
        self, digest: str, client: str | None, task: asyncio.Task[Principal | None]
    ) -> None:
        self._inflight.pop(digest, None)
        if client is not None:
            left = self._by_client.pop(client, 1) - 1
            if left > 0:
                self._by_client[client] = left
        if not task.cancelled():
            task.exception()  # retrieved here even when every waiter went away

    async def _look_up(self, digest: str) -> Principal | None:
        if time.monotonic() >= self._paused_until:
            async with self._slot():
                try:
                    async with asyncio.timeout(self.lookup_timeout_s):
                        entry = await self.service.find(digest)
                except Exception as exc:  # the database itself failed or overran: pause
                    self._paused_until = time.monotonic() + PAUSE_S
                    self._database_failed = True
                    self.metrics.key_lookups.labels("failed").inc()
                    log.warning("API key lookup failed", extra={"error": repr(exc)})
                else:
                    result = "unknown" if entry is None else "revoked" if entry.revoked else "found"
                    self.metrics.key_lookups.labels(result).inc()
                    return self._learn(digest, entry)
        if digest in self._by_hash:
            return self._by_hash[digest]
        if digest in self._revoked:
            return None
        raise Unavailable("API keys cannot be checked while the database is unreachable")

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the ``LOOKUPS_AT_ONCE`` query slots. Waiting for it is bounded on its own
        (in number and time) and says nothing about the database: 503 ``overloaded``."""
        busy = "too many unknown API keys are being checked; retry shortly"
        if self._lookup_slots.locked() and self._waiting >= LOOKUPS_WAITING:
            raise Overloaded(busy)
        self._waiting += 1
        try:
            async with asyncio.timeout(self.lookup_timeout_s):
                await self._lookup_slots.acquire()
        except TimeoutError:
            raise Overloaded(busy) from None
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._lookup_slots.release()

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
        if content != self._saved:
            try:
                await asyncio.to_thread(snapshot.write, self.snapshot_path, content)
            except OSError as exc:  # the keys in memory are right; the next re-read retries
                self.metrics.key_snapshot_stale.set(1)
                self.metrics.key_snapshot_write_failures.inc()
                log.warning("API key snapshot not saved", extra={"error": repr(exc)})
                return
            self._saved = content
        self.metrics.key_snapshot_stale.set(0)
