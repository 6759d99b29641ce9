"""Hostile skops artifacts: every name in the file is checked before anything is imported.

Each hostile artifact is a real, normally fitted pipeline saved by skops whose schema then
names a gadget instead of a harmless callable or class, as an attacker would write it. If
the artifact loaded, the request text given to it would write a marker file; the marker's
absence proves nothing ran.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skops.io import dump

from predictd.errors import ArtifactError, UntrustedArtifact
from predictd.inference.formats import open_artifact
from predictd.inference.skops_trust import read_types
from predictd.inference.trusted_types import CLASSES, FUNCTIONS
from predictd.settings import Settings

TEXTS = ["great value", "awful service", "love it", "broken again"] * 5
LABELS = ["pos", "neg", "pos", "neg"] * 5


def placeholder(doc: str) -> list[str]:
    """Stands in for the gadget while fitting; the schema is rewritten afterwards."""
    return doc.split()


def placeholder_text(doc: str) -> str:
    return doc


PLACEHOLDER = f"{placeholder.__module__}.placeholder"


def rewrite(path: Path, old: str, new: str) -> None:
    """Rename ``old`` (module.name) to ``new`` wherever the schema names it."""
    old_module, _, old_name = old.rpartition(".")
    new_module, _, new_name = new.rpartition(".")
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    schema = json.loads(members["schema.json"])
    renamed = 0
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if (item.get("__module__"), item.get("__class__")) == (old_module, old_name):
                item["__module__"], item["__class__"] = new_module, new_name
                renamed += 1
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    assert renamed, f"{old} is not in the schema"
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def text_pipeline(**vectorizer: Any) -> Any:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline([("vec", CountVectorizer(**vectorizer)), ("clf", LogisticRegression())]).fit(
        TEXTS, LABELS
    )


def saved(tmp_path: Path, model: Any, name: str = "model.skops") -> Path:
    path = tmp_path / name
    dump(model, path)
    return path


def attempt(path: Path, payload: str) -> ArtifactError | None:
    """Open the artifact as registration does; should it open, predict ``payload`` with it,
    as the first request would. Returns the refusal, or None when it loaded."""
    try:
        _, runtime = open_artifact(path, Settings().inference)
    except ArtifactError as exc:
        return exc
    with contextlib.suppress(Exception):
        runtime.predict([payload])
    return None


def python_writing(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"


Gadget = Callable[[Path, Path], tuple[Path, str, str]]  # (tmp, marker) -> file, type, payload


def analyzer_shell(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    gadget = "numpy.distutils.exec_command.exec_command"
    path = saved(tmp, text_pipeline(analyzer=placeholder))
    rewrite(path, PLACEHOLDER, gadget)
    return path, gadget, f"touch {marker}"


def analyzer_exec(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    path = saved(tmp, text_pipeline(analyzer=placeholder))
    rewrite(path, PLACEHOLDER, "builtins.exec")
    return path, "builtins.exec", python_writing(marker)


def function_transformer_eval(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = Pipeline(
        [
            ("vec", CountVectorizer()),
            ("fn", FunctionTransformer(func=placeholder, validate=False)),
            ("clf", LogisticRegression()),
        ]
    )
    model.set_params(fn__func=None).fit(TEXTS, LABELS).set_params(fn__func=placeholder)
    path = saved(tmp, model)
    rewrite(path, PLACEHOLDER, "builtins.eval")
    return path, "builtins.eval", python_writing(marker)


def tokenizer_exec(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    path = saved(tmp, text_pipeline(tokenizer=placeholder, token_pattern=None, lowercase=False))
    rewrite(path, PLACEHOLDER, "builtins.exec")
    return path, "builtins.exec", python_writing(marker)


def preprocessor_eval(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    path = saved(tmp, text_pipeline(preprocessor=placeholder_text))
    rewrite(path, PLACEHOLDER + "_text", "builtins.eval")
    return path, "builtins.eval", python_writing(marker)


def numpy_function_that_runs_code(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    # numpy.testing's runstring(code, namespace) exec()s its first argument: a preprocessor
    # is called with one argument, so the namespace is the gadget's only obstacle; a
    # tokenizer sees the preprocessed text. Any numpy function is refused unless reviewed.
    gadget = "numpy.testing._private.utils.runstring"
    path = saved(tmp, text_pipeline(analyzer=placeholder))
    rewrite(path, PLACEHOLDER, gadget)
    return path, gadget, python_writing(marker)


def class_in_an_allowed_module(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    # numpy's DataSource opens local files and URLs; it is under numpy but on no list.
    from sklearn.preprocessing import StandardScaler

    gadget = "numpy.lib._datasource.DataSource"
    model = text_pipeline()
    model.steps.insert(1, ("extra", StandardScaler(with_mean=False)))
    path = saved(tmp, model)
    rewrite(path, "sklearn.preprocessing._data.StandardScaler", gadget)
    return path, gadget, python_writing(marker)


def bound_method(tmp: Path, marker: Path) -> tuple[Path, str, str]:
    # A method of an allowed object is still a callable from the file: not reviewed, refused.
    from sklearn.feature_extraction.text import CountVectorizer

    helper = CountVectorizer()
    path = saved(tmp, text_pipeline(preprocessor=helper.decode))
    return path, "sklearn.feature_extraction.text.CountVectorizer.decode", "hi"


HOSTILE: list[Gadget] = [
    analyzer_shell,
    analyzer_exec,
    function_transformer_eval,
    tokenizer_exec,
    preprocessor_eval,
    numpy_function_that_runs_code,
    class_in_an_allowed_module,
    bound_method,
]


@pytest.mark.parametrize("gadget", HOSTILE, ids=lambda g: g.__name__)
def test_a_hostile_artifact_is_refused_naming_the_type_and_nothing_runs(
    gadget: Gadget, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    path, named, payload = gadget(tmp_path, marker)
    refused = attempt(path, payload)
    assert isinstance(refused, UntrustedArtifact), refused
    assert named in refused.types
    assert named in refused.message
    assert "PREDICTD_TRUSTED_TYPES" in refused.message
    assert not marker.exists()


def test_the_gadgets_are_real(tmp_path: Path) -> None:
    """The exec gadget, trusted by the operator, does run the request's text: the refusal
    above is what stands between a hostile file and code execution."""
    marker = tmp_path / "marker"
    path, named, payload = analyzer_exec(tmp_path, marker)
    _, runtime = open_artifact(path, Settings(trusted_types=[named]).inference)
    with contextlib.suppress(Exception):
        runtime.predict([payload])
    assert marker.read_text() == "ran"


def zoo() -> list[Any]:
    """Models people serve: each must load with no opt-in."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    rng = np.random.RandomState(0)
    x = rng.rand(60, 4)
    y = (x[:, 0] > 0.5).astype(int)
    columns = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore"), [0]), ("scale", StandardScaler(), [1])]
    )
    return [
        Pipeline([("t", TfidfVectorizer(ngram_range=(1, 2))), ("c", LogisticRegression())]).fit(
            TEXTS, LABELS
        ),
        make_pipeline(HashingVectorizer(n_features=64), LogisticRegression()).fit(TEXTS, LABELS),
        make_pipeline(TfidfVectorizer(), MultinomialNB()).fit(TEXTS, LABELS),
        RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        GradientBoostingRegressor(n_estimators=3).fit(x, x.sum(axis=1)),
        make_pipeline(SimpleImputer(), StandardScaler(), PCA(2), SVC()).fit(x, y),
        KNeighborsClassifier().fit(x, y),
        Ridge().fit(x, x.sum(axis=1)),
        make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(x, y),
        make_pipeline(columns, LogisticRegression()).fit(np.c_[rng.randint(0, 3, 60), x], y),
    ]


@pytest.mark.parametrize("index", range(10))
def test_models_people_serve_load_without_an_opt_in(index: int, tmp_path: Path) -> None:
    path = saved(tmp_path, zoo()[index])
    flavor, runtime = open_artifact(path, Settings().inference)
    assert flavor == "sklearn"
    assert runtime.schema().algorithm


def test_an_opt_in_is_exact_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """HistGradientBoosting holds TreePredictor, which skops itself declines to trust (its
    node arrays are indexed unchecked): refused by default, loaded when the operator lists
    exactly that type, and the opt-in is logged."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.random.RandomState(0).rand(40, 3)
    path = saved(tmp_path, HistGradientBoostingClassifier(max_iter=3).fit(x, x[:, 0] > 0.5))
    predictor = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    refused = attempt(path, "")
    assert isinstance(refused, UntrustedArtifact)
    assert refused.types == [predictor]
    prefix_only = Settings(trusted_types=["sklearn.ensemble._hist_gradient_boosting."]).inference
    with pytest.raises(UntrustedArtifact):
        open_artifact(path, prefix_only)
    with caplog.at_level(logging.WARNING, logger="predictd.inference"):
        open_artifact(path, Settings(trusted_types=[predictor]).inference)
    opted = [r for r in caplog.records if "PREDICTD_TRUSTED_TYPES" in r.getMessage()]
    assert opted
    assert getattr(opted[0], "types", None) == [predictor]


def nested_schema(depth: int) -> str:
    gadget = '{"__class__": "system", "__module__": "os", "__loader__": "FunctionNode"}'
    node = '"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": ['
    inner = ("{" + node) * (depth - 1) + gadget + "]}" * (depth - 1)
    return '{"protocol": 2, ' + node + inner + "]}"


def test_every_name_in_the_schema_is_seen_however_deep(tmp_path: Path) -> None:
    path = tmp_path / "deep.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", nested_schema(200))
    assert read_types(path).callables == {"os.system"}
    with zipfile.ZipFile(path, "w") as archive:  # deeper than the JSON parser goes
        archive.writestr("schema.json", nested_schema(100_000))
    with pytest.raises(ArtifactError, match="not a readable skops artifact"):
        read_types(path)


def test_another_protocol_or_an_unknown_loader_is_refused(tmp_path: Path) -> None:
    """skops keeps older loaders that read the names they import from other fields than
    the ones checked here: a file of another protocol is refused, not guessed at."""
    path = saved(tmp_path, text_pipeline())
    schema = json.loads(zipfile.ZipFile(path).read("schema.json"))
    for protocol in (0, 1, 3, "2", None):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("schema.json", json.dumps(schema | {"protocol": protocol}))
        with pytest.raises(ArtifactError, match="skops file protocol"):
            read_types(path)
    schema["__loader__"] = "OldFunctionNode"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    with pytest.raises(UntrustedArtifact, match="OldFunctionNode"):
        read_types(path)


def test_a_file_that_is_not_a_zip_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.skops"
    path.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a readable skops artifact"):
        read_types(path)
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    path.write_bytes(empty.getvalue())
    with pytest.raises(ArtifactError, match="not a readable skops artifact"):
        read_types(path)


def test_the_allow_list_holds_classes_and_reviewed_ufuncs_only() -> None:
    import importlib

    for name in FUNCTIONS:
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), np.ufunc), name
    prefixes = ("builtins.", "collections.", "numpy.", "scipy.sparse.", "sklearn.")
    assert all(name.startswith(prefixes) for name in CLASSES)
    dangerous = {"builtins.eval", "builtins.exec", "builtins.getattr", "builtins.open"}
    assert not dangerous & (CLASSES | FUNCTIONS)
    for name in sorted(CLASSES):
        module, _, attr = name.rpartition(".")
        with contextlib.suppress(ImportError):  # a private module renamed by an upgrade
            assert isinstance(getattr(importlib.import_module(module), attr, type), type), name
