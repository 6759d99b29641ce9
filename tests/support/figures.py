"""Figures of a fault-matrix run, for docs/reliability.md.

With PREDICTD_FAULT_FIGURES=<path>, each matrix test appends one JSON line (its item and
what it measured); `scripts/reliability_table.py <path>` turns them into the table there.
Without it nothing is written: the assertions are the pass criteria either way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson


def record(item: str, **figures: object) -> None:
    path = os.environ.get("PREDICTD_FAULT_FIGURES")
    if not path:
        return
    line = {"item": item, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    with Path(path).open("ab") as out:
        out.write(orjson.dumps(line) + b"\n")
