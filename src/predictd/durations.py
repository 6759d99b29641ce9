"""Spans written as people write them: '45s', '30m', '24h', '7d'."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
LONGEST = timedelta(days=3650)  # past this a span is a typo, and date arithmetic overflows


def parse_duration(text: str) -> timedelta:
    """A positive number with s, m, h or d -> a timedelta; anything else raises ValueError
    saying what is expected."""
    match = _SPAN.fullmatch(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r}: use a positive number with s, m, h or d, e.g. 30m, 24h, 7d")
    amount, unit = float(match.group(1)), UNITS[match.group(2)]
    if amount * timedelta(**{unit: 1}).total_seconds() > LONGEST.total_seconds():
        raise ValueError(f"{text!r}: at most {LONGEST.days} days")
    return timedelta(**{unit: amount})


def seconds_span(seconds: float) -> timedelta:
    """A span given as a number of seconds, held to the same bounds as parse_duration."""
    if not 0 < seconds <= LONGEST.total_seconds():
        raise ValueError(f"{seconds:g} s: use a positive span of at most {LONGEST.days} days")
    return timedelta(seconds=seconds)


def format_duration(span: timedelta) -> str:
    """The shortest exact spelling parse_duration reads back: 7d, 36h, 90m, 45s."""
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
