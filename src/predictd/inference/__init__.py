"""The HTTP-free inference core: runtimes, validation, and the predict path.

Format plugins (scikit-learn, ONNX, pickle) are imported where a model is opened, so commands
that never open one (`predictd models promote`, `db ...`) start without loading them."""

from predictd.inference.runtime import ModelMeta, ModelRuntime, Prediction
from predictd.inference.service import (
    BatchResult,
    InferenceService,
    ItemInput,
    PredictionResult,
    RequestContext,
)

__all__ = [
    "BatchResult",
    "InferenceService",
    "ItemInput",
    "ModelMeta",
    "ModelRuntime",
    "Prediction",
    "PredictionResult",
    "RequestContext",
]
