"""Refitting a copy of the production estimator, and scoring estimators on labelled rows.

The candidate is ``sklearn.base.clone`` of the production version's own fitted estimator
(opened through the registry's verified loader), so it keeps every hyperparameter but those
the caller changes. CPU-bound: call these in a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from predictd.errors import InvalidInput, ModelFailure, NotEnoughData
from predictd.inference.runtime import Label, Task
from predictd.vocabulary import comparable_label

# A Pipeline's ``memory`` makes joblib load cached (pickled) results from a directory: not
# something a stored action or a command line may point at.
REFUSED_PARAMS = frozenset({"memory"})


def _plain(value: Any) -> bool:
    scalar = (type(None), bool, int, float, str)
    return isinstance(value, scalar) or (
        isinstance(value, list | tuple) and all(isinstance(v, scalar) for v in value)
    )


def check_params(estimator: Any, params: Mapping[str, Any]) -> None:
    """Every key must be one of the estimator's ``get_params(deep=True)`` keys, naming a plain
    value (not a step: a parameter cannot swap one estimator for another), and the value a
    number, text, true/false, null or a list of those."""
    known = estimator.get_params(deep=True)
    name = type(estimator).__name__
    for key, value in params.items():
        if key not in known:
            close = sorted(k for k in known if k.split("__")[-1] == key.split("__")[-1])
            hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
            raise InvalidInput(f"unknown parameter {key!r} for {name}{hint}",
                               field=f"params.{key}")  # fmt: skip
        if key.split("__")[-1] in REFUSED_PARAMS or hasattr(known[key], "get_params"):
            raise InvalidInput(f"parameter {key!r} of {name} cannot be changed by retraining",
                               field=f"params.{key}")  # fmt: skip
        if not _plain(value):
            raise InvalidInput(
                f"parameter {key!r}: use a number, text, true/false, null or a list of those",
                field=f"params.{key}",
            )


def weight_parameter(estimator: Any) -> str | None:
    """The fit keyword that takes sample weights: ``sample_weight``, ``<step>__sample_weight``
    for a Pipeline's final step, or None when the estimator takes none."""
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import has_fit_parameter

    if isinstance(estimator, Pipeline):
        name, final = estimator.steps[-1]
        usable = final is not None and final != "passthrough"
        return (
            f"{name}__sample_weight"
            if usable and has_fit_parameter(final, "sample_weight")
            else None
        )
    return "sample_weight" if has_fit_parameter(estimator, "sample_weight") else None


def fit_candidate(
    parent: Any,
    params: Mapping[str, Any],
    x: Any,
    y: Sequence[Label],
    weights: np.ndarray,
    task: Task,
) -> tuple[Any, bool]:
    """A clone of ``parent`` with ``params`` set, fitted on (x, y) with ``weights`` where the
    estimator takes them; returns it and whether it was weighted."""
    from sklearn.base import clone

    check_params(parent, params)
    if task == "classification" and len({comparable_label(v) for v in y}) < 2:
        raise NotEnoughData(
            "every row to fit on has the same label: a classifier needs two "
            "classes or more; wait for more varied feedback"
        )
    candidate = clone(parent)
    if params:
        candidate.set_params(**params)
    keyword = weight_parameter(candidate)
    fit_args = {keyword: weights} if keyword else {}
    try:
        candidate.fit(frame(parent, x), list(y), **fit_args)
    except (ValueError, TypeError) as exc:  # scikit-learn's refusal of a parameter or the data
        raise InvalidInput(
            f"fitting {type(candidate).__name__} failed: {exc}", field="params" if params else None
        ) from None
    except Exception as exc:
        raise ModelFailure(f"fitting {type(candidate).__name__} failed: {exc!r}") from None
    return candidate, keyword is not None


def frame(estimator: Any, x: Any) -> Any:
    """``x`` as the estimator was fitted on it: a DataFrame with its column names when it
    knows them (``feature_names_in_``), else as it is."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or isinstance(x, list):
        return x
    import pandas as pd  # the estimator was fitted on a DataFrame, so pandas is present

    return pd.DataFrame(x, columns=[str(n) for n in names])


def score(
    estimator: Any, reference: Any, x: Any, y: Sequence[Label], task: Task
) -> dict[str, float]:
    """Accuracy and macro F1 (classifiers), R² and MAE (regressors) of ``estimator`` on
    (x, y); ``reference``: the estimator whose input layout ``x`` follows."""
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score

    if not len(y):
        return {}
    predicted = estimator.predict(frame(reference, x))
    if task == "classification":
        truth = [comparable_label(v) for v in y]
        guess = [comparable_label(v.item() if isinstance(v, np.generic) else v) for v in predicted]
        return {
            "accuracy": float(accuracy_score(truth, guess)),
            "f1_macro": float(f1_score(truth, guess, average="macro", zero_division=0)),
        }
    values = np.asarray(y, dtype=np.float64)
    found = {"mae": float(mean_absolute_error(values, predicted))}
    if len(values) >= 2 and float(np.var(values)) > 0:
        found["r2"] = float(r2_score(values, predicted))
    return found
