"""What `--param` (and a stored retrain action) may change of the production estimator:
plain hyperparameters only, never a step, never joblib's cache directory."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from predictd.errors import InvalidInput
from predictd.retraining.fitting import check_params
from predictd.retraining.options import parse_params

PIPELINE = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])


def test_plain_hyperparameters_pass() -> None:
    check_params(PIPELINE, parse_params(["clf__C=0.5", "clf__penalty=l2", "scale__with_mean=false",
                                         "clf__class_weight=null"]))  # fmt: skip


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"memory": "/tmp/cache"}, "'memory' of Pipeline cannot be changed"),
        ({"clf": "passthrough"}, "'clf' of Pipeline cannot be changed"),
        ({"clf__C": {"a": 1}}, "use a number, text, true/false, null or a list"),
        ({"clf__Cx": 1}, "unknown parameter 'clf__Cx'"),
    ],
)
def test_steps_caches_and_odd_values_are_refused_named(params: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as refused:
        check_params(PIPELINE, params)
    assert refused.value.field == f"params.{next(iter(params))}"
