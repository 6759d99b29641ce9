"""Part I: the transformer demo model (`predictd demo --transformer`) served over HTTP.

Items per second of single `POST /predict` calls at 1, 8 and 32 concurrent clients, with
micro-batching on (`PREDICTD_BATCH_MAX=32`, the default) and off (`PREDICTD_BATCH_MAX=1`).
Each server is a real `predictd serve` recording every answer to PostgreSQL (durability
`process`); every 2xx answer must reach the table. Then, in this process, what tokenization
costs per item against a whole model call (the runtime's own `encode` and `predict`, the
same texts), at micro-batches of 1 and 32. ONNX Runtime runs on the providers
`PREDICTD_ONNX_PROVIDERS` names (`--providers`; the CPU by default).

Usage: ``.venv/bin/python -m benchmarks.transformer`` (markdown to stdout).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.environment import CpuTimes, Postgres, code_version
from benchmarks.report import table
from benchmarks.targets import LoadSettings, predictd_server, run_wrk, wait_for_rows

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BODIES = 100_000
CLIENTS = (1, 8, 32)


def write_bodies(path: Path) -> Path:
    """Every body a new text: a demo sentence with a number, so no two are the same."""
    from predictd.demo.train import load_sentiment_data

    texts, _ = load_sentiment_data()
    rng = random.Random(0)
    with path.open("w") as out:
        for n in range(BODIES):
            out.write(json.dumps({"text": f"{rng.choice(texts)} #{n}"}) + "\n")
    return path


def bundle_of(work: Path) -> Path:
    """The demo export, packed as `models register` would: one `.transformer` file."""
    from predictd.demo.transformer import train_transformer
    from predictd.registry.archives import as_artifact

    export = train_transformer(work / "export").path
    packed, _ = as_artifact(export, work / "pack", 2**31)
    return packed


def serve_run(
    pg: Postgres, model: Path, bodies: Path, work: Path, clients: int, batching: bool,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    name = f"c{clients}-{'batch' if batching else 'nobatch'}"
    url = pg.create_database(f"transformer_{name.replace('-', '_')}")
    env = {
        "PREDICTD_BATCH_MAX": "32" if batching else "1",
        "PREDICTD_ONNX_PROVIDERS": args.providers,
    }
    server = predictd_server(name, url, model, work / name, record=True, extra_env=env)
    try:
        server.wait_ready("/ready")
        load = LoadSettings(clients, args.duration, args.warmup, bodies, generator="wrk")
        busy0 = CpuTimes.now()
        stats = run_wrk(server.base + "/predict", load)
        busy = CpuTimes.now().busy_pct_since(busy0)
        answered = int(stats["ok_total"])
        wait_for_rows(pg, url, answered)
        rows = pg.count_rows(url)
    finally:
        server.stop()
    return {
        "clients": clients,
        "batching": batching,
        "items_s": float(stats["rps"]),
        "p50_ms": float(stats["p50_ms"]),
        "p99_ms": float(stats["p99_ms"]),
        "failed": int(stats["non_2xx_total"]) + int(stats["errors_total"]),
        "answered": answered,
        "rows": rows,
        "machine_busy_pct": busy,
    }


def tokenization_cost(model: Path, providers: list[str], repeats: int) -> list[dict[str, Any]]:
    """Microseconds per item: tokenizing (encode) against the whole call (predict)."""
    from predictd.demo.train import load_sentiment_data
    from predictd.inference.formats import open_artifact
    from predictd.inference.transformer_runtime import TransformerRuntime
    from predictd.settings import InferenceSettings

    _, runtime = open_artifact(model, InferenceSettings(onnx_providers=providers))
    assert isinstance(runtime, TransformerRuntime)
    texts, _ = load_sentiment_data()
    out = []
    for size in (1, 32):
        batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]

        def per_item(call: Any, batches: list[list[str]] = batches, size: int = size) -> float:
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                for batch in batches:
                    call(batch)
                timings.append((time.perf_counter() - started) / (len(batches) * size))
            return 1e6 * statistics.median(timings)

        encode, whole = per_item(runtime.encode), per_item(runtime.predict)
        out.append({"batch": size, "encode_us": encode, "predict_us": whole})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--providers", default="CPUExecutionProvider")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args(argv)

    pg = Postgres(args.admin_url)
    runs = []
    with tempfile.TemporaryDirectory(prefix="predictd-transformer-") as tmp:
        work = Path(tmp)
        model = bundle_of(work)
        bodies = write_bodies(work / "bodies.jsonl")
        try:
            for clients in CLIENTS:
                for batching in (True, False):
                    runs.append(serve_run(pg, model, bodies, work, clients, batching, args))
                    print(runs[-1], file=sys.stderr, flush=True)
                    pg.checkpoint()
        finally:
            pg.drop_all()
        costs = tokenization_cost(model, args.providers.split(","), args.repeats)
    command = ".venv/bin/python -m benchmarks.transformer " + " ".join(argv or sys.argv[1:])
    by = {(r["clients"], r["batching"]): r for r in runs}
    lines = [
        f"- **Command:** `{command}`",
        f"- **Code:** {code_version(Path(__file__).resolve().parents[1])[0]}",
        f"- **Providers:** `{args.providers}`",
        f"- wrk, {args.warmup:g} s warm-up + {args.duration:g} s measured per run, every "
        "input new; each server records to PostgreSQL",
        "",
        *table(
            [
                "clients",
                "batching",
                "items/s",
                "vs no batching",
                "p50 ms",
                "p99 ms",
                "failed",
                "answered",
                "rows",
                "machine busy %",
            ],
            [
                [
                    str(r["clients"]),
                    "on" if r["batching"] else "off",
                    f"{r['items_s']:,.0f}",
                    f"{r['items_s'] / by[(r['clients'], False)]['items_s']:.2f}x",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    str(r["failed"]),
                    f"{r['answered']:,}",
                    f"{r['rows']:,}",
                    f"{r['machine_busy_pct']:.0f}",
                ]
                for r in runs
            ],
        ),
        "",
        *table(
            ["micro-batch", "tokenize µs/item", "whole call µs/item", "tokenization share"],
            [
                [
                    str(c["batch"]),
                    f"{c['encode_us']:.1f}",
                    f"{c['predict_us']:.1f}",
                    f"{c['encode_us'] / c['predict_us']:.0%}",
                ]
                for c in costs
            ],
        ),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
