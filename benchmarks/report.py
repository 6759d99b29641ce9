"""RESULTS.md: markdown tables, pass/miss verdicts, and a file made of named sections.

Each section of the report starts with a marker line (``<!-- results:NAME -->``), so a run of
some sections only (``--only shadow``) replaces those and keeps every other section's text
as it was; the "Targets" table is merged row by row the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SECTIONS = (
    "header", "http", "ingest", "shadow", "analytics", "drift", "serving", "loop", "scale",
    "targets",
)  # fmt: skip
# "loop" (part G) is written by `make bench-loop` (benchmarks/loop_quality.py), "scale" (part H)
# by hand from benchmarks/partitions.py and benchmarks/replicas.py; the rest keep them
# The parts one can run alone:
RUN_SECTIONS = ("http", "ingest", "shadow", "analytics", "drift", "serving")
_MARKER = re.compile(r"^<!-- results:(\w+) -->\n", re.MULTILINE)


@dataclass(frozen=True)
class Verdict:
    what: str
    target: str
    measured: str
    met: bool

    @property
    def section(self) -> str:
        return section_of(self.what)


def section_of(check: str) -> str:
    """Which part of the suite a "Targets" row belongs to, from its check's name."""
    for section in ("ingest", "shadow", "analytics", "drift", "serving"):
        if check.startswith(f"{section}, "):
            return section
    return "http"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join(("-" * (w + 2)) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return [line, sep, *body]


VERDICT_HEADERS = ["check", "target", "measured", "verdict"]


def verdict_rows(vs: list[Verdict]) -> list[list[str]]:
    return [[v.what, v.target, v.measured, "met" if v.met else "MISSED"] for v in vs]


def verdict_table(vs: list[Verdict]) -> list[str]:
    return table(VERDICT_HEADERS, verdict_rows(vs))


def split_sections(text: str) -> dict[str, str] | None:
    """The report's sections by name (None: a file without markers)."""
    parts = _MARKER.split(text)
    if len(parts) == 1:
        return None
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def join_sections(sections: dict[str, str]) -> str:
    body = "".join(
        f"<!-- results:{name} -->\n{sections[name].rstrip()}\n\n"
        for name in SECTIONS
        if name in sections
    )
    return body.rstrip() + "\n"


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``text``."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def merge_targets(old: str, new: list[Verdict], ran: set[str]) -> list[list[str]]:
    """The "Targets" rows: the old file's rows of sections that did not run, then this
    run's, in section order."""
    kept = [r for r in _table_rows(old) if len(r) == 4 and section_of(r[0]) not in ran]
    rows = kept + verdict_rows(new)
    order = {name: i for i, name in enumerate(RUN_SECTIONS)}
    return sorted(rows, key=lambda r: order[section_of(r[0])])  # stable: keeps row order


def merge(old_text: str, new: dict[str, str], targets: list[Verdict], ran: set[str]) -> str:
    """``old_text`` with the sections in ``new`` replaced (or added) and the "Targets" table
    merged; raises ValueError when ``old_text`` has no section markers."""
    sections = split_sections(old_text)
    if sections is None:
        raise ValueError("no section markers")
    sections.update(new)
    rows = merge_targets(sections.get("targets", ""), targets, ran)
    sections["targets"] = "\n".join(["## Targets", "", *table(VERDICT_HEADERS, rows)])
    return join_sections(sections)
