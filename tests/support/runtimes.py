"""Model runtimes for tests: the real loaded model, made to fail on purpose."""

from __future__ import annotations

from collections.abc import Sequence

from predictd.inference.runtime import ModelInput, Prediction
from predictd.inference.service import InferenceService
from predictd.inference.sklearn_runtime import SklearnRuntime


class ExplodingRuntime(SklearnRuntime):
    """The real loaded model, failing on any call that contains an input with "explode"."""

    def predict(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        if any(isinstance(i, str) and "explode" in i for i in inputs):
            raise RuntimeError("boom: secret internals /etc/passwd")
        return super().predict(inputs)


def serve_exploding(inference: InferenceService) -> None:
    """Swap the default model's runtime for an exploding twin of it."""
    runtime = inference.runtime
    assert runtime is not None
    exploding = ExplodingRuntime(runtime.path, runtime.meta)
    exploding.prepare()
    inference.set_runtime(exploding)
