"""A version's reference profile: what its validation data looked like, kept with the version
so drift can later be measured against it without the data itself.

Numeric features keep quantile bin edges (the database counts live values into the same
bins), their counts, mean and standard deviation, and the raw values when there are few enough
for a Kolmogorov-Smirnov test; text keeps the same for its length in characters, and, when the
model exposes its tokenizer, the frequencies of its most common known tokens and its
out-of-vocabulary count; the model's answers keep their label counts and confidence deciles.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from predictd.inference.runtime import Label, ModelRuntime, TextVocabulary
from predictd.inference.values import ItemInput
from predictd.monitoring.calibration import calibration_bins
from predictd.monitoring.drift_stats import SMALL_REFERENCE
from predictd.settings import InferenceSettings
from predictd.vocabulary import comparable_label, confidence_bin

BINS = 10
TOP_TOKENS = 100  # the reference's most frequent tokens keep their own count; the rest pool
OTHER = "(other)"
OOV = "(out of vocabulary)"


def numeric_profile(values: Sequence[float]) -> dict[str, Any]:
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return {"count": 0}
    edges = np.unique(np.quantile(data, np.linspace(0, 1, BINS + 1)))
    # Inner edges only: the outer bins are open, so live values beyond the reference's range
    # still land in a bin (and shift the distribution, as they should).
    inner = [float(e) for e in edges[1:-1]]
    counts = np.bincount(np.searchsorted(inner, data, side="right"), minlength=len(inner) + 1)
    profile: dict[str, Any] = {
        "count": int(data.size),
        "mean": float(data.mean()),
        "std": float(data.std()),
        "edges": inner,
        "centres": _centres(edges),
        "counts": [int(c) for c in counts],
    }
    if data.size <= SMALL_REFERENCE:
        profile["values"] = [float(v) for v in data]
    return profile


def _centres(edges: np.ndarray) -> list[float]:
    if edges.size < 2:
        return [float(edges[0])] if edges.size else []
    return [float((a + b) / 2) for a, b in pairwise(edges)]


def token_counts(
    texts: Sequence[str], vocabulary: TextVocabulary, top: Sequence[str] | None = None
) -> Counter[str]:
    """Tokens the model makes of ``texts``: per token of ``top`` (every known token when None),
    the other known ones pooled as OTHER, unknown ones as OOV."""
    wanted = None if top is None else set(top)
    counts: Counter[str] = Counter()
    for text in texts:
        for token in vocabulary.tokens(text):
            if token not in vocabulary.known:
                counts[OOV] += 1
            elif wanted is None or token in wanted:
                counts[token] += 1
            else:
                counts[OTHER] += 1
    return counts


def token_profile(texts: Sequence[str], vocabulary: TextVocabulary) -> dict[str, Any]:
    """Frequencies of the reference's TOP_TOKENS most common known tokens, the rest pooled,
    and the out-of-vocabulary count."""
    counts = token_counts(texts, vocabulary)
    oov = counts.pop(OOV, 0)
    kept = dict(counts.most_common(TOP_TOKENS))
    other = sum(counts.values()) - sum(kept.values())
    total = sum(counts.values()) + oov
    return {
        "counts": kept | ({OTHER: other} if other else {}),
        "oov": oov,
        "total": total,
        "oov_rate": oov / total if total else None,
    }


def reference_profile(
    inputs: Sequence[str | Mapping[str, float]],
    labels: Sequence[Any],
    confidences: Sequence[float | None],
    vocabulary: TextVocabulary | None = None,
) -> dict[str, Any]:
    """The profile of validation inputs and the model's answers to them."""
    profile: dict[str, Any] = {"rows": len(inputs)}
    if inputs and isinstance(inputs[0], str):
        profile["text_length"] = numeric_profile([float(len(str(t))) for t in inputs])
        if vocabulary is not None:
            profile["tokens"] = token_profile([str(t) for t in inputs], vocabulary)
    else:
        names = sorted({name for row in inputs if isinstance(row, Mapping) for name in row})
        profile["features"] = {
            name: numeric_profile(
                [float(row[name]) for row in inputs if isinstance(row, Mapping) and name in row]
            )
            for name in names
        }
    profile["predicted_labels"] = dict(Counter(comparable_label(label) for label in labels))
    deciles = [0] * 10
    for confidence in confidences:
        if confidence is not None:
            deciles[confidence_bin(confidence)] += 1
    profile["confidence_bins"] = deciles
    return profile


def validation_profiler(
    validation: Sequence[tuple[ItemInput, Label]], settings: InferenceSettings
) -> Callable[[ModelRuntime], dict[str, Any]] | None:
    """What the registry runs on a new version (``ModelRegistry.inspect``'s ``profiler``):
    the model on its validation data gives the reference profile drift is measured against,
    and for a classifier the calibration of its confidence. None without validation data."""
    if not validation:
        return None

    def profile(runtime: ModelRuntime) -> dict[str, Any]:
        values = [
            runtime.validate(
                item.text, item.features, max_chars=settings.max_text_chars, prefix=f"{n}."
            )
            for n, (item, _) in enumerate(validation)
        ]
        outputs = runtime.predict(values)
        found = reference_profile(
            values,
            [out.label for out in outputs],
            [out.confidence for out in outputs],
            runtime.vocabulary(),
        )
        if runtime.schema().task == "classification":
            found["calibration"] = calibration_bins(
                (out.confidence, comparable_label(out.label) == comparable_label(actual))
                for out, (_, actual) in zip(outputs, validation, strict=True)
                if out.confidence is not None
            )
        return found

    return profile
