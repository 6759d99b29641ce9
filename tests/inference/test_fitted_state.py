"""Trusted types whose arrays are crafted: each would read or write outside memory (or loop)
in scikit-learn's compiled code on the first prediction, so each is refused at load. The
models are fitted for real, then one array is altered as a crafted file would carry it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predictd.errors import ArtifactError
from predictd.inference.formats import open_artifact
from predictd.settings import Settings
from tests.inference.test_skops_trust import saved, text_pipeline

RNG = np.random.RandomState(0)
X = RNG.rand(60, 3)
Y = (X[:, 0] * 3).astype(int)


def refused(tmp_path: Path, model: Any) -> str:
    with pytest.raises(ArtifactError) as raised:
        open_artifact(saved(tmp_path, model), Settings().inference)
    return raised.value.message


def altered_tree(tree: Any, change: Callable[[Any], None], width: int | None = None) -> Any:
    from sklearn.tree._tree import Tree

    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    change(nodes)
    rebuilt = Tree(width or tree.n_features, np.asarray(tree.n_classes), tree.n_outputs)
    rebuilt.__setstate__({**state, "nodes": nodes})
    return rebuilt


def forest(change: Callable[[Any], None]) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, Y)
    model.estimators_[0].tree_ = altered_tree(model.estimators_[0].tree_, change)
    return model


def child_out_of_range(nodes: Any) -> None:
    nodes["left_child"][0] = 10_000_000


def child_pointing_back(nodes: Any) -> None:
    nodes["right_child"][0] = 0  # the root's child is the root: predict would never end


def feature_out_of_range(nodes: Any) -> None:
    nodes["feature"][0] = 1_000_000


@pytest.mark.parametrize(
    "change",
    [child_out_of_range, child_pointing_back, feature_out_of_range],
    ids=lambda change: change.__name__,
)
def test_a_forest_with_a_crafted_tree_is_refused(
    tmp_path: Path, change: Callable[[Any], None]
) -> None:
    assert "decision tree's node arrays are malformed" in refused(tmp_path, forest(change))


def test_a_boosting_stage_wider_than_the_model_is_refused(tmp_path: Path) -> None:
    """Gradient boosting checks a request's width once, for all stages: a stage whose tree
    and width both say 10**9 features would index the request far past its end."""
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=3).fit(X, Y > 0)
    stage = model.estimators_[1, 0]

    def far_feature(nodes: Any) -> None:
        nodes["feature"][nodes["left_child"] != -1] = 10**9 - 1

    stage.tree_ = altered_tree(stage.tree_, far_feature, width=10**9)
    stage.n_features_in_ = 10**9
    assert "ensemble member's feature arrays are malformed" in refused(tmp_path, model)


def wide_tree(model: Any) -> None:
    """Give ``model`` a tree 2**28 features wide and forget its width, as a crafted file
    may: scikit-learn then checks no request's width at all."""

    def far_feature(nodes: Any) -> None:
        nodes["feature"][nodes["left_child"] != -1] = 2**28 - 1

    model.tree_ = altered_tree(model.tree_, far_feature, width=2**28)
    del model.n_features_in_


def boosting_without_widths() -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(n_estimators=3).fit(X, X[:, 0])
    wide_tree(model.estimators_[1, 0])
    return model


def forest_without_widths() -> Any:
    from sklearn.ensemble import RandomForestRegressor

    model = RandomForestRegressor(n_estimators=2).fit(X, X[:, 0])
    wide_tree(model.estimators_[0])
    return model


def pipeline_tree_without_width() -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    model = make_pipeline(StandardScaler(), DecisionTreeRegressor()).fit(X, X[:, 0])
    wide_tree(model.steps[-1][1])
    return model


@pytest.mark.parametrize(
    "build",
    [boosting_without_widths, forest_without_widths, pipeline_tree_without_width],
    ids=lambda build: build.__name__,
)
def test_a_tree_whose_width_was_removed_is_refused(tmp_path: Path, build: Any) -> None:
    """Each segfaulted its first predict with the width checks skipped for a missing
    n_features_in_ (found by review)."""
    assert "feature arrays are malformed" in refused(tmp_path, build())


def neighbours(algorithm: str, **params: Any) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(algorithm=algorithm, **params).fit(X, Y)


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
def test_a_neighbour_tree_with_a_crafted_index_is_refused(tmp_path: Path, algorithm: str) -> None:
    model = neighbours(algorithm)
    state = list(model._tree.__getstate__())
    state[1] = state[1].copy()
    state[1][0] = 10**8
    model._tree.__setstate__(tuple(state))
    assert "neighbour tree's index arrays are malformed" in refused(tmp_path, model)


def test_a_metric_matrix_smaller_than_the_data_is_refused(tmp_path: Path) -> None:
    """Mahalanobis distances write into a buffer sized by the metric's matrix while looping
    over the data's width."""
    model = neighbours("ball_tree", metric="mahalanobis", metric_params={"VI": np.eye(3)})
    metric = model._tree.__getstate__()[11]
    p, vec, _ = metric.__getstate__()
    metric.__setstate__((p, vec, np.eye(1)))
    assert "distance metric's arrays are malformed" in refused(tmp_path, model)


def test_sparse_coefficients_with_a_crafted_index_are_refused(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X, Y).sparsify()
    model.coef_.indices[0] = 10**8
    assert "sparse matrix is malformed" in refused(tmp_path, model)


def test_support_vector_counts_that_do_not_add_up_are_refused(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    model = SVC().fit(X, Y)
    model._n_support = model._n_support * 1000
    assert "support vector arrays are malformed" in refused(tmp_path, model)


def test_a_vectorizer_that_opens_request_text_as_a_path_is_refused(tmp_path: Path) -> None:
    model = text_pipeline()
    model.steps[0][1].input = "filename"  # each request's text would be opened on the server
    assert "reads its input as 'filename'" in refused(tmp_path, model)


def svc_with_probabilities() -> Any:
    import warnings

    from sklearn.svm import SVC

    with warnings.catch_warnings():  # deprecated in 1.9, still what many saved models hold
        warnings.simplefilter("ignore", FutureWarning)
        return SVC(probability=True).fit(X, Y)


def models_checked() -> dict[str, Callable[[], Any]]:
    """The models these checks look into, fitted normally: each must load."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import KMeans
    from sklearn.ensemble import (
        BaggingClassifier,
        GradientBoostingClassifier,
        IsolationForest,
        RandomForestRegressor,
        StackingClassifier,
    )
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR, NuSVC, OneClassSVM

    return {
        "gradient-boosting": lambda: GradientBoostingClassifier(n_estimators=3).fit(X, Y),
        "forest": lambda: RandomForestRegressor(n_estimators=3).fit(X, X[:, 0]),
        "bagging": lambda: BaggingClassifier(n_estimators=3, max_features=2).fit(X, Y),
        "isolation-forest": lambda: IsolationForest(n_estimators=3, max_features=2).fit(X),
        "kd-tree": lambda: neighbours("kd_tree"),
        "mahalanobis": lambda: neighbours(
            "ball_tree", metric="mahalanobis", metric_params={"VI": np.eye(3)}
        ),
        "minkowski": lambda: neighbours("ball_tree", metric="minkowski", p=3),
        "sparse-coefficients": lambda: LogisticRegression().fit(X, Y).sparsify(),
        "svc": lambda: SVC().fit(X, Y),
        "svc-probabilities": svc_with_probabilities,
        "nu-svc": lambda: NuSVC().fit(X, Y),
        "svr": lambda: SVR().fit(X, X[:, 0]),
        "one-class-svm": lambda: OneClassSVM().fit(X),
        "k-means": lambda: KMeans(n_clusters=3, n_init=1, random_state=0).fit(X),
        # models that hold an unfitted SVC as their template, or pipelines as members
        "one-vs-rest-svc": lambda: OneVsRestClassifier(SVC()).fit(X, Y),
        "calibrated-svc": lambda: CalibratedClassifierCV(SVC()).fit(X, Y),
        "stacking-svc": lambda: StackingClassifier([("svc", SVC())]).fit(X, Y),
        "bagged-pipelines": lambda: BaggingClassifier(
            make_pipeline(StandardScaler(), LogisticRegression()), n_estimators=3
        ).fit(X, Y),
        "sgd-hinge": lambda: SGDClassifier().fit(X, Y),
    }


@pytest.mark.parametrize("name", list(models_checked()))
def test_the_same_models_fitted_normally_load(tmp_path: Path, name: str) -> None:
    _, runtime = open_artifact(saved(tmp_path, models_checked()[name]()), Settings().inference)
    assert runtime.schema().feature_names == ("x0", "x1", "x2")
