"""The inline app: the smallest FastAPI model server, for comparison with predictd on the same
model. The skops model is loaded once at startup (trusting the types skops reports) and
called inline in an ``async def`` endpoint, one request at a time; nothing is recorded.

Served by uvicorn in one process, like ``predictd serve``::

    PEER_MODEL_PATH=/tmp/sentiment.skops \
    python -m uvicorn benchmarks.inline_app:create_app --factory --port 8002
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import skops.io as sio
from fastapi import FastAPI
from pydantic import BaseModel


class PredictIn(BaseModel):
    text: str


class PredictOut(BaseModel):
    prediction: str
    confidence: float


def load_model(path: str) -> Any:
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def create_app() -> FastAPI:
    model = load_model(os.environ["PEER_MODEL_PATH"])
    classes = [str(c) for c in model.classes_]
    app = FastAPI(title="inline model server")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(body: PredictIn) -> PredictOut:
        proba = model.predict_proba([body.text])[0]
        best = int(np.argmax(proba))
        return PredictOut(prediction=classes[best], confidence=float(proba[best]))

    return app
