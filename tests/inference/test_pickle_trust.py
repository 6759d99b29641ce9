"""A pickle's globals are read from its opcodes, never by running it; anything not trusted,
or named in a way the walk cannot see, is refused before a byte is unpickled."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from predictd.errors import ArtifactError, UntrustedArtifact
from predictd.inference.pickle_trust import (
    _RestrictedUnpickler,
    check_pickle,
    load_pickle,
    pickle_globals,
)
from tests.registry.mlflow_models import DOUBLER, CallsAnything, Doubler, Payload


def fitted() -> object:
    x = np.random.default_rng(0).normal(size=(30, 2))
    y = (x[:, 0] > 0).astype(int)
    return make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression()).fit(
        np.abs(x), y
    )


@pytest.mark.parametrize("protocol", range(3, pickle.HIGHEST_PROTOCOL + 1))
def test_a_fitted_pipeline_loads_in_python_3_s_protocols(protocol: int) -> None:
    model = fitted()
    data = pickle.dumps(model, protocol=protocol)
    names = pickle_globals(data, "model.pkl")
    assert "sklearn.pipeline.Pipeline" in names
    assert "numpy.log1p" in names
    loaded = load_pickle(data, "model.pkl")
    rows = np.abs(np.random.default_rng(1).normal(size=(4, 2)))
    assert (loaded.predict_proba(rows) == model.predict_proba(rows)).all()  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize(
    ("payload", "named"), [(Payload, "posix.system"), (CallsAnything, "builtins.exec")]
)
def test_code_in_a_pickle_is_named_and_never_run(
    tmp_path: Path, protocol: int, payload: type, named: str
) -> None:
    marker = tmp_path / "marker"
    data = pickle.dumps([1, payload(marker)], protocol=protocol)
    with pytest.raises(UntrustedArtifact) as refused:
        load_pickle(data, "model.pkl")
    # protocols 0-2 write Python 2's module names (__builtin__.exec), refused all the same
    assert refused.value.types == [
        named if protocol > 2 else named.replace("builtins", "__builtin__")
    ]
    assert not marker.exists()


def test_a_custom_class_needs_the_operator_s_trust() -> None:
    data = pickle.dumps(make_pipeline(Doubler(), LogisticRegression()))
    with pytest.raises(UntrustedArtifact) as refused:
        check_pickle(data, "model.pkl")
    assert refused.value.types == [DOUBLER]
    assert DOUBLER in check_pickle(data, "model.pkl", [DOUBLER])
    # exact names only: a prefix of the module trusts nothing
    with pytest.raises(UntrustedArtifact):
        check_pickle(data, "model.pkl", ["tests.registry.mlflow_models", "tests.registry"])


def test_a_name_the_walk_cannot_see_is_refused(tmp_path: Path) -> None:
    """'os' and 'system' pushed, then a MARK/POP_MARK between them and STACK_GLOBAL: Python
    would import os.system; the walk does not know what is on the stack and refuses."""
    marker = tmp_path / "marker"
    command = f"touch {marker}".encode()
    data = (
        b"\x80\x04\x8c\x02os\x8c\x06system(1\x93"
        + b"\x8c"
        + bytes([len(command)])
        + command
        + b"\x85R."
    )
    with pytest.raises(ArtifactError, match="computes the name of a global"):
        load_pickle(data, "model.pkl")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x80\x02\x82\x01.", "extension registry"),  # EXT1 1
        (b"\x80\x02N\x51.", "persistent id"),  # BINPERSID
        (b"\x80\x05\x97.", "out-of-band buffer"),  # NEXT_BUFFER
        (b"not a pickle", "not a readable pickle"),
        (b"\x80\x04\x8c\x02os", "not a readable pickle"),  # cut short
    ],
)
def test_other_routes_to_objects_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ArtifactError, match=why):
        load_pickle(data, "model.pkl")


def test_the_unpickler_itself_returns_only_allowed_names(tmp_path: Path) -> None:
    """Were the walk ever wrong, the load still imports nothing it was not given."""
    marker = tmp_path / "marker"
    data = pickle.dumps(Payload(marker))
    unpickler = _RestrictedUnpickler(io.BytesIO(data), frozenset({"numpy.ndarray"}), "m.pkl")
    with pytest.raises(UntrustedArtifact, match=r"posix\.system"):
        unpickler.load()
    assert not marker.exists()
