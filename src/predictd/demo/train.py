"""Train the demo models from data that ships with the package (no downloads)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from skops.io import dump

from predictd.inference.values import ItemInput
from predictd.monitoring.calibration import calibration_bins


@dataclass(frozen=True)
class DemoModel:
    name: str
    path: Path
    metrics: dict[str, float]
    training_samples: int
    feature_names: tuple[str, ...] | None
    description: str
    # Observed accuracy per confidence decile on the held-out split (monitoring/calibration).
    calibration: list[float | None] | None = None
    # The held-out split with its labels: the reference profile drift is measured against.
    validation: tuple[tuple[ItemInput, str | int], ...] = ()
    # The same data as files the registry keeps with the version (`--training-data`,
    # `--validation`), so `predictd train` can refit the model on them.
    training_data: Path | None = None
    validation_data: Path | None = None


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def load_sentiment_data() -> tuple[list[str], list[str]]:
    source = resources.files("predictd.demo").joinpath("data/sentiment.csv")
    with source.open("r", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def held_out_scores(
    actual: Sequence[str], predicted: Sequence[str], confidence: Sequence[float]
) -> tuple[dict[str, float], list[float | None]]:
    """A text classifier's accuracy and macro F1 on its held-out split, and the calibration
    of its confidence there (measured before the shipped model is refitted on everything)."""
    from sklearn.metrics import accuracy_score, f1_score

    calibration = calibration_bins(
        (float(c), p == y) for c, p, y in zip(confidence, predicted, actual, strict=True)
    )
    metrics = {
        "accuracy": float(accuracy_score(actual, predicted)),
        "f1_macro": float(f1_score(actual, predicted, average="macro")),
    }
    return metrics, calibration


def train_sentiment(out_dir: Path, seed: int = 0) -> DemoModel:
    """TF-IDF + LogisticRegression on the bundled labelled sentences."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    texts, labels = load_sentiment_data()
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    pipeline = Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            ("clf", LogisticRegression(max_iter=1000, C=10.0)),
        ]
    )
    pipeline.fit(x_train, y_train)
    metrics, calibration = held_out_scores(
        y_test, pipeline.predict(x_test), pipeline.predict_proba(x_test).max(axis=1)
    )
    pipeline.fit(texts, labels)  # ship the model trained on everything
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "sentiment.skops"
    dump(pipeline, path)
    header = ("text", "label")
    return DemoModel(
        "sentiment",
        path,
        metrics,
        len(texts),
        None,
        "Demo 3-class sentiment classifier (TF-IDF + LogisticRegression)",
        calibration,
        tuple((ItemInput(text=t), y) for t, y in zip(x_test, y_test, strict=True)),
        write_csv(out_dir / "sentiment-train.csv", header, zip(texts, labels, strict=True)),
        write_csv(out_dir / "sentiment-validation.csv", header, zip(x_test, y_test, strict=True)),
    )


def train_tabular(out_dir: Path, seed: int = 0) -> DemoModel:
    """RandomForest on scikit-learn's bundled breast-cancer data."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    names = tuple(str(n).replace(" ", "_") for n in data.feature_names)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=seed, stratify=data.target
    )
    model = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1_macro": float(f1_score(y_test, predicted, average="macro")),
        "roc_auc": float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "breast_cancer.skops"
    dump(model, path)
    header = (*names, "label")
    return DemoModel(
        "breast_cancer",
        path,
        metrics,
        len(x_train),
        names,
        "Demo tabular classifier (RandomForest, breast-cancer data; 0=malignant 1=benign)",
        validation=tuple(
            (ItemInput(features=dict(zip(names, map(float, row), strict=True))), int(y))
            for row, y in zip(x_test, y_test, strict=True)
        ),
        training_data=write_csv(
            out_dir / "breast_cancer-train.csv",
            header,
            ([*map(float, row), int(y)] for row, y in zip(x_train, y_train, strict=True)),
        ),
        validation_data=write_csv(
            out_dir / "breast_cancer-validation.csv",
            header,
            ([*map(float, row), int(y)] for row, y in zip(x_test, y_test, strict=True)),
        ),
    )
