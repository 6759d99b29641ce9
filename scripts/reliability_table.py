"""Render a fault-matrix run's figures (PREDICTD_FAULT_FIGURES=<file>) as the Markdown table
in docs/reliability.md: one row per matrix item, its measured figures as `key value` pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson


def render(path: Path) -> str:
    rows = ["| item | measured |", "|---|---|"]
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        figures = orjson.loads(line)
        item = figures.pop("item")
        figures.pop("at", None)
        cells = ", ".join(f"{key.replace('_', ' ')} **{value}**" for key, value in figures.items())
        rows.append(f"| {item} | {cells} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: reliability_table.py FIGURES.jsonl")
    sys.stdout.write(render(Path(sys.argv[1])))
