"""The reference app: what the common "serve a model with FastAPI and log to Postgres"
tutorial builds, for comparison with predictd on the same model and database.

* the skops model is loaded once at startup (trusting the types skops reports),
* ``/predict`` is a sync ``def`` endpoint, so FastAPI runs it in its threadpool,
* the model is called inline, then one ``INSERT`` + ``COMMIT`` per request through a
  psycopg2 ``ThreadedConnectionPool``, before answering.

Served by uvicorn in one process, like ``predictd serve``::

    REFAPP_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/db \
    REFAPP_MODEL_PATH=/tmp/sentiment.skops \
    python -m uvicorn benchmarks.reference_app:create_app --factory --port 8001
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import psycopg2.extras
import psycopg2.pool
import skops.io as sio
from fastapi import FastAPI
from pydantic import BaseModel

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS predictions (
    id uuid PRIMARY KEY,
    ts timestamptz NOT NULL DEFAULT now(),
    input jsonb NOT NULL,
    output text NOT NULL,
    confidence double precision,
    latency_ms double precision NOT NULL
)
"""
INSERT = (
    "INSERT INTO predictions (id, ts, input, output, confidence, latency_ms) "
    "VALUES (%s, now(), %s, %s, %s, %s)"
)
# FastAPI's threadpool (anyio's default limiter) runs at most 40 sync endpoints at a time;
# one connection per thread means the pool is never exhausted.
POOL_MAX = int(os.environ.get("REFAPP_POOL_MAX", "40"))


class PredictIn(BaseModel):
    text: str


class PredictOut(BaseModel):
    prediction_id: uuid.UUID
    prediction: str
    confidence: float
    latency_ms: float


def load_model(path: str) -> Any:
    untrusted = sio.get_untrusted_types(file=path)
    return sio.load(path, trusted=untrusted)


def create_app() -> FastAPI:
    dsn = os.environ["REFAPP_DATABASE_URL"]
    model = load_model(os.environ["REFAPP_MODEL_PATH"])
    classes = [str(c) for c in model.classes_]
    psycopg2.extras.register_uuid()
    pool = psycopg2.pool.ThreadedConnectionPool(1, POOL_MAX, dsn)

    conn = pool.getconn()
    try:
        with conn.cursor() as cur:
            cur.execute(TABLE_DDL)
        conn.commit()
    finally:
        pool.putconn(conn)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.closeall()

    app = FastAPI(title="reference model server", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: PredictIn) -> PredictOut:
        started = time.perf_counter()
        proba = model.predict_proba([body.text])[0]
        best = int(np.argmax(proba))
        label, confidence = classes[best], float(proba[best])
        latency_ms = (time.perf_counter() - started) * 1000
        prediction_id = uuid.uuid4()
        conn = pool.getconn()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    INSERT,
                    (
                        prediction_id,
                        psycopg2.extras.Json({"text": body.text}),
                        label,
                        confidence,
                        latency_ms,
                    ),
                )
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        finally:
            pool.putconn(conn)
        return PredictOut(
            prediction_id=prediction_id,
            prediction=label,
            confidence=confidence,
            latency_ms=latency_ms,
        )

    return app
