"""HTTP load generator: closed loop (N connections, each sending POSTs back to back) or, with
``--rate``, open loop (POSTs sent at Poisson-distributed times, a fixed mean rate whatever the
server's speed, over up to N connections).

Run as its own process (``python benchmarks/loadgen.py --url ...``) so that its CPU use is
accounted apart from the orchestrator's; it prints one JSON object on stdout.

Every request that was started is awaited to the end (never cancelled at the deadline), so
``ok_total`` is exactly the number of 2xx answers the server gave, which the suite compares
with the rows found in the database afterwards. Throughput and latency are measured only in
the window after the warm-up. In the open loop a request's latency runs from its scheduled
send time, so time spent waiting for a free connection behind a slow answer is counted (no
coordinated omission); the arrival times come from a seeded generator, so every target gets
the same schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import random
import resource
import sys
import time
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


def _sniffio_stub() -> None:
    """httpcore 1.0 runs ``import sniffio`` on every request. Recent anyio no longer pulls
    sniffio in, and a failed import is not cached: each request then walks sys.path
    (~3 ms of CPU per request on the benchmark machine, more than the server spends).
    The stub answers what httpcore asks, so the client measures the server, not importlib."""
    if importlib.util.find_spec("sniffio") is None:
        stub = types.ModuleType("sniffio")
        setattr(stub, "current_async_library", lambda: "asyncio")  # noqa: B010
        sys.modules["sniffio"] = stub


@dataclass
class Tally:
    warm_end: float
    end: float
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    window_done: int = 0  # 2xx answers that finished inside the measurement window
    latencies: list[float] = field(default_factory=list)  # 2xx started inside the window

    def answered(self, status: int, started: float, finished: float) -> None:
        self.statuses[status] += 1
        if 200 <= status < 300:
            if self.warm_end <= finished < self.end:
                self.window_done += 1
            if started >= self.warm_end:
                self.latencies.append(finished - started)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def _worker(
    client: httpx.AsyncClient, url: str, bodies: list[bytes], start: int, step: int, tally: Tally
) -> None:
    headers = {"content-type": "application/json"}
    i = start
    while True:
        t0 = time.perf_counter()
        if t0 >= tally.end:
            return
        body = bodies[i % len(bodies)]
        i += step
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            tally.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.01)
            continue
        tally.answered(response.status_code, t0, time.perf_counter())


async def run_load(
    url: str, bodies: list[bytes], concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    # One client per connection: httpcore's pool scans every connection it holds on each
    # request, which with one shared pool of N costs the client more CPU than the server.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(60.0)
    health = url.rsplit("/", 1)[0] + "/health"
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=timeout))
            for _ in range(concurrency)
        ]
        await asyncio.gather(*(c.get(health) for c in clients))  # connect before the clock
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        now = time.perf_counter()
        tally = Tally(warm_end=now + warmup, end=now + warmup + duration)
        await asyncio.gather(
            *(_worker(c, url, bodies, k, concurrency, tally) for k, c in enumerate(clients))
        )
        finished = time.perf_counter()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return _summary(url, concurrency, duration, warmup, tally, finished - now, cpu0, cpu1)


async def _one(
    free: asyncio.Queue[httpx.AsyncClient], url: str, body: bytes, at: float, tally: Tally
) -> None:
    """One open-loop request scheduled at ``at``: waits for a free connection, then sends."""
    client = await free.get()
    try:
        response = await client.post(
            url, content=body, headers={"content-type": "application/json"}
        )
    except httpx.HTTPError as exc:
        tally.errors[type(exc).__name__] += 1
        return
    finally:
        free.put_nowait(client)
    tally.answered(response.status_code, at, time.perf_counter())


async def run_open_load(
    url: str,
    bodies: list[bytes],
    rate: float,
    connections: int,
    duration: float,
    warmup: float,
    seed: int = 0,
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(60.0)
    health = url.rsplit("/", 1)[0] + "/health"
    rng = random.Random(seed)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=timeout))
            for _ in range(connections)
        ]
        await asyncio.gather(*(c.get(health) for c in clients))  # connect before the clock
        free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for c in clients:
            free.put_nowait(c)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        now = time.perf_counter()
        tally = Tally(warm_end=now + warmup, end=now + warmup + duration)
        pending: set[asyncio.Task[None]] = set()
        late: list[float] = []  # how far behind its schedule each measured request was sent
        at, i = now, 0
        while True:
            at += rng.expovariate(rate)
            if at >= tally.end:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if at >= tally.warm_end:
                late.append(time.perf_counter() - at)
            task = asyncio.create_task(_one(free, url, bodies[i % len(bodies)], at, tally))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        await asyncio.gather(*pending)
        finished = time.perf_counter()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result = _summary(url, connections, duration, warmup, tally, finished - now, cpu0, cpu1)
    late.sort()
    result |= {
        "mode": "open",
        "rate": rate,
        "sent": i,
        "dispatch_late_p99_ms": percentile(late, 99) * 1000,
    }
    return result


def _summary(
    url: str,
    concurrency: int,
    duration: float,
    warmup: float,
    tally: Tally,
    elapsed: float,
    cpu0: resource.struct_rusage,
    cpu1: resource.struct_rusage,
) -> dict[str, Any]:
    lat = sorted(tally.latencies)
    ok_total = sum(n for s, n in tally.statuses.items() if 200 <= s < 300)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "url": url,
        "mode": "closed",
        "concurrency": concurrency,
        "warmup_s": warmup,
        "duration_s": duration,
        "elapsed_s": elapsed,
        "ok_total": ok_total,
        "non_2xx_total": sum(n for s, n in tally.statuses.items() if not 200 <= s < 300),
        "errors_total": sum(tally.errors.values()),
        "statuses": {str(s): n for s, n in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "window_ok": tally.window_done,
        "rps": tally.window_done / duration,
        "latency_samples": len(lat),
        "p50_ms": percentile(lat, 50) * 1000,
        "p90_ms": percentile(lat, 90) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": (lat[-1] * 1000) if lat else float("nan"),
        "cpu_s": cpu_s,
        "cpu_pct": 100 * cpu_s / elapsed,
    }


def _bodies(path: str | None) -> list[bytes]:
    if path is None:
        return [json.dumps({"text": "I love this product, it works great"}).encode()]
    with open(path, "rb") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise SystemExit(f"{path}: no request bodies")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/predict")
    parser.add_argument("--bodies", help="file with one JSON request body per line")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="connections (open loop: at most)"
    )
    parser.add_argument(
        "--rate", type=float, help="open loop: this many requests per second (Poisson arrivals)"
    )
    parser.add_argument("--seed", type=int, default=0, help="open loop: arrival times' seed")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        raise SystemExit("loadgen only targets 127.0.0.1")
    _sniffio_stub()
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        run = asyncio.run
    bodies = _bodies(args.bodies)
    if args.rate is not None:
        if args.rate <= 0:
            raise SystemExit("--rate must be positive")
        result = run(
            run_open_load(
                args.url, bodies, args.rate, args.concurrency, args.duration, args.warmup, args.seed
            )
        )
    else:
        result = run(run_load(args.url, bodies, args.concurrency, args.duration, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
