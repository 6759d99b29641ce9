"""Spans written as people write them: '45s', '30m', '24h', '7d'."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")


def parse_duration(text: str) -> timedelta:
    """A positive number with s, m, h or d -> a timedelta; anything else raises ValueError
    saying what is expected."""
    match = _SPAN.fullmatch(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r}: use a positive number with s, m, h or d, e.g. 30m, 24h, 7d")
    return timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


def format_duration(span: timedelta) -> str:
    """The shortest exact spelling parse_duration reads back: 7d, 36h, 90m, 45s."""
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
