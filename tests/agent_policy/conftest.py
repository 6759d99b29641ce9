"""Fixtures of the policy tests: a deliberately weak text model, real and registrable beside
the demo model, so "worse" and "better" are measured, not asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
from skops.io import dump

from predictd.demo.train import load_sentiment_data


@pytest.fixture(scope="session")
def weak_sentiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline fitted on one sentence in fifteen (about half right on the rest)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    texts, labels = load_sentiment_data()
    pipeline = Pipeline(
        [("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(max_iter=1000))]
    ).fit(texts[::15], labels[::15])
    path = tmp_path_factory.mktemp("weak") / "weak.skops"
    dump(pipeline, path)
    return path
