"""Write src/predictd/inference/trusted_types.py: the exact type names a skops artifact may hold.

Run once per scikit-learn/NumPy/SciPy upgrade and review the diff before committing it:
`.venv/bin/python scripts/generate_trusted_types.py`. The list is deliberately a file in
the repository, not computed at start-up, so that what predictd trusts changes only by a
reviewed commit, never by whatever happens to be importable on a server.

Classes only. A callable (a function, a bound method, ``functools.partial``) in an artifact
runs on every request with the request's data, so none is trusted unless it is on
``REVIEWED_FUNCTIONS`` below: element-wise NumPy ufuncs, which compute and can do nothing else.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import numpy as np
import scipy.sparse
import sklearn
from sklearn.utils import all_estimators

OUT = Path(__file__).resolve().parents[1] / "src/predictd/inference/trusted_types.py"

# Element-wise maths a FunctionTransformer or TransformedTargetRegressor commonly holds.
REVIEWED_FUNCTIONS = sorted(
    f"numpy.{name}"
    for name in (
        "absolute",
        "arcsinh",
        "cbrt",
        "exp",
        "exp2",
        "expm1",
        "log",
        "log10",
        "log1p",
        "log2",
        "negative",
        "reciprocal",
        "sign",
        "sinh",
        "sqrt",
        "square",
        "tanh",
    )
)

BUILTINS = [dict, list, tuple, set, frozenset, str, int, float, bool, bytes, bytearray, slice]
COLLECTIONS = ["collections.OrderedDict", "collections.defaultdict"]

# Fitted state that is not itself an estimator: trees, losses and links of the boosting
# models, neighbour search trees and their metrics, calibration wrappers, helper objects.
# sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor is left out on purpose,
# as skops leaves it out: scikit-learn indexes its node arrays unchecked, so a crafted file
# can crash the process (an opt-in through PREDICTD_TRUSTED_TYPES).
SKLEARN_STATE = [
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.utils._bunch.Bunch",
]


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def classes_in(module: ModuleType, base: type | tuple[type, ...]) -> set[str]:
    return {
        qualified(obj)
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, base) and obj.__module__.startswith(module.__name__.split(".")[0])
    }


def sklearn_types() -> set[str]:
    from sklearn._loss import _loss as cy_loss
    from sklearn._loss import link, loss
    from sklearn.metrics import _dist_metrics

    names = {qualified(cls) for _, cls in all_estimators()}
    names |= classes_in(link, (link.BaseLink, link.Interval))
    names |= classes_in(loss, loss.BaseLoss)
    names |= {
        qualified(obj)
        for name, obj in inspect.getmembers(cy_loss, inspect.isclass)
        if name.startswith("Cy")
    }
    from sklearn.linear_model import _sgd_fast  # SGD's losses: parameters only, no arrays

    names |= classes_in(_sgd_fast, cy_loss.CyLossFunction)
    metrics = (_dist_metrics.DistanceMetric64, _dist_metrics.DistanceMetric32)
    # PyFuncDistance exists to call a Python function from the file: never.
    names |= {n for n in classes_in(_dist_metrics, metrics) if "PyFunc" not in n}
    for name in SKLEARN_STATE:
        module, _, attr = name.rpartition(".")
        __import__(module)
        assert isinstance(getattr(__import__(module, fromlist=[attr]), attr), type), name
        names.add(name)
    return {n for n in names if n.startswith("sklearn.")}


def numpy_types() -> set[str]:
    names = {"numpy.ndarray", "numpy.dtype", qualified(np.ma.MaskedArray)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        names |= {f"{t.__module__}.{t.__name__}" for t in set(np.sctypeDict.values())}
    names |= {qualified(np.random.RandomState), qualified(np.random.Generator)}
    for attr in dir(np.random):
        obj = getattr(np.random, attr)
        concrete = isinstance(obj, type) and issubclass(obj, np.random.BitGenerator)
        if concrete and obj is not np.random.BitGenerator:
            # skops names bit generators by where NumPy exposes them, and by their home
            names |= {f"numpy.random.{attr}", qualified(obj)}
    return names


def scipy_types() -> set[str]:
    base = scipy.sparse.sparray | scipy.sparse.spmatrix if hasattr(scipy.sparse, "sparray") else ()
    found = set()
    for name in dir(scipy.sparse):
        obj = getattr(scipy.sparse, name)
        if isinstance(obj, type) and base and issubclass(obj, base) and "_" in name:
            found.add(qualified(obj))  # csr_matrix, csr_array, ... (not the abstract bases)
    return found


def render(classes: Iterable[str], functions: Iterable[str]) -> str:
    def block(items: Iterable[str]) -> str:
        return "".join(f'        "{item}",\n' for item in sorted(items))

    return (
        '"""The exact type names a skops artifact may hold. GENERATED by\n'
        "scripts/generate_trusted_types.py from scikit-learn "
        f"{sklearn.__version__}, NumPy {np.__version__}\n"
        f"and SciPy {scipy.__version__}: regenerate and review the diff, do not edit by "
        'hand."""\n\n'
        "# Classes: objects of these types may be rebuilt from an artifact.\n"
        "CLASSES: frozenset[str] = frozenset(\n    {\n" + block(classes) + "    }\n)\n\n"
        "# Callables: an artifact may refer to these functions (element-wise maths only).\n"
        "FUNCTIONS: frozenset[str] = frozenset(\n    {\n" + block(functions) + "    }\n)\n"
    )


def main() -> None:
    classes = sklearn_types() | numpy_types() | scipy_types()
    classes |= {f"builtins.{t.__name__}" for t in BUILTINS} | set(COLLECTIONS)
    OUT.write_text(render(classes, REVIEWED_FUNCTIONS))
    print(f"wrote {len(classes)} classes and {len(REVIEWED_FUNCTIONS)} functions to {OUT}")


if __name__ == "__main__":
    main()
