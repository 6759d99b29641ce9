# mypy: ignore-errors
# (runs in benchmarks/.venvs/bentoml, made by scripts/peer_venvs.sh: .venv has no BentoML)
"""Part A's `bentoml` target: the demo sentiment model (skops) served by BentoML the way its
docs show, one ``@bentoml.service`` class with one sync ``@bentoml.api`` (BentoML runs it in
its thread pool: ``threads`` 1, the default), one worker; access log off, like the other
targets; nothing recorded::

    PEER_MODEL_PATH=/tmp/sentiment.skops benchmarks/.venvs/bentoml/bin/bentoml serve \
        bentoml_service:Sentiment --working-dir benchmarks/peers --port 3000
    curl -d '{"text": "great"}' -H 'content-type: application/json' localhost:3000/predict
"""

import os

import bentoml
import numpy as np
import skops.io as sio


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Sentiment:
    def __init__(self) -> None:
        path = os.environ["PEER_MODEL_PATH"]
        self.model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
        self.classes = [str(c) for c in self.model.classes_]

    @bentoml.api
    def predict(self, text: str) -> dict[str, str | float]:
        proba = self.model.predict_proba([text])[0]
        best = int(np.argmax(proba))
        return {"prediction": self.classes[best], "confidence": float(proba[best])}
