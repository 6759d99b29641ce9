"""Calibration of a classifier's confidence, measured on labelled validation data: the share
of correct answers in each confidence decile. The monitor maps live confidences through it to
estimate accuracy before labels arrive (monitoring/performance.py)."""

from __future__ import annotations

from collections.abc import Iterable

from predictd.vocabulary import CONFIDENCE_BINS, confidence_bin


def calibration_bins(pairs: Iterable[tuple[float, bool]]) -> list[float | None]:
    """Observed accuracy per confidence decile from (confidence, correct) pairs; None where
    the validation data had no answer in that decile."""
    seen = [0] * CONFIDENCE_BINS
    right = [0] * CONFIDENCE_BINS
    for confidence, correct in pairs:
        b = confidence_bin(confidence)
        seen[b] += 1
        right[b] += int(correct)
    return [r / n if n else None for r, n in zip(right, seen, strict=True)]
