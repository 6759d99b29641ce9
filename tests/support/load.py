"""Load and probes against a real server, with a Jepsen-style ledger of what was answered.

Every request carries its own X-Request-ID (stored with the prediction), so the ledger can
tell apart: *answered* (2xx, with the prediction_id the server gave), *refused* (a non-2xx
answer: nothing may be stored for it) and *indeterminate* (no answer at all, e.g. the server
was killed mid-request: it may or may not be stored). ``judge()`` compares that with what
reached the database.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx

from tests.support.server import pg_dsn


@dataclass
class Ledger:
    answered: dict[str, str] = field(default_factory=dict)  # request_id -> prediction_id
    refused: dict[str, int] = field(default_factory=dict)  # request_id -> status
    indeterminate: set[str] = field(default_factory=set)  # request_ids without an answer
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def merge(self, other: Ledger) -> None:
        with self.lock:
            self.answered.update(other.answered)
            self.refused.update(other.refused)
            self.indeterminate |= other.indeterminate
            self.latencies.extend(other.latencies)

    @property
    def statuses(self) -> Counter[int]:
        counts = Counter(self.refused.values())
        counts[200] += len(self.answered)
        return counts

    def max_latency(self, since: float = 0.0, until: float = float("inf")) -> float:
        window = [s for at, s in self.latencies if since <= at <= until]
        return max(window, default=0.0)


class Load:
    """``clients`` threads POST /predict at about ``rate_per_s`` in all, until ``stop()``."""

    def __init__(
        self,
        base_url: str,
        *,
        clients: int = 8,
        rate_per_s: float = 200.0,
        prefix: str = "load",
        timeout_s: float = 10.0,
        body: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.headers = headers or {}
        self.interval_s = clients / rate_per_s
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.body = body
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), name=f"load-{n}", daemon=True)
            for n in range(clients)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Ledger:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)
        assert not any(t.is_alive() for t in self._threads), "load threads did not stop"
        return self.ledger

    def _client(self, n: int) -> None:
        own = Ledger()
        next_at = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=self.timeout_s) as client:
            i = 0
            while not self._stop.is_set():
                request_id = f"{self.prefix}-{n}-{i}-{uuid.uuid4().hex[:8]}"
                body = self.body or {"text": f"{self.prefix} {n} {i}: I love this product"}
                sent = time.monotonic()
                try:
                    response = client.post(
                        "/predict", json=body, headers={**self.headers, "x-request-id": request_id}
                    )
                except httpx.TransportError:
                    own.indeterminate.add(request_id)
                    time.sleep(0.05)  # the server is gone: do not spin
                else:
                    if 200 <= response.status_code < 300:
                        own.answered[request_id] = response.json()["prediction_id"]
                    else:
                        own.refused[request_id] = response.status_code
                own.latencies.append((sent, time.monotonic() - sent))
                i += 1
                next_at = max(next_at + self.interval_s, time.monotonic() - 1.0)
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        self.ledger.merge(own)


@dataclass(frozen=True)
class ProbeSample:
    at: float
    path: str
    status: int  # 0: no answer
    seconds: float


class Probes:
    """GET /health and /ready every ``interval_s`` (as a kubelet would), recording each."""

    def __init__(self, base_url: str, interval_s: float = 0.1, timeout_s: float = 2.0) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.samples: list[ProbeSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probes", daemon=True)

    def start(self) -> Probes:
        self._thread.start()
        return self

    def stop(self) -> list[ProbeSample]:
        self._stop.set()
        self._thread.join(self.timeout_s * 2 + 5)
        return self.samples

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                for path in ("/health", "/ready"):
                    started = time.monotonic()
                    try:
                        status = client.get(path).status_code
                    except httpx.TransportError:
                        status = 0
                    self.samples.append(
                        ProbeSample(started, path, status, time.monotonic() - started)
                    )
                self._stop.wait(self.interval_s)

    def statuses(self, path: str, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(s.status for s in self.samples if s.path == path and since <= s.at <= until)

    def p99(self) -> float:
        seconds = sorted(s.seconds for s in self.samples)
        if len(seconds) < 2:
            return seconds[0] if seconds else 0.0
        return statistics.quantiles(seconds, n=100, method="inclusive")[98]


@dataclass(frozen=True)
class Verdict:
    answered: int
    stored: int
    lost: list[str]  # answered, not stored
    duplicates: dict[str, int]  # prediction_id -> rows
    phantoms: list[str]  # stored for a request that was refused or never sent
    stored_indeterminate: int  # stored for a request that got no answer (allowed)
    mismatched: list[str]  # stored under another prediction_id than the answer named

    def assert_nothing_lost(self, details: str = "") -> None:
        assert not self.lost, (
            f"{len(self.lost)} of {self.answered} answered predictions not stored "
            f"(e.g. {self.lost[:3]})\n{details}"
        )
        assert not self.duplicates, f"stored more than once: {self.duplicates}\n{details}"
        assert not self.phantoms, (
            f"{len(self.phantoms)} stored predictions were never answered 2xx "
            f"(e.g. {self.phantoms[:3]})\n{details}"
        )
        assert not self.mismatched, f"stored under another id: {self.mismatched[:3]}"


async def _stored(url: str, prefix: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn(url), timeout=5)
    try:
        if not await conn.fetchval("SELECT to_regclass('public.predictions') IS NOT NULL"):
            return []
        return list(
            await conn.fetch(
                "SELECT id::text AS id, request_id FROM predictions WHERE request_id LIKE $1",
                f"{prefix}-%",
            )
        )
    finally:
        await conn.close()


def judge(url: str, ledger: Ledger, prefix: str) -> Verdict:
    """What reached the database (direct URL) against what the load generator saw."""
    rows = asyncio.run(_stored(url, prefix))
    per_id = Counter(r["id"] for r in rows)
    by_request = {r["request_id"]: r["id"] for r in rows}
    lost = [rid for rid in ledger.answered if rid not in by_request]
    mismatched = [
        rid for rid, pid in ledger.answered.items() if rid in by_request and by_request[rid] != pid
    ]
    phantoms = [
        rid for rid in by_request if rid not in ledger.answered and rid not in ledger.indeterminate
    ]
    return Verdict(
        answered=len(ledger.answered),
        stored=len(rows),
        lost=lost,
        duplicates={pid: n for pid, n in per_id.items() if n > 1},
        phantoms=phantoms,
        stored_indeterminate=sum(1 for rid in by_request if rid in ledger.indeterminate),
        mismatched=mismatched,
    )
