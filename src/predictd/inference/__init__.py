"""The HTTP-free inference core: runtimes, validation, and the predict path."""

from predictd.inference.runtime import ModelMeta, ModelRuntime, Prediction
from predictd.inference.service import (
    BatchResult,
    InferenceService,
    ItemInput,
    PredictionResult,
    RequestContext,
)
from predictd.inference.sklearn_runtime import SklearnRuntime, describe_estimator, load_estimator

__all__ = [
    "BatchResult",
    "InferenceService",
    "ItemInput",
    "ModelMeta",
    "ModelRuntime",
    "Prediction",
    "PredictionResult",
    "RequestContext",
    "SklearnRuntime",
    "describe_estimator",
    "load_estimator",
]
