"""Spans as people write them, held to bounds where date arithmetic would overflow."""

from __future__ import annotations

from datetime import timedelta

import pytest

from predictd.durations import format_duration, parse_duration, seconds_span


@pytest.mark.parametrize(
    ("text", "span"),
    [("45s", timedelta(seconds=45)), (" 30m ", timedelta(minutes=30)),
     ("1.5h", timedelta(hours=1.5)), ("7d", timedelta(days=7)), ("3650d", timedelta(days=3650))],
)  # fmt: skip
def test_spans_are_read_and_written_back(text: str, span: timedelta) -> None:
    assert parse_duration(text) == span
    assert parse_duration(format_duration(span)) == span


@pytest.mark.parametrize("text", ["", "7", "0d", "-1d", "7x", "d", "3651d", "99999999999d", "1e9d"])
def test_bad_or_endless_spans_are_refused_saying_why(text: str) -> None:
    with pytest.raises(ValueError, match=r"use a positive number|at most 3650 days"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.0, -5.0, 1e30, float("inf")])
def test_seconds_are_held_to_the_same_bounds(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"at most 3650 days"):
        seconds_span(seconds)
