# mypy: ignore-errors
# (runs in benchmarks/.venvs/mlserver, made by scripts/peer_venvs.sh: .venv has no MLServer)
"""Part A's `mlserver` target: a custom MLServer runtime for the demo sentiment model.
MLServer's own scikit-learn runtime loads joblib/pickle files; this one loads the skops file
(the model-settings' ``parameters.uri``, trusting the types skops reports) and answers
Open Inference Protocol (V2) requests: input one BYTES tensor ``text``, outputs ``label``
(BYTES) and ``confidence`` (FP64), one row per text. benchmarks/targets.py writes the
settings at run time::

    {"name": "sentiment", "implementation": "mlserver_runtime.SkopsSentiment",
     "parameters": {"uri": "/tmp/sentiment.skops"}}
"""

import numpy as np
import skops.io as sio
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class SkopsSentiment(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self.settings)
        self._model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
        self._classes = np.array([str(c) for c in self._model.classes_], dtype=object)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {i.name: i for i in payload.inputs}
        if "text" not in inputs:
            raise InferenceError('expected one BYTES input named "text"')
        texts = StringCodec.decode_input(inputs["text"])
        proba = self._model.predict_proba(texts)
        best = proba.argmax(axis=1)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                StringCodec.encode_output("label", list(self._classes[best])),
                NumpyCodec.encode_output("confidence", proba[np.arange(len(best)), best]),
            ],
        )
