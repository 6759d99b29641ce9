"""A model's hyperparameters as the registry keeps them: JSON whatever the estimator holds."""

from __future__ import annotations

import json

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from predictd.inference.sklearn_runtime import MAX_PARAM_DEPTH, json_params


def test_params_become_json_with_objects_named() -> None:
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), dtype=np.float32)
    model = Pipeline([("tfidf", vectorizer), ("clf", LogisticRegression(C=np.float64(0.5)))])
    model.set_params(clf__tol=float("nan"))
    params = json_params(model.get_params(deep=True))
    json.dumps(params, allow_nan=False)  # strict JSON: PostgreSQL's json refuses NaN
    assert params["clf__C"] == 0.5
    assert params["clf__tol"] == "nan"
    assert params["tfidf__ngram_range"] == [1, 2]
    assert params["tfidf__dtype"] == "numpy.float32"
    assert params["clf"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert params["steps"][0] == ["tfidf", "sklearn.feature_extraction.text.TfidfVectorizer"]


def test_deep_nesting_is_cut_to_a_name() -> None:
    value: object = 1
    for _ in range(MAX_PARAM_DEPTH + 5):
        value = [value]
    params = json_params({"deep": value})
    depth, found = 0, params["deep"]
    while isinstance(found, list):
        depth, found = depth + 1, found[0]
    assert depth == MAX_PARAM_DEPTH
    assert found == "builtins.list"
