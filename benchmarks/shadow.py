"""Part C: what shadow traffic (``PREDICTD_SHADOW=true``) costs production.

Two servers on the same registry setup, each with a fresh database: model ``sentiment`` v1 in
production (the demo model) and v2, a second fit with another train/test split (a different
artifact), in staging, the candidate. ``predictd-pg`` serves with ``PREDICTD_SHADOW`` unset
(the candidate is registered, not loaded); ``predictd-pg-shadow`` with it on, so the candidate
predicts on every production input off the request path and its answers are recorded with
``variant=shadow``. Two load shapes, because they answer different questions:

* fixed rate (open loop, Poisson arrivals): production latency with and without shadow at a
  moderate load, the requirement ("a few percent at most");
* saturation (part A's closed loop): the throughput shadow costs, the candidate's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.environment import Postgres
from benchmarks.report import Verdict, table
from benchmarks.targets import LoadSettings, Server, TargetResult, bench_target, predictd_server

MODEL_NAME = "sentiment"
BASELINE, SHADOW = "predictd-pg", "predictd-pg-shadow"
TARGETS = (BASELINE, SHADOW)
TARGET_LATENCY_DELTA_PCT = 5.0  # "no more than a few percent" on production latency
BUSY_MACHINE_PCT = 25.0  # 'other CPU' above this: the run shared the machine with other work


@dataclass
class ShadowResults:
    rate: float  # req/s of the fixed-rate runs
    rate_note: str  # how that rate was chosen
    saturation: list[TargetResult] = field(default_factory=list)
    fixed: list[TargetResult] = field(default_factory=list)

    @property
    def runs(self) -> list[TargetResult]:
        return self.saturation + self.fixed


async def _register(url: str, artifact_dir: Path, production: Path, candidate: Path) -> None:
    from predictd.db import migrate
    from predictd.db.engine import Database
    from predictd.registry.models import Stage
    from predictd.registry.service import ModelRegistry
    from predictd.settings import Settings

    settings = Settings(_env_file=None, database_url=url, artifact_dir=artifact_dir)
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        stages: tuple[tuple[Path, Stage], ...] = (
            (production, "production"),
            (candidate, "staging"),
        )
        for path, stage in stages:
            version = await asyncio.to_thread(registry.inspect, path, MODEL_NAME)
            await registry.register(version, stage=stage, reuse=False)
    finally:
        await db.dispose()


def _server(name: str, url: str, workdir: Path) -> Server:
    env = {"PREDICTD_MODEL_NAME": MODEL_NAME}
    if name == SHADOW:
        env["PREDICTD_SHADOW"] = "true"
    return predictd_server(name, url, None, workdir, record=True, extra_env=env)


def _check_candidate(server: Server, shadow: bool) -> None:
    """The server must have loaded the candidate for shadowing (and only then)."""
    try:
        server.wait_ready("/ready")
        info = httpx.get(server.base + "/model-info", timeout=10).json()
    except Exception:
        server.stop()
        raise
    candidate = info.get("candidate") or {}
    if bool(candidate.get("shadow")) != shadow or info.get("version") != 1:
        server.stop()
        raise RuntimeError(f"{server.name}: unexpected /model-info {info}")


def _describe(name: str) -> str:
    shadow = "PREDICTD_SHADOW=true" if name == SHADOW else "PREDICTD_SHADOW unset"
    return f"predictd serve, PostgreSQL, v1 production + v2 staging, {shadow}"


def _rounds(args: argparse.Namespace) -> list[tuple[int, str]]:
    # Every other round in reverse order, so drift in the machine's speed favours no target.
    return [
        (r, n) for r in range(1, args.rounds + 1) for n in (TARGETS if r % 2 else TARGETS[::-1])
    ]


def _phase(
    args: argparse.Namespace,
    pg: Postgres,
    models: tuple[Path, Path],
    work: Path,
    load: LoadSettings,
    shape: str,
) -> list[TargetResult]:
    results = []
    for rnd, name in _rounds(args):
        url = pg.create_database(f"shadow_{name.replace('-', '_')}")
        workdir = work / f"shadow-{shape}-{name}-{rnd}"
        asyncio.run(_register(url, workdir / "artifacts", *models))
        how = f"{load.rate:.0f} req/s open loop" if load.rate else f"c={load.concurrency}"
        print(f"[C] {name} {shape} round {rnd}: {load.warmup:g}+{load.duration:g} s, {how}")
        server = _server(name, url, workdir)
        _check_candidate(server, name == SHADOW)
        result = bench_target(
            server,
            _describe(name),
            pg,
            url,
            load,
            ready_path="/ready",
            expect_rows=True,
            track_shadow=True,
            shadow_on=name == SHADOW,
        )
        result.round = rnd
        print(
            f"    {result.rps:.0f} req/s, p50 {result.load['p50_ms']:.1f} ms, "
            f"p99 {result.load['p99_ms']:.1f} ms, {result.ok} ok, {result.rows} rows, "
            f"{result.shadow_rows} shadow rows, {result.shadow_dropped} dropped"
        )
        results.append(result)
        pg.checkpoint()
    return results


def run_shadow(
    args: argparse.Namespace, pg: Postgres, model: Path, work: Path, bodies: Path
) -> ShadowResults:
    from predictd.demo.train import train_sentiment

    candidate = train_sentiment(work / "candidate", seed=1).path
    models = (model, candidate)
    quiet = (args.quiet_threshold, args.quiet_max_wait)
    closed = LoadSettings(args.concurrency, args.shadow_duration, args.warmup, bodies, *quiet)
    saturation = _phase(args, pg, models, work, closed, "saturation")
    if args.shadow_rate:
        rate, note = args.shadow_rate, "--shadow-rate"
    else:
        top = median(saturation, BASELINE, lambda r: r.rps)
        rate = max(1.0, round(args.shadow_rate_fraction * top))
        note = (
            f"{100 * args.shadow_rate_fraction:.0f}% of {BASELINE}'s {top:.0f} req/s at saturation"
        )
    print(f"[C] fixed rate: {rate:.0f} req/s ({note})")
    fixed_load = LoadSettings(
        args.concurrency, args.shadow_duration, args.warmup, bodies, *quiet, rate=rate
    )
    fixed = _phase(args, pg, models, work, fixed_load, "fixed-rate")
    return ShadowResults(rate, note, saturation, fixed)


def median(runs: list[TargetResult], name: str, value: Callable[[TargetResult], float]) -> float:
    got = [value(r) for r in runs if r.name == name]
    return statistics.median(got) if got else float("nan")


def _p50(r: TargetResult) -> float:
    return float(r.load["p50_ms"])


def _p99(r: TargetResult) -> float:
    return float(r.load["p99_ms"])


def _ms_per_req(r: TargetResult) -> float:
    return r.cpu_ms_per_request


def _rps(r: TargetResult) -> float:
    return r.rps


def _delta(runs: list[TargetResult], value: Callable[[TargetResult], float]) -> float:
    """Percent change of the shadow target's median over the baseline's."""
    base = median(runs, BASELINE, value)
    return 100 * (median(runs, SHADOW, value) / base - 1) if base else float("nan")


def _spread(runs: list[TargetResult], value: Callable[[TargetResult], float]) -> str:
    """Lowest to highest over the runs: how far apart runs of the same target are."""
    got = [value(r) for r in runs]
    return f"{min(got):.1f}-{max(got):.1f}"


def _busy_note(res: ShadowResults) -> list[str]:
    busy = [f"{r.label} ({_shape(res, r)})" for r in res.runs if r.other_cpu_pct > BUSY_MACHINE_PCT]
    if not busy:
        return []
    return [
        f"**Caution:** {len(busy)} of {len(res.runs)} runs shared the machine with other work "
        f"('other CPU' above {BUSY_MACHINE_PCT:g}% of a core): {', '.join(busy)}. On "
        f"{res.runs[0].cores} cores that work competes with the server and the load generator "
        "alike, so the latency deltas above are less certain than the medians suggest.",
        "",
    ]


def _shape(res: ShadowResults, r: TargetResult) -> str:
    return "saturation" if any(r is s for s in res.saturation) else "fixed rate"


def _failed(r: TargetResult) -> int:
    return int(r.load["non_2xx_total"] + r.load["errors_total"])


def summary_table(runs: list[TargetResult]) -> list[str]:
    rows = []
    for name in TARGETS:
        mine = [r for r in runs if r.name == name]
        if not mine:
            continue
        rows.append(
            [
                name,
                str(len(mine)),
                f"{median(runs, name, _rps):,.0f}",
                f"{median(runs, name, _p50):.1f}",
                _spread(mine, _p50),
                f"{median(runs, name, _p99):.1f}",
                _spread(mine, _p99),
                f"{median(runs, name, _ms_per_req):.2f}",
                f"{sum(r.ok for r in mine):,}",
                f"{sum(_failed(r) for r in mine):,}",
                f"{sum(r.rows for r in mine):,}",
                f"{sum(r.rows_lost for r in mine):,}",
                f"{sum(r.shadow_rows for r in mine):,}",
                f"{sum(r.shadow_dropped for r in mine):,}",
            ]
        )
    headers = ["target", "runs", "req/s (median)", "p50 ms (median)", "p50 ms (runs)"]
    headers += ["p99 ms (median)", "p99 ms (runs)", "server CPU ms/req (median)"]
    headers += ["2xx (all runs)", "failed", "production rows"]
    headers += ["rows lost", "shadow rows", "shadow dropped"]
    return table(headers, rows)


def _cost_line(runs: list[TargetResult], what: str, *, throughput: bool) -> str:
    def pair(value: Callable[[TargetResult], float], fmt: str, unit: str) -> str:
        a, b = median(runs, BASELINE, value), median(runs, SHADOW, value)
        return f"{a:{fmt}} → {b:{fmt}}{unit} ({_delta(runs, value):+.1f}%)"

    parts = [f"req/s {pair(_rps, ',.0f', '')}"] if throughput else []
    parts += [f"production p50 {pair(_p50, '.1f', ' ms')}", f"p99 {pair(_p99, '.1f', ' ms')}"]
    parts += [f"server CPU per answer {pair(_ms_per_req, '.2f', ' ms')}"]
    return f"Shadow's cost {what}: " + ", ".join(parts) + " (medians, without → with shadow)."


def runs_table(res: ShadowResults) -> list[str]:
    rows = []
    for shape, runs in (("saturation", res.saturation), ("fixed rate", res.fixed)):
        for r in runs:
            rows.append(
                [
                    r.label,
                    shape,
                    f"{r.rps:,.0f}",
                    f"{_p50(r):.1f}",
                    f"{_p99(r):.1f}",
                    f"{r.ok:,}",
                    f"{_failed(r):,}",
                    f"{r.rows:,}",
                    f"{r.rows_lost:,}",
                    f"{r.shadow_rows:,}",
                    f"{r.shadow_dropped:,}",
                    f"{r.server_cpu_pct:.0f}%",
                    f"{r.cpu_ms_per_request:.2f}",
                    f"{r.postgres_cpu_pct:.0f}%",
                    f"{r.loadgen_cpu_pct:.0f}%",
                    f"{r.other_cpu_pct:.0f}%",
                    f"{r.steal_pct:.0f}%",
                ]
            )
    headers = ["target", "load", "req/s", "p50 ms", "p99 ms", "2xx", "failed", "rows"]
    headers += ["rows lost", "shadow rows", "dropped", "server CPU", "ms/req", "postgres CPU"]
    headers += ["loadgen CPU", "other CPU", "steal"]
    return table(headers, rows)


def section(
    args: argparse.Namespace, res: ShadowResults, cores: int, preface: list[str]
) -> list[str]:
    out = [
        "## C. Shadow traffic (`PREDICTD_SHADOW=true`)",
        "",
        *preface,
        "Two servers on the same registry setup, each with a fresh database: `sentiment` v1 in "
        "production (the demo model, `train_sentiment(seed=0)`) and v2 in staging, the "
        "candidate (`train_sentiment(seed=1)`: another train/test split, a different "
        "artifact), registered through `ModelRegistry` before the server starts. "
        f"**{BASELINE}** serves with `PREDICTD_SHADOW` unset (the candidate is registered but "
        f"not loaded); **{SHADOW}** with `PREDICTD_SHADOW=true`, so the candidate predicts on "
        "every production input off the request path and its answers are recorded with "
        "`variant=shadow`. Both record every production answer into PostgreSQL as in part A. "
        f"{args.warmup:g} s warm-up, then {args.shadow_duration:g} s measured per run; "
        f"{args.rounds} round{'s' if args.rounds > 1 else ''} of each load shape, targets "
        "interleaved (every other round in reverse order), comparisons from medians. "
        "Production rows are counted as in part A; shadow rows, and "
        "`predictd_shadow_dropped_total` from `/metrics`, once the shadow work has caught up "
        "after the load. As in part A the server, PostgreSQL and the load generator share "
        f"the machine's {cores} cores: CPU the candidate takes is CPU the others do not get.",
        "",
        f"- **Fixed rate** (the requirement: shadow may add at most a few percent to "
        "production latency): open-loop load (`benchmarks/loadgen.py --rate`), Poisson "
        f"arrivals at {res.rate:,.0f} req/s ({res.rate_note}), the same seeded schedule for "
        f"every run, over up to {args.concurrency} connections; a request's latency runs from "
        "its scheduled send time.",
        f"- **Saturation** (what shadow costs in throughput: the candidate needs CPU too): part "
        f"A's closed loop, {args.concurrency} connections.",
        "",
        f"### Fixed rate, {res.rate:,.0f} req/s",
        "",
        *summary_table(res.fixed),
        "",
        _cost_line(res.fixed, f"at {res.rate:,.0f} req/s", throughput=False),
        "",
        f"### Saturation, {args.concurrency} connections",
        "",
        *summary_table(res.saturation),
        "",
        _cost_line(res.saturation, "at saturation", throughput=True),
        "",
        *_busy_note(res),
        "Every run:",
        "",
        *runs_table(res),
        "",
        f"CPU columns as in part A (percent of one core, {cores} cores). 'rows' are production "
        "rows; 'shadow rows' the candidate's, one per shadowed answer; 'dropped' is "
        "`predictd_shadow_dropped_total` (queue full, schema mismatch or candidate error).",
        "",
    ]
    for shape, runs in (("saturation", res.saturation), ("fixed rate", res.fixed)):
        for r in runs:
            extra = ""
            if r.load.get("mode") == "open":
                extra = f", sends up to {r.load['dispatch_late_p99_ms']:.1f} ms late (p99)"
            if r.name == SHADOW:
                extra += f"; shadow caught up {r.shadow_drain_s:.1f} s after the load"
            out.append(
                f"- **{r.label}**, {shape}: p90 {r.load['p90_ms']:.1f} ms, max "
                f"{r.load['max_ms']:.1f} ms; statuses {r.load['statuses']}{extra}; machine "
                f"{r.background_busy_pct:.0f}% busy before the run (waited "
                f"{r.waited_quiet_s:.0f} s); rows caught up {r.drain_s:.1f} s after the load"
            )
            out += [f"  - {n}" for n in r.notes if "\n" not in n]
    out.append("")
    return out


def verdicts(res: ShadowResults) -> list[Verdict]:
    out = []
    fixed = res.fixed
    for what, value in (("p50", _p50), ("p99", _p99)):
        base, shadow = median(fixed, BASELINE, value), median(fixed, SHADOW, value)
        delta = _delta(fixed, value)
        out.append(
            Verdict(
                f"shadow, production {what} at {res.rate:,.0f} req/s",
                f"<= +{TARGET_LATENCY_DELTA_PCT:g}% vs no shadow",
                f"{delta:+.1f}% ({shadow:.1f} / {base:.1f} ms)",
                delta <= TARGET_LATENCY_DELTA_PCT,
            )
        )
    runs = [r for r in fixed if r.name == SHADOW]
    rows, shadowed = sum(r.rows for r in runs), sum(r.shadow_rows for r in runs)
    dropped = sum(r.shadow_dropped for r in runs)
    out.append(
        Verdict(
            f"shadow, shadowed answers at {res.rate:,.0f} req/s",
            "every one, none dropped",
            f"{shadowed:,} shadow rows / {rows:,} production, {dropped:,} dropped",
            shadowed == rows and dropped == 0 and rows > 0,
        )
    )
    runs = [r for r in res.saturation if r.name == SHADOW]
    ok, shadowed = sum(r.ok for r in runs), sum(r.shadow_rows for r in runs)
    dropped = sum(r.shadow_dropped for r in runs)
    out.append(
        Verdict(
            "shadow, shadow work accounted at saturation",
            "shadow rows + dropped = 2xx",
            f"{shadowed:,} + {dropped:,} / {ok:,}",
            shadowed + dropped == ok and ok > 0,
        )
    )
    for name in TARGETS:
        mine = [r for r in res.runs if r.name == name]
        lost, failed = sum(r.rows_lost for r in mine), sum(_failed(r) for r in mine)
        out.append(
            Verdict(
                f"shadow, rows lost, {name}",
                "0",
                f"{lost} ({sum(r.rows for r in mine)} rows / {sum(r.ok for r in mine)} 2xx)",
                lost == 0,
            )
        )
        if failed:
            out.append(Verdict(f"shadow, failed requests, {name}", "0", str(failed), False))
        if name == BASELINE and any(r.shadow_rows for r in mine):
            out.append(Verdict(f"shadow, no shadow rows, {name}", "0", "some", False))
    return out


def raw(res: ShadowResults) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "rate": res.rate,
        "rate_note": res.rate_note,
        "saturation": [asdict(r) for r in res.saturation],
        "fixed": [asdict(r) for r in res.fixed],
    }
