"""Check the node arrays of every decision tree a loaded estimator holds.

skops rebuilds a ``sklearn.tree._tree.Tree`` from the arrays in the file and scikit-learn
walks them without bounds checks: a crafted child index or feature number reads outside
memory on the first prediction (a crash, or worse), a child pointing back up loops for ever.
A fitted tree always numbers a node's children after the node, so requiring exactly that
rules out both, for the cost of a few vectorised comparisons at load.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from predictd.errors import ArtifactError

LEAF = -1
MAX_OBJECTS = 1_000_000  # a forest of 1,000 trees holds a few thousand objects


def check_trees(estimator: Any, artifact: str) -> int:
    """Raise ArtifactError if any tree in ``estimator`` is malformed; returns how many
    trees were checked."""
    from sklearn.tree import BaseDecisionTree
    from sklearn.tree._tree import Tree

    checked = 0
    for obj in _reachable(estimator):
        if isinstance(obj, Tree):
            _check(obj, artifact)
            checked += 1
        elif isinstance(obj, BaseDecisionTree) and hasattr(obj, "tree_"):
            # the model checks a request's width against n_features_in_, the tree indexes
            # by its own n_features: the two must agree
            expected = getattr(obj, "n_features_in_", obj.tree_.n_features)
            if obj.tree_.n_features != expected:
                raise ArtifactError(f"{artifact}: a tree's feature count disagrees with its model")
    return checked


def _check(tree: Any, artifact: str) -> None:
    nodes = tree.__getstate__()["nodes"]
    count = len(nodes)
    index = np.arange(count)
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == LEAF
    split = ~leaf
    sound = (
        count > 0
        and bool(np.all(right[leaf] == LEAF))
        and bool(np.all((left[split] > index[split]) & (left[split] < count)))
        and bool(np.all((right[split] > index[split]) & (right[split] < count)))
        and bool(np.all((feature[split] >= 0) & (feature[split] < tree.n_features)))
    )
    if not sound:
        raise ArtifactError(f"{artifact}: a decision tree's node arrays are malformed")


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
            raise ArtifactError("the model holds too many objects to check")
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


__all__ = ["check_trees"]
