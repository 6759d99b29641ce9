"""Check the fitted arrays that scikit-learn's compiled code indexes without bounds checks.

The type allow-list (skops_trust.py) decides which classes a file may rebuild; their arrays
still come from the file. Decision trees, neighbour-search trees, SVMs and sparse matrices
are walked by compiled loops that trust their index arrays: a crafted child index, sample
index or support-vector count reads (or, for a Mahalanobis metric, writes) outside memory on
the first prediction. A fitted estimator always satisfies the invariants checked here, so
each check refuses only a file that was not written by ``fit``. Other compiled paths in
scikit-learn may trust shapes too: the README says so, and which models are covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from predictd.errors import ArtifactError

LEAF = -1
MAX_OBJECTS = 1_000_000  # a forest of 1,000 trees holds a few thousand objects
CLASSIFIERS_SVM = frozenset({"c_svc", "nu_svc"})


class Malformed(ArtifactError):
    """Raised inside the checks; load_estimator names the artifact."""


def check_fitted_state(estimator: Any, artifact: str) -> int:
    """Raise ArtifactError when any checked part of ``estimator`` is malformed; returns how
    many parts were checked."""
    from scipy.sparse import issparse
    from sklearn.ensemble._base import BaseEnsemble
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.neighbors._ball_tree import BallTree
    from sklearn.neighbors._kd_tree import KDTree
    from sklearn.svm._base import BaseLibSVM
    from sklearn.tree import BaseDecisionTree
    from sklearn.tree._tree import Tree

    checks: list[tuple[Any, Any]] = [
        (Tree, _tree),
        (BaseDecisionTree, _decision_tree),
        (BaseEnsemble, _ensemble),
        (KDTree, lambda t: _binary_tree(t, bounds=2)),
        (BallTree, lambda t: _binary_tree(t, bounds=1)),
        (BaseLibSVM, _svm),
        (CountVectorizer | HashingVectorizer, _vectorizer),
    ]
    checked = 0
    try:
        for obj in _reachable(estimator):
            if issparse(obj):
                _sparse(obj)
                checked += 1
                continue
            for kind, check in checks:
                if isinstance(obj, kind):
                    check(obj)
                    checked += 1
            centers = getattr(obj, "cluster_centers_", None)
            if isinstance(centers, np.ndarray):  # fit sets both; predict loops over the width
                width = getattr(obj, "n_features_in_", None)
                _require(centers.ndim == 2 and centers.shape[1] == width, "centers")
    except Malformed as exc:
        raise ArtifactError(f"{artifact}: {exc.message}; nothing was loaded") from None
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise ArtifactError(f"{artifact}: fitted state could not be checked: {exc!r}") from exc
    return checked


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise Malformed(f"the {what} arrays are malformed")


def _tree(tree: Any) -> None:
    nodes = tree.__getstate__()["nodes"]
    count = len(nodes)
    index = np.arange(count)
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == LEAF
    split = ~leaf
    # A fitted tree numbers a node's children after the node: no loops, no jumps outside.
    _require(
        count > 0
        and bool(np.all(right[leaf] == LEAF))
        and bool(np.all((left[split] > index[split]) & (left[split] < count)))
        and bool(np.all((right[split] > index[split]) & (right[split] < count)))
        and bool(np.all((feature[split] >= 0) & (feature[split] < tree.n_features))),
        "decision tree's node",
    )


def _decision_tree(model: Any) -> None:
    """The model checks a request's width against n_features_in_; its tree indexes by its
    own n_features: the two must agree."""
    if hasattr(model, "tree_"):
        # fit always sets n_features_in_; without it predict checks no width at all
        width = getattr(model, "n_features_in_", None)
        _require(model.tree_.n_features == width, "decision tree's feature")


def _ensemble(ensemble: Any) -> None:
    """Gradient boosting validates a request's width once, for all its stages, and some
    ensembles hand each member a column subset: every member must fit what it is given."""
    width = getattr(ensemble, "n_features_in_", None)
    members = getattr(ensemble, "estimators_", None)
    if members is None:
        return
    # a list stays a list: np.asarray would split members that are sequences (a Pipeline)
    flat = list(members.ravel()) if isinstance(members, np.ndarray) else list(members)
    if width is None:  # fit always sets it; without it no request's width is checked
        _require(not any(hasattr(m, "tree_") for m in flat), "ensemble's feature")
        return
    subsets = getattr(ensemble, "estimators_features_", None)
    if subsets is not None:
        _require(len(subsets) == len(flat), "ensemble's feature-subset")
    for i, member in enumerate(flat):
        member_width = getattr(member, "n_features_in_", None)
        tree = getattr(member, "tree_", None)
        if tree is not None:  # compiled code walks the tree with the ensemble's width
            _require(member_width is not None and tree.n_features == member_width,
                     "ensemble member's feature")  # fmt: skip
        if member_width is None:
            continue
        if subsets is None:
            _require(member_width == width, "ensemble member's feature")
        else:
            columns = np.asarray(subsets[i])
            _require(
                member_width == len(columns) and bool(np.all((columns >= 0) & (columns < width))),
                "ensemble member's feature-subset",
            )


def _binary_tree(tree: Any, bounds: int) -> None:
    (data, order, nodes, node_bounds, _, levels, count, *_, metric, weights) = tree.__getstate__()
    _require(data.ndim == 2, "neighbour tree's data")
    samples, width = data.shape
    _require(
        order.shape == (samples,) and bool(np.array_equal(np.sort(order), np.arange(samples))),
        "neighbour tree's index",
    )
    index = np.arange(len(nodes))
    start, end, is_leaf = nodes["idx_start"], nodes["idx_end"], nodes["is_leaf"]
    _require(
        count == len(nodes) == 2**levels - 1
        and bool(np.all((start >= 0) & (start <= end) & (end <= samples)))
        and bool(np.all((is_leaf != 0) | (2 * index + 2 < count)))
        and node_bounds.shape == (bounds, count, width)
        and (weights is None or np.shape(weights) == (samples,)),
        "neighbour tree's node",
    )
    _metric(metric, width)


def _metric(metric: Any, width: int) -> None:
    """Metrics that keep a vector or matrix loop over the data's width into it."""
    _, vec, mat = metric.__getstate__()[:3]
    name = type(metric).__name__
    if name.startswith("Mahalanobis"):
        _require(mat.shape == (width, width), "distance metric's")
    elif name.startswith(("SEuclidean", "Minkowski")):
        _require(vec.shape[0] in ((0, width) if name.startswith("Minkowski") else (width,)),
                 "distance metric's")  # fmt: skip
    elif name.startswith("Haversine"):
        _require(width == 2, "distance metric's")


def _svm(model: Any) -> None:
    if not hasattr(model, "support_"):  # an unfitted template (OneVsRest, Bagging, ...)
        return
    support = np.asarray(model.support_)
    count = len(support)
    n_support = np.asarray(model._n_support)
    dual, intercept = model._dual_coef_, np.asarray(model._intercept_)
    fitted_rows, fitted_width = model.shape_fit_
    if model._impl in CLASSIFIERS_SVM:
        k = len(n_support)
        pairs = k * (k - 1) // 2
        sound = (
            k == len(model.classes_)
            and int(n_support.sum()) == count
            and dual.shape == (k - 1, count)
            and intercept.shape == (pairs,)
            and np.size(model._probA) in (0, pairs)
            and np.size(model._probB) in (0, pairs)
        )
    else:
        sound = dual.shape == (1, count) and intercept.shape == (1,)
        sound = sound and bool(np.all((n_support >= 0) & (n_support <= count)))
    sound = sound and bool(np.all((support >= 0) & (support < fitted_rows)))
    if model.kernel != "precomputed":
        vectors = model.support_vectors_
        sound = sound and vectors.shape == (count, fitted_width)
        sound = sound and fitted_width == getattr(model, "n_features_in_", fitted_width)
    _require(sound, "support vector")


def _sparse(matrix: Any) -> None:
    """skops rebuilds sparse matrices with scipy's load_npz, which trusts their indices."""
    try:
        if matrix.format in ("csr", "csc", "bsr"):
            matrix.check_format(full_check=True)
            return
    except (ValueError, TypeError) as exc:
        raise Malformed(f"a sparse matrix is malformed ({exc})") from None
    rows, columns = matrix.shape
    if matrix.format == "coo":
        _require(
            bool(np.all((matrix.row >= 0) & (matrix.row < rows)))
            and bool(np.all((matrix.col >= 0) & (matrix.col < columns))),
            "sparse matrix's index",
        )
    elif matrix.format == "dia":  # the kernels clip each diagonal to the shape themselves
        _require(matrix.data.ndim == 2 and matrix.data.shape[0] == len(matrix.offsets), "dia")
    else:
        raise Malformed(f"a {matrix.format} sparse matrix cannot come from a skops file")


def _vectorizer(vectorizer: Any) -> None:
    # input="filename" opens each request's text as a path on the server: never from a file.
    if vectorizer.input != "content":
        raise Malformed(f"a text vectorizer reads its input as {vectorizer.input!r}, not text")


def _reachable(root: Any) -> Iterator[Any]:
    """Objects held by ``root`` through attributes, lists, tuples and dicts (arrays of
    objects included, as forests keep their trees)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen or isinstance(obj, str | bytes | int | float):
            continue
        seen.add(id(obj))
        if len(seen) > MAX_OBJECTS:
            raise Malformed("the model holds too many objects to check")
        yield obj
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())


__all__ = ["check_fitted_state"]
