"""Runtime for scikit-learn estimators saved with joblib or pickle (``.joblib``, ``.pkl``).

Unpickling runs whatever code the file names, so this flavor is off unless
``PREDICTD_ALLOW_PICKLE`` is set, and the refusal happens when the runtime is built: before a
single byte is unpickled, at registration and at every load. The registry's sha256 check
(``ArtifactStore.verified_path``) still runs before the file is opened, so an enabled server only
unpickles the exact bytes that were registered. Everything after deserialisation (schema,
prediction) is the skops runtime's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib

from predictd.errors import ArtifactError
from predictd.inference.runtime import ModelMeta
from predictd.inference.sklearn_runtime import SklearnRuntime


def pickle_refused(path: Path) -> ArtifactError:
    return ArtifactError(
        f"{path.name} is a pickle/joblib file, and loading one runs any code it contains. "
        "Save the model with skops (.skops) or convert it to ONNX (.onnx); or, only for "
        "artifacts you built yourself, set PREDICTD_ALLOW_PICKLE=true"
    )


class PickleRuntime(SklearnRuntime):
    flavor = "pickle"

    def __init__(self, path: Path, meta: ModelMeta, *, allow_pickle: bool) -> None:
        # Refuse at construction, so no code path can reach _deserialize without the opt-in.
        if not allow_pickle:
            raise pickle_refused(path)
        super().__init__(path, meta)

    def _deserialize(self) -> Any:
        try:
            estimator = joblib.load(self.path)
        except Exception as exc:  # unpickling can fail in any way the file's code chooses
            raise ArtifactError(f"could not unpickle {self.path.name}: {exc!r}") from exc
        if not callable(getattr(estimator, "predict", None)):
            raise ArtifactError(
                f"{self.path.name} holds a {type(estimator).__name__}, not a fitted "
                "scikit-learn-style estimator with predict()"
            )
        return estimator
