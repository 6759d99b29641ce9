"""The whole benchmark run behind `make bench`: part A (HTTP), part B (ingest), part C
(shadow traffic), part D (analytics at 10 million rows), part E (drift reports over a million
rows per model); `--only SECTION` runs one of them and refreshes only its part of RESULTS.md."""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import NamedTuple

from benchmarks.analytics import AnalyticsResults, run_analytics
from benchmarks.analytics import raw as analytics_raw
from benchmarks.analytics import section as analytics_section
from benchmarks.analytics import verdicts as analytics_verdicts
from benchmarks.drift import DriftResults, run_drift
from benchmarks.drift import raw as drift_raw
from benchmarks.drift import section as drift_section
from benchmarks.drift import verdicts as drift_verdicts
from benchmarks.environment import (
    DEFAULT_ADMIN_URL,
    Machine,
    Postgres,
    code_version,
    describe_machine,
    wait_until_quiet,
)
from benchmarks.ingest import IngestResult, run_ingest
from benchmarks.report import (
    RUN_SECTIONS,
    Verdict,
    join_sections,
    merge,
    split_sections,
    table,
    verdict_table,
)
from benchmarks.serving import run_serving, serving_section, serving_verdicts
from benchmarks.shadow import ShadowResults, run_shadow
from benchmarks.shadow import raw as shadow_raw
from benchmarks.shadow import section as shadow_section
from benchmarks.shadow import verdicts as shadow_verdicts
from benchmarks.targets import (
    MLSERVER_MODEL,
    LoadSettings,
    PeerUnavailable,
    Server,
    TargetResult,
    bench_target,
    bentoml_server,
    granian_bin,
    inline_server,
    load_notes,
    load_text,
    mlserver_server,
    peer_venv,
    predictd_granian_server,
    predictd_server,
    reference_server,
    rows_check,
    wrk_bin,
    wrk_version,
)

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REPO = Path(__file__).resolve().parent.parent
TARGET_VS_NORECORD = 0.9
TARGET_VS_REFERENCE = 2.0
TARGET_VS_NOBATCH = 1.8  # issue 6: micro-batching on vs off at 32 clients
TARGET_VS_INLINE = 3.0
TARGET_VS_PEER = 4.0  # BentoML, MLServer: req/s ratio, and predictd-pg's p99 no higher
TARGET_INGEST = 50_000.0
# Other model servers, recording nothing. One that is not installed (its own venv, made by
# scripts/peer_venvs.sh) or does not start is reported as such; the other targets still run.
PEER_TARGETS = ("inline", "bentoml", "mlserver")
SERVER_PEERS = ("bentoml", "mlserver")  # compared on p99 as well as req/s
# predictd-pg's app under granian instead of uvicorn, to pick the faster server by measurement.
GRANIAN = "predictd-granian"
ALL_TARGETS: tuple[str, ...] = (
    "predictd-pg",
    GRANIAN,
    "predictd-nobatch",
    "predictd-norecord",
    "reference",
)
ALL_TARGETS += PEER_TARGETS
# Targets that may be unable to run here (not installed, failed to start): reported as such.
OPTIONAL_TARGETS = (*PEER_TARGETS, GRANIAN)
LOADGENS = ("wrk", "python")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="predictd benchmarks: /predict throughput vs. baselines, recorder ingest, "
        "shadow traffic's cost, analytics at 10 million rows, drift reports over a million "
        "rows per model.",
    )
    p.add_argument("--duration", type=float, help="measured seconds per target (default 15)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds first (default 3)")
    p.add_argument("--concurrency", type=int, default=32, help="connections (default 32)")
    p.add_argument(
        "--loadgen",
        choices=LOADGENS,
        help="closed-loop load generator of parts A and F: wrk (benchmarks/wrk_bodies.lua; "
        "whole seconds) or python (benchmarks/loadgen.py, httpx); default wrk when it is "
        "installed (scripts/ensure_bench_tools.sh). Open-loop runs (part C) use loadgen.py",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="run the targets this many times, interleaved; ratios use the median "
        "(default 3, --quick 1)",
    )
    p.add_argument("--records", type=int, help="records for the ingest part (default 200000)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 3 s per target, 20,000 records, 200,000 analytics rows, 100,000 "
        "drift rows per model; RESULTS.md is left alone unless --results is given",
    )
    p.add_argument(
        "--targets", default=",".join(ALL_TARGETS), help=f"subset of {','.join(ALL_TARGETS)}"
    )
    p.add_argument("--skip-http", action="store_true", help="leave out part A (HTTP)")
    p.add_argument("--skip-ingest", action="store_true", help="leave out part B (ingest)")
    p.add_argument("--skip-shadow", action="store_true", help="leave out part C (shadow)")
    p.add_argument("--skip-analytics", action="store_true", help="leave out part D (analytics)")
    p.add_argument("--skip-drift", action="store_true", help="leave out part E (drift)")
    p.add_argument(
        "--skip-serving", action="store_true", help="leave out part F (cache and /batch)"
    )
    p.add_argument(
        "--analytics-rows",
        type=int,
        help="part D: predictions loaded (default 10,000,000, --quick 200,000)",
    )
    p.add_argument(
        "--drift-rows",
        type=int,
        help="part E: predictions per model in the 24 h window, as many again before it "
        "(default 1,000,000, --quick 100,000)",
    )
    p.add_argument(
        "--only",
        help=f"run only these parts, comma-separated, of {','.join(RUN_SECTIONS)}; "
        "RESULTS.md keeps the other parts' text as it was",
    )
    p.add_argument(
        "--shadow-duration", type=float, help="part C: measured seconds per run (default 15)"
    )
    p.add_argument(
        "--shadow-rate",
        type=float,
        help="part C: req/s of the fixed-rate load (default: --shadow-rate-fraction of the "
        "no-shadow server's req/s at saturation, measured first)",
    )
    p.add_argument(
        "--shadow-rate-fraction",
        type=float,
        default=0.4,
        help="part C: fixed rate as a fraction of the saturation req/s (default 0.4)",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=20.0,
        help="before each run, wait for the machine to be under this %% busy (default 20)",
    )
    p.add_argument(
        "--quiet-max-wait", type=float, default=120.0, help="longest such wait, s (default 120)"
    )
    p.add_argument("--admin-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL superuser URL")
    p.add_argument("--results", type=Path, help=f"report file (default {RESULTS})")
    p.add_argument("--no-results", action="store_true", help="do not write the report file")
    p.add_argument("--json", type=Path, help="also write the raw figures as JSON here")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 15.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.records = args.records or (20_000 if args.quick else 200_000)
    args.shadow_duration = args.shadow_duration or (3.0 if args.quick else 15.0)
    args.analytics_rows = args.analytics_rows or (200_000 if args.quick else 10_000_000)
    args.drift_rows = args.drift_rows or (100_000 if args.quick else 1_000_000)
    if args.loadgen is None:
        args.loadgen = "wrk" if wrk_bin() is not None else "python"
    elif args.loadgen == "wrk" and wrk_bin() is None:
        p.error("--loadgen wrk: wrk is not installed (scripts/ensure_bench_tools.sh)")
    if args.only is not None:
        args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown_sections = set(args.sections) - set(RUN_SECTIONS)
        if unknown_sections or not args.sections:
            p.error(f"--only: expected some of {','.join(RUN_SECTIONS)}")
    else:
        args.sections = list(RUN_SECTIONS)
    skipped = {
        "http": args.skip_http,
        "ingest": args.skip_ingest,
        "shadow": args.skip_shadow,
        "analytics": args.skip_analytics,
        "drift": args.skip_drift,
        "serving": args.skip_serving,
    }
    args.sections = [s for s in RUN_SECTIONS if s in args.sections and not skipped[s]]
    if not args.sections:
        p.error("nothing left to run")
    if args.results is None and not args.quick:
        args.results = RESULTS
    if args.no_results:
        args.results = None
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(ALL_TARGETS)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}")
    if (
        args.results is not None
        and args.results.exists()
        and set(args.sections) != set(RUN_SECTIONS)
        and split_sections(args.results.read_text()) is None
    ):
        p.error(
            f"{args.results} has no section markers, so a run of some parts only cannot "
            "refresh it in place: run every part, or pass --results elsewhere"
        )
    return args


def _write_bodies(path: Path, *, v2: bool = False) -> Path:
    """Request bodies: the demo data set's own sentences, in a fixed shuffled order; ``v2``:
    the same as Open Inference Protocol (KServe V2) requests, one BYTES tensor "text"."""
    import random

    from predictd.demo.train import load_sentiment_data

    texts, _ = load_sentiment_data()
    random.Random(0).shuffle(texts)

    def body(text: str) -> object:
        if v2:
            return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}
        return {"text": text}

    path.write_text("".join(json.dumps(body(t)) + "\n" for t in texts))
    return path


class Launch(NamedTuple):
    server: Server
    description: str
    ready_path: str
    path: str = "/predict"
    v2: bool = False  # sends V2 inference requests
    records: bool = False
    counts_answers: bool = False  # its /metrics counts 2xx answers per route (predictd)


def _launch(name: str, url: str, model: Path, workdir: Path) -> Launch:
    """Start target ``name``; raises PeerUnavailable for a peer that is not installed."""
    if name == "reference":
        return Launch(
            reference_server(name, url, model, workdir),
            "FastAPI sync endpoint, psycopg2 INSERT + COMMIT per request, uvicorn",
            "/health",
            records=True,
        )
    if name == "inline":
        return Launch(
            inline_server(name, model, workdir),
            "FastAPI async endpoint, model called inline, nothing recorded, uvicorn",
            "/health",
        )
    if name == "bentoml":
        venv = peer_venv(name)
        return Launch(
            bentoml_server(name, model, workdir, venv),
            f"BentoML {venv.versions.get('bentoml', '?')} `bentoml serve`, one "
            "`@bentoml.service` (workers=1; threads=1, the default for sync APIs) with a sync "
            "`@bentoml.api`, no adaptive batching; access log off; nothing recorded",
            "/readyz",
        )
    if name == "mlserver":
        venv = peer_venv(name)
        return Launch(
            mlserver_server(name, model, workdir, venv),
            f"MLServer {venv.versions.get('mlserver', '?')} `mlserver start`, custom skops "
            "runtime, V2 inference requests, parallel_workers=0 (inference in the server's "
            "process); nothing recorded",
            f"/v2/models/{MLSERVER_MODEL}/ready",
            path=f"/v2/models/{MLSERVER_MODEL}/infer",
            v2=True,
        )
    if name == GRANIAN:
        granian = predictd_granian_server(name, url, model, workdir, record=True)
        return Launch(
            granian,
            f"the same app (`predictd.app:create_app_from_env`), PostgreSQL, under granian "
            f"{_package_version('granian')} instead of uvicorn: `--interface asgi --workers 1 "
            "--loop uvloop --runtime-mode st --no-ws`",
            "/ready",
            records=True,
            counts_answers=True,
        )
    record = name != "predictd-norecord"
    nobatch = name == "predictd-nobatch"
    env = {"PREDICTD_BATCH_MAX": "1"} if nobatch else None
    desc = "predictd serve, PostgreSQL" + (
        ", PREDICTD_BATCH_MAX=1 (no micro-batching)" if nobatch
        else "" if record else ", PREDICTD_RECORD=false"
    )  # fmt: skip
    server = predictd_server(name, url, model, workdir, record=record, extra_env=env)
    return Launch(server, desc, "/ready", records=record, counts_answers=True)


def _package_version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def loadgen_text(args: argparse.Namespace) -> str:
    """Which program drove the closed-loop runs, for the console and the report."""
    if args.loadgen == "wrk":
        return (
            f"{wrk_version()} (`-t1`, `benchmarks/wrk_bodies.lua`) for the closed-loop runs "
            "of parts A and F; `benchmarks/loadgen.py` (httpx on uvloop) for part C"
        )
    why = "--loadgen python" if wrk_bin() is not None else "wrk is not installed"
    return f"`benchmarks/loadgen.py` (httpx on uvloop) for every part ({why})"


def _one_line(error: Exception) -> str:
    """An error's first line and, for a server that died, its log's last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0].rstrip(":") + (f" ... {lines[-1]}" if len(lines) > 1 else "")
    return text.replace("|", "/")  # it goes into a markdown table


def run_http(
    args: argparse.Namespace, pg: Postgres, model: Path, work: Path
) -> tuple[list[TargetResult], dict[str, str]]:
    """Part A's runs, and the peers that could not run: name -> why (one line)."""
    load = LoadSettings(
        args.concurrency,
        args.duration,
        args.warmup,
        _write_bodies(work / "bodies.jsonl"),
        args.quiet_threshold,
        args.quiet_max_wait,
        generator=args.loadgen,
    )
    load_v2 = replace(load, bodies=_write_bodies(work / "bodies-v2.jsonl", v2=True))
    results = []
    unavailable: dict[str, str] = {}
    for name in args.targets:
        if name in SERVER_PEERS:
            try:
                peer_venv(name)
            except PeerUnavailable as exc:
                unavailable[name] = str(exc)
                print(f"[A] {name}: skipped, {exc}")
        if name == GRANIAN and granian_bin() is None:
            unavailable[name] = "not installed: no granian in .venv (pip install -e '.[bench]')"
            print(f"[A] {name}: skipped, {unavailable[name]}")
    # Every other round in reverse order, so drift in the machine's speed favours no target.
    order = [
        (r, n)
        for r in range(1, args.rounds + 1)
        for n in (args.targets if r % 2 else args.targets[::-1])
    ]
    for rnd, name in order:
        if name in unavailable:
            continue
        url = pg.create_database(name.replace("-", "_"))
        workdir = work / f"{name}-{rnd}"
        print(
            f"[A] {name}{f' round {rnd}' if args.rounds > 1 else ''}: "
            f"{args.warmup:g}+{args.duration:g} s, c={args.concurrency}"
        )
        try:
            target = _launch(name, url, model, workdir)
            result = bench_target(
                target.server,
                target.description,
                pg,
                url,
                load_v2 if target.v2 else load,
                ready_path=target.ready_path,
                expect_rows=target.records,
                path=target.path,
                count_answers=target.counts_answers,
            )
        except (PeerUnavailable, RuntimeError, OSError) as exc:
            if name not in OPTIONAL_TARGETS:
                raise
            unavailable[name] = f"failed: {_one_line(exc)}"
            print(f"    {name} failed, left out of the other rounds:\n{exc}")
            continue
        result.round = rnd
        print(
            f"    {result.rps:.0f} req/s, p50 {result.load['p50_ms']:.1f} ms, "
            f"p99 {result.load['p99_ms']:.1f} ms, {result.ok} ok, {result.rows} rows"
        )
        results.append(result)
        pg.checkpoint()
    return results, unavailable


def median_rps(http: list[TargetResult]) -> dict[str, float]:
    """Each target's req/s: the median over its rounds."""
    names = dict.fromkeys(r.name for r in http)
    return {n: statistics.median(r.rps for r in http if r.name == n) for n in names}


def median_p99(http: list[TargetResult]) -> dict[str, float]:
    """Each target's p99 latency, ms: the median over its rounds."""
    names = dict.fromkeys(r.name for r in http)
    return {n: statistics.median(r.load["p99_ms"] for r in http if r.name == n) for n in names}


def _peer_verdict(rps: dict[str, float], p99: dict[str, float], peer: str) -> Verdict:
    """predictd-pg against a model server: req/s ratio and p99, both from medians."""
    ratio = rps["predictd-pg"] / rps[peer]
    ours, theirs = p99["predictd-pg"], p99[peer]
    return Verdict(
        f"predictd-pg req/s vs {peer}",
        _target_text(peer),
        f"{ratio:.2f}x ({rps['predictd-pg']:,.0f} / {rps[peer]:,.0f}); "
        f"p99 {ours:.1f} ms vs {theirs:.1f} ms",
        ratio >= TARGET_VS_PEER and ours <= theirs,
    )


def _target_text(peer: str) -> str:
    if peer == GRANIAN:
        return GRANIAN_TARGET
    if peer in SERVER_PEERS:
        return f">= {TARGET_VS_PEER:.1f}x, p99 <= {peer}'s"
    return f">= {TARGET_VS_INLINE:.1f}x"


GRANIAN_TARGET = "pick the faster (informational)"


def median_cpu_ms(http: list[TargetResult]) -> dict[str, float]:
    """Each target's server CPU ms per 2xx answer: the median over its rounds."""
    names = dict.fromkeys(r.name for r in http)
    return {n: statistics.median(r.cpu_ms_per_request for r in http if r.name == n) for n in names}


def server_comparison(http: list[TargetResult]) -> str | None:
    """uvicorn (predictd-pg) against granian (predictd-granian): which is faster, from the
    medians of req/s and server CPU per answer; None unless both ran."""
    rps, ms = median_rps(http), median_cpu_ms(http)
    if rps.get("predictd-pg", 0.0) <= 0 or rps.get(GRANIAN, 0.0) <= 0:
        return None
    uvicorn, granian = rps["predictd-pg"], rps[GRANIAN]
    faster = "granian" if granian > uvicorn else "uvicorn"
    ratio = max(granian, uvicorn) / min(granian, uvicorn)
    cheaper = "granian" if ms[GRANIAN] < ms["predictd-pg"] else "uvicorn"
    return (
        f"{faster} is faster ({ratio:.2f}x req/s): uvicorn {uvicorn:,.0f} req/s, "
        f"{ms['predictd-pg']:.2f} ms server CPU per answer; granian {granian:,.0f} req/s, "
        f"{ms[GRANIAN]:.2f} ms; {cheaper} uses less CPU per answer"
    )


def verdicts(
    http: list[TargetResult],
    ingest: tuple[IngestResult, ...],
    unavailable: dict[str, str] | None = None,
) -> list[Verdict]:
    """``unavailable``: peers that could not run (name -> why)."""
    rps, p99 = median_rps(http), median_p99(http)
    unavailable = unavailable or {}
    out = []
    if "predictd-pg" in rps:
        for other, target in (
            ("predictd-nobatch", TARGET_VS_NOBATCH),
            ("predictd-norecord", TARGET_VS_NORECORD),
            ("reference", TARGET_VS_REFERENCE),
            ("inline", TARGET_VS_INLINE),
        ):
            if rps.get(other, 0.0) > 0:
                ratio = rps["predictd-pg"] / rps[other]
                out.append(
                    Verdict(
                        f"predictd-pg req/s vs {other}",
                        f">= {target:.1f}x",
                        f"{ratio:.2f}x ({rps['predictd-pg']:,.0f} / {rps[other]:,.0f})",
                        ratio >= target,
                    )
                )
        for peer in SERVER_PEERS:
            if rps.get(peer, 0.0) > 0:
                out.append(_peer_verdict(rps, p99, peer))
    servers = server_comparison(http)
    if servers is not None:
        out.append(Verdict(f"predictd-pg (uvicorn) vs {GRANIAN}", GRANIAN_TARGET, servers, True))
    for peer in OPTIONAL_TARGETS:
        if peer not in unavailable:
            continue
        if peer in rps:  # some rounds ran: their figures are above
            out.append(Verdict(f"every round ran, {peer}", "yes", unavailable[peer], False))
        else:
            what = f"predictd-pg req/s vs {peer}"
            if peer == GRANIAN:
                what = f"predictd-pg (uvicorn) vs {GRANIAN}"
            out.append(Verdict(what, _target_text(peer), unavailable[peer], False))
    for name in dict.fromkeys(r.name for r in http):
        runs = [r for r in http if r.name == name]
        expect = runs[0].expect_rows
        measured, met = rows_check(runs)
        want = "0" if expect else "0 (no rows at all)"
        out.append(Verdict(f"rows lost, {name}", want, measured, met))
        failed = sum(r.load["non_2xx_total"] + r.load["errors_total"] for r in runs)
        if failed:
            out.append(Verdict(f"failed requests, {name}", "0", str(failed), False))
    for i in ingest:
        out.append(
            Verdict(
                f"ingest, {i.name}",
                f">= {TARGET_INGEST:,.0f} rec/s",
                f"{i.rate:,.0f} rec/s ({i.rate / TARGET_INGEST:.2f}x)",
                i.rate >= TARGET_INGEST and i.rows_in_db == i.records,
            )
        )
    return out


def http_table(http: list[TargetResult]) -> list[str]:
    rows = [
        [
            r.label,
            f"{r.rps:,.0f}",
            f"{r.load['p50_ms']:.1f}",
            f"{r.load['p99_ms']:.1f}",
            f"{r.ok:,}",
            f"{r.load['non_2xx_total'] + r.load['errors_total']:,}",
            f"{r.rows:,}",
            f"{r.rows_lost:,}",
            f"{r.server_cpu_pct:.0f}%",
            f"{r.cpu_ms_per_request:.2f}",
            f"{r.postgres_cpu_pct:.0f}%",
            f"{r.loadgen_cpu_pct:.0f}%",
            f"{r.other_cpu_pct:.0f}%",
            f"{r.steal_pct:.0f}%",
        ]
        for r in http
    ]
    headers = ["target", "req/s", "p50 ms", "p99 ms", "2xx", "failed", "rows", "rows lost"]
    headers += ["server CPU", "ms/req", "postgres CPU", "loadgen CPU", "other CPU", "steal"]
    return table(headers, rows)


def summary_table(http: list[TargetResult]) -> list[str]:
    """One line per target: medians over its rounds, totals for answers and rows."""
    rows = []
    for name, rps in median_rps(http).items():
        runs = [r for r in http if r.name == name]
        rows.append(
            [
                name,
                str(len(runs)),
                f"{rps:,.0f}",
                f"{statistics.median(r.load['p50_ms'] for r in runs):.1f}",
                f"{statistics.median(r.load['p99_ms'] for r in runs):.1f}",
                f"{statistics.median(r.cpu_ms_per_request for r in runs):.2f}",
                f"{sum(r.ok for r in runs):,}",
                f"{sum(r.load['non_2xx_total'] + r.load['errors_total'] for r in runs):,}",
                f"{sum(r.rows for r in runs):,}",
                f"{sum(r.rows_lost for r in runs):,}",
            ]
        )
    headers = ["target", "runs", "req/s (median)", "p50 ms (median)", "p99 ms (median)"]
    headers += ["server CPU ms/req (median)", "2xx (all runs)", "failed", "rows", "rows lost"]
    return table(headers, rows)


def _cpu_note(http: list[TargetResult]) -> list[str]:
    def ms(name: str) -> float | None:
        runs = [r.cpu_ms_per_request for r in http if r.name == name]
        return statistics.median(runs) if runs else None

    on, off = ms("predictd-pg"), ms("predictd-norecord")
    if on is None or off is None:
        return []
    return [
        f"Recording's cost in server CPU: {on:.2f} ms per answer with it, {off:.2f} ms "
        f"without ({100 * (on / off - 1):+.0f}%; medians over the runs).",
        "",
    ]


def _server_note(http: list[TargetResult]) -> list[str]:
    text = server_comparison(http)
    if text is None:
        return []
    return [f"uvicorn or granian for the same app (medians over the runs): {text}.", ""]


def ingest_table(ingest: tuple[IngestResult, ...]) -> list[str]:
    rows = [
        [
            i.name,
            f"{i.records:,}",
            f"{i.batch:,}",
            f"{i.seconds:.2f}",
            f"{i.rate:,.0f}",
            f"{i.rows_in_db:,}",
            i.detail,
        ]
        for i in ingest
    ]
    return table(["path", "records", "batch", "seconds", "rec/s", "rows in db", "notes"], rows)


def report(
    args: argparse.Namespace,
    machine: Machine,
    code: str,
    started: datetime,
    wall_s: float,
    http: list[TargetResult],
    ingest: tuple[IngestResult, ...],
    shadow: ShadowResults | None,
    analytics: AnalyticsResults | None,
    drift: DriftResults | None,
    serving: list[TargetResult],
    vs: list[Verdict],
    *,
    merged: bool,
    unavailable: dict[str, str] | None = None,
) -> dict[str, str]:
    """The report's sections by name. ``merged``: the parts that ran go into a file whose
    other parts (and header) come from another run, so each names its own run;
    ``unavailable``: part A's peers that could not run, and why."""
    args_text = " ".join(sys.argv[1:])
    cmd = (
        f"`.venv/bin/python benchmarks/run.py {args_text}`"
        if args_text
        else "`make bench` (= `.venv/bin/python benchmarks/run.py`)"
    )
    pgs = ", ".join(f"{k}={v}" for k, v in machine.postgres_settings.items())
    pkgs = ", ".join(f"{k} {v}" for k, v in machine.packages.items())
    run = [
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC (run took {wall_s:.0f} s)",
        f"- **Command:** {cmd}",
        f"- **Code:** {code}",
        f"- **Machine:** {machine.cpu_model}, {machine.cores} cores"
        f"{' (virtual machine)' if machine.virtual else ''}, "
        f"{machine.ram_gib:.1f} GiB RAM, {machine.os}",
        f"- **Python:** {machine.python}; {pkgs}",
        f"- **PostgreSQL:** {machine.postgres} on 127.0.0.1 ({pgs})",
        f"- **Load generator:** {loadgen_text(args)}",
        "",
    ]
    preface = ["Refreshed on its own, not by the run described at the top:", "", *run]
    preface = preface if merged else []
    sections: dict[str, list[str]] = {}
    sections["header"] = [
        "# predictd benchmark results",
        "",
        "Generated by `benchmarks/run.py` (`make bench`); rerun it to refresh this file. "
        f"`--only {'|'.join(RUN_SECTIONS)}` refreshes one part and keeps the others' text: "
        "such a part names its own run; every other figure comes from the run below. One "
        "machine, one model (the demo sentiment model, TF-IDF + LogisticRegression, trained "
        "by `predictd.demo.train.train_sentiment`; part C adds a candidate trained the same "
        "way on another split; part D serves analytics from a database of synthetic "
        "predictions; part E adds the demo breast-cancer model for drift reports).",
        "",
        *run,
    ]
    if http or unavailable:
        out = [
            "## A. `POST /predict` over HTTP",
            "",
            *preface,
            load_text(args.loadgen, args.concurrency, args.warmup, args.duration)
            + " per target"
            + (
                f"; {args.rounds} rounds, targets interleaved (every other round in reverse "
                "order), ratios from each target's median"
                if args.rounds > 1
                else ""
            )
            + ". Request bodies are the demo data set's sentences (for MLServer, the same as V2 "
            "inference requests). Every server serves HTTP from one process (BentoML and "
            "granian add a supervisor process; server CPU counts a server's child processes "
            "too) on the same machine as PostgreSQL and the load generator (nothing pinned), "
            "with a fresh "
            "database. `inline`, `bentoml` and `mlserver` record nothing; BentoML and MLServer "
            "run from their own virtualenvs (`scripts/peer_venvs.sh`) with .venv's "
            "scikit-learn and skops. Rows are counted after the load stops, once the "
            "table has caught up (or stopped growing) and the server has exited on SIGTERM.",
            "",
            *load_notes(args.loadgen),
            *summary_table(http),
            "",
            *_cpu_note(http),
            *_server_note(http),
            "Every run:",
            "",
            *http_table(http),
            "",
            f"CPU columns are percent of one core over the load run ({machine.cores} cores: "
            f"{100 * machine.cores}% is the whole machine); 'ms/req' is server CPU time per "
            "2xx answer, less sensitive than req/s to CPU stolen by other guests. "
            "'other CPU' is busy time not attributed to the server, PostgreSQL or the load "
            "generator (other programs, kernel threads, interrupts); 'steal' is vCPU time "
            "the hypervisor gave to other guests. Each run starts after a second in which "
            "the machine was under "
            f"{args.quiet_threshold:g}% busy (waiting up to {args.quiet_max_wait:g} s).",
            "",
        ]
        for r in http:
            drain = f"; rows caught up {r.drain_s:.1f} s after the load" if r.expect_rows else ""
            out.append(
                f"- **{r.label}** ({r.description}): p90 {r.load['p90_ms']:.1f} ms, max "
                f"{r.load['max_ms']:.1f} ms; statuses {r.load['statuses']}; machine "
                f"{r.background_busy_pct:.0f}% busy before the run (waited "
                f"{r.waited_quiet_s:.0f} s){drain}"
            )
            out += [f"  - {n}" for n in r.notes if "\n" not in n]
        for name, why in (unavailable or {}).items():
            out.append(f"- **{name}**: not measured ({why})")
        out.append("")
        sections["http"] = out
    if ingest:
        sections["ingest"] = [
            "## B. Recorder ingest into PostgreSQL (no HTTP)",
            "",
            *preface,
            "Records shaped like the demo model's (text input, label, 3 probabilities,",
            "request id, client ip, user agent), built before the clock starts; fresh",
            "`predictions` table (created by the migrations) truncated before each run; one",
            "process on uvloop, like the server; default settings (`record_batch` 1000,",
            "`record_flush_ms` 50, `record_queue_max` 50,000, `process` durability).",
            "",
            "- `PredictionWriter.write`: the shipper's database step alone, batches of",
            "  `record_batch` records, one at a time, then `record_concurrency` at a time.",
            "- `PredictionRecorder, paced`: every record through `record()` one at a time (spool",
            "  write + queue), the shipper committing batches; the producer keeps the backlog",
            "  under half the queue, so the shipper always ships from memory (sustained rate).",
            "- `PredictionRecorder, burst`: the same, as fast as `record()` takes them; past",
            "  `record_queue_max` the shipper reads records back from the spool (catch-up path).",
            "- `PredictionRecorder, burst, N per call`: `record()` given N records a call (as",
            "  `/batch` does), so the producer's per-call cost weighs less on the figure.",
            "",
            "The clock stops when every record is committed (spool watermark at the last LSN).",
            "",
            *ingest_table(ingest),
            "",
        ]
    if shadow is not None:
        sections["shadow"] = shadow_section(args, shadow, machine.cores, preface)
    if analytics is not None:
        sections["analytics"] = analytics_section(args, analytics, preface)
    if drift is not None:
        sections["drift"] = drift_section(args, drift, preface)
    if serving:
        sections["serving"] = serving_section(args, serving, preface)
    sections["targets"] = ["## Targets", "", *verdict_table(vs), ""]
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so the finally blocks below still run
    pg = Postgres(args.admin_url)
    machine = describe_machine(pg)
    started, t0 = datetime.now(UTC), time.monotonic()
    code, digest = code_version(REPO)
    http: list[TargetResult] = []
    unavailable: dict[str, str] = {}
    ingest: tuple[IngestResult, ...] = ()
    shadow: ShadowResults | None = None
    analytics: AnalyticsResults | None = None
    drift: DriftResults | None = None
    serving: list[TargetResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="predictd-bench-") as tmp:
            work = Path(tmp)
            from predictd.demo.train import train_sentiment

            model = train_sentiment(work / "model").path
            print(f"model: {model} ({model.stat().st_size:,} bytes)")
            print(f"load generator: {loadgen_text(args)}")
            if "http" in args.sections:
                http, unavailable = run_http(args, pg, model, work)
            if "ingest" in args.sections:
                print(f"[B] ingest: {args.records:,} records")
                url = pg.create_database("ingest")
                wait_until_quiet(args.quiet_threshold, args.quiet_max_wait)
                ingest = run_ingest(url, work / "ingest-spool", args.records)
                for i in ingest:
                    print(f"    {i.name}: {i.rate:,.0f} rec/s ({i.rows_in_db:,} rows)")
            if "shadow" in args.sections:
                bodies = _write_bodies(work / "bodies.jsonl")
                shadow = run_shadow(args, pg, model, work, bodies)
            if "analytics" in args.sections:
                analytics = run_analytics(args, pg, model, work)
            if "drift" in args.sections:
                drift = run_drift(args, pg, model, work)
            if "serving" in args.sections:
                serving = run_serving(args, pg, model, work)
    finally:
        dropped = pg.drop_all()
        if dropped:
            print(f"dropped databases: {', '.join(dropped)}")
    wall = time.monotonic() - t0
    code_note = f"{code}, src/ digest {digest}"
    if code_version(REPO)[1] != digest:
        code_note += " -- WARNING: src/ changed during the run; figures mix code versions"
        print(f"warning: src/ changed during the run ({code})", file=sys.stderr)
    vs = verdicts(http, ingest, unavailable) + (shadow_verdicts(shadow) if shadow else [])
    vs += analytics_verdicts(analytics) if analytics else []
    vs += drift_verdicts(drift) if drift else []
    vs += serving_verdicts(serving) if serving else []
    print()
    if http:
        print("\n".join(http_table(http)))
        print()
    if ingest:
        print("\n".join(ingest_table(ingest)))
        print()
    print("\n".join(verdict_table(vs)))
    if args.results is not None:
        merged = set(args.sections) != set(RUN_SECTIONS) and args.results.exists()
        sections = report(
            args,
            machine,
            code_note,
            started,
            wall,
            http,
            ingest,
            shadow,
            analytics,
            drift,
            serving,
            vs,
            merged=merged,
            unavailable=unavailable,
        )
        if merged:
            ran = {k: v for k, v in sections.items() if k in args.sections}
            text = merge(args.results.read_text(), ran, vs, set(args.sections))
        else:
            text = join_sections(sections)
        args.results.write_text(text)
        print(f"\nwrote {args.results}" + (f" (only {', '.join(args.sections)})" if merged else ""))
    if args.json is not None:
        raw = {
            "machine": asdict(machine),
            "started": started.isoformat(),
            "code": code_note,
            "args": {k: str(v) for k, v in vars(args).items()},
            "http": [asdict(r) for r in http],
            "http_unavailable": unavailable,
            "ingest": [asdict(i) | {"rate": i.rate} for i in ingest],
            "shadow": shadow_raw(shadow) if shadow else None,
            "analytics": analytics_raw(analytics) if analytics else None,
            "drift": drift_raw(drift) if drift else None,
            "serving": [asdict(r) for r in serving],
            "verdicts": [asdict(v) for v in vs],
        }
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    if args.check and not all(v.met for v in vs):
        return 1
    return 0


def entry() -> None:
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped and databases dropped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    entry()
