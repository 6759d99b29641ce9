"""Part F: what the serving features buy, each pair measured in one run on one machine.

- The prediction cache (`PREDICTD_CACHE=local`): a workload where 90% of the requests repeat
  one of 50 inputs against one where every input is new; same server settings both times.
- `/batch` (100 items a request) against single `/predict`, in predictions per second.

Every predictd here records to PostgreSQL (`process` durability, micro-batching on), and rows
are counted against 2xx answers x items, as in part A (the server's own count of 2xx answers
on the path, from /metrics). The load is part A's closed loop, from the same generator
(``--loadgen``: wrk when installed, else loadgen.py).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import Postgres
from benchmarks.report import Verdict, table
from benchmarks.targets import (
    LoadSettings,
    TargetResult,
    bench_target,
    load_notes,
    load_text,
    predictd_server,
    rows_check,
)

TARGET_CACHE = 2.0  # cached req/s over uncached
TARGET_BATCH = 10.0  # /batch items/s over single /predict
BATCH_ITEMS = 100
REPEAT_SHARE = 0.9
HOT_INPUTS = 50
BODIES = 200_000  # more than any run sends, so "unique" stays unique


@dataclass(frozen=True)
class Run:
    name: str
    description: str
    bodies: str  # key into the bodies files
    path: str
    items: int
    env: dict[str, str]


RUNS = (
    Run("cache-repeat", f"PREDICTD_CACHE=local, {REPEAT_SHARE:.0%} of inputs repeat",
        "repeat", "/predict", 1, {"PREDICTD_CACHE": "local"}),
    Run("cache-unique", "PREDICTD_CACHE=local, every input new",
        "unique", "/predict", 1, {"PREDICTD_CACHE": "local"}),
    Run("single", "POST /predict, every input new", "unique", "/predict", 1, {}),
    Run("batch", f"POST /batch, {BATCH_ITEMS} new inputs a request",
        "batch", "/batch", BATCH_ITEMS, {}),
)  # fmt: skip


def _texts() -> list[str]:
    from predictd.demo.train import load_sentiment_data

    texts, _ = load_sentiment_data()
    return list(texts)


def write_bodies(work: Path) -> dict[str, Path]:
    """Three body files: 90% repeats of 50 inputs; all unique; /batch bodies of unique items."""
    rng = random.Random(0)
    texts = _texts()
    hot = [f"{t} (hot {n})" for n, t in enumerate(rng.sample(texts, HOT_INPUTS))]

    def unique(n: int) -> str:
        return f"{texts[n % len(texts)]} #{n}"

    files = {name: work / f"bodies-{name}.jsonl" for name in ("repeat", "unique", "batch")}
    with files["repeat"].open("w") as out:
        for n in range(BODIES):
            text = rng.choice(hot) if rng.random() < REPEAT_SHARE else unique(n)
            out.write(json.dumps({"text": text}) + "\n")
    with files["unique"].open("w") as out:
        for n in range(BODIES):
            out.write(json.dumps({"text": unique(n)}) + "\n")
    with files["batch"].open("w") as out:
        for n in range(BODIES // BATCH_ITEMS):
            items = [{"text": unique(n * BATCH_ITEMS + i)} for i in range(BATCH_ITEMS)]
            out.write(json.dumps({"items": items}) + "\n")
    return files


def run_serving(
    args: argparse.Namespace, pg: Postgres, model: Path, work: Path
) -> list[TargetResult]:
    bodies = write_bodies(work)
    results: list[TargetResult] = []
    order = [(r, run) for r in range(1, args.rounds + 1)
             for run in (RUNS if r % 2 else RUNS[::-1])]  # fmt: skip
    for rnd, run in order:
        load = LoadSettings(args.concurrency, args.duration, args.warmup, bodies[run.bodies],
                            args.quiet_threshold, args.quiet_max_wait,
                            generator=args.loadgen)  # fmt: skip
        url = pg.create_database(run.name.replace("-", "_"))
        workdir = work / f"serving-{run.name}-{rnd}"
        print(f"[F] {run.name}{f' round {rnd}' if args.rounds > 1 else ''}: "
              f"{args.warmup:g}+{args.duration:g} s, c={args.concurrency}")  # fmt: skip
        server = predictd_server(run.name, url, model, workdir, record=True, extra_env=run.env)
        result = bench_target(server, run.description, pg, url, load, ready_path="/ready",
                              expect_rows=True, path=run.path,
                              items_per_request=run.items, count_answers=True)  # fmt: skip
        result.round = rnd
        print(
            f"    {result.rps:.0f} req/s ({result.rps * run.items:,.0f} predictions/s), "
            f"p99 {result.load['p99_ms']:.1f} ms, {result.ok} ok, {result.rows} rows"
        )
        results.append(result)
        pg.checkpoint()
    return results


def _median(runs: list[TargetResult], name: str, items: bool = False) -> float:
    values = [r.rps * (r.items_per_request if items else 1) for r in runs if r.name == name]
    return statistics.median(values) if values else 0.0


def _ratio(what: str, over: float, under: float, target: float) -> list[Verdict]:
    if not (over and under):
        return []
    ratio = over / under
    measured = f"{ratio:.2f}x ({over:,.0f} / {under:,.0f})"
    return [Verdict(f"serving, {what}", f">= {target:.0f}x", measured, ratio >= target)]


def serving_verdicts(runs: list[TargetResult]) -> list[Verdict]:
    out = _ratio("cached (90% repeats) req/s vs uncached", _median(runs, "cache-repeat"),
                 _median(runs, "cache-unique"), TARGET_CACHE)  # fmt: skip
    out += _ratio("/batch predictions/s vs single /predict", _median(runs, "batch", items=True),
                  _median(runs, "single", items=True), TARGET_BATCH)  # fmt: skip
    for name in dict.fromkeys(r.name for r in runs):
        mine = [r for r in runs if r.name == name]
        failed = sum(r.load["non_2xx_total"] + r.load["errors_total"] for r in mine)
        measured, met = rows_check(mine)
        out.append(Verdict(f"serving, rows lost, {name}", "0", measured, met))
        if failed:
            out.append(Verdict(f"serving, failed requests, {name}", "0", str(failed), False))
    return out


def serving_section(args: argparse.Namespace, runs: list[TargetResult],
                    preface: list[str]) -> list[str]:  # fmt: skip
    rows = [
        [r.label, r.description, f"{r.rps:,.0f}", f"{r.rps * r.items_per_request:,.0f}",
         f"{r.load['p50_ms']:.1f}", f"{r.load['p99_ms']:.1f}", f"{r.ok:,}", f"{r.rows:,}",
         f"{r.rows_lost:,}", f"{r.server_cpu_pct:.0f}%"]
        for r in runs
    ]  # fmt: skip
    headers = ["run", "what", "req/s", "predictions/s", "p50 ms", "p99 ms", "2xx", "rows",
               "rows lost", "server CPU"]  # fmt: skip
    return [
        "## F. Prediction cache and `/batch`",
        "",
        *preface,
        load_text(args.loadgen, args.concurrency, args.warmup, args.duration)
        + f" per run, as in part A; {args.rounds} round(s), order reversed every "
        "other round. Every server records to PostgreSQL. `cache-repeat` sends one of "
        f"{HOT_INPUTS} inputs {REPEAT_SHARE:.0%} of the time and a new one otherwise; "
        "`cache-unique` and `single` never repeat an input; `batch` sends "
        f"{BATCH_ITEMS} new inputs per `/batch` request. Rows are checked against 2xx x items.",
        "",
        *load_notes(args.loadgen),
        *table(headers, rows),
        "",
    ]
