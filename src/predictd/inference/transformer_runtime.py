"""Runtime for Hugging Face sequence classifiers exported to ONNX (inference/transformer_bundle.py).

A text goes through the model's own ``tokenizers`` tokenizer (truncated at the model's maximum
length; a micro-batch padded to its longest item, the attention mask marking the padding),
then through ONNX Runtime, which takes ``input_ids`` and ``attention_mask`` (and
``token_type_ids``, all zeros, where the graph asks for them) and returns logits; the answer
is the softmax of the logits with the labels of ``id2label``. Needs ``predictd[transformers]``
(onnxruntime and tokenizers; no PyTorch). ONNX Runtime's execution providers come from
``PREDICTD_ONNX_PROVIDERS``: one that this onnxruntime build lacks (CUDA without
``onnxruntime-gpu``) is skipped with a warning, and /model-info shows the ones in use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictd.errors import ArtifactError
from predictd.inference import transformer_bundle
from predictd.inference.onnx_runtime import CPU, usable_providers
from predictd.inference.runtime import (
    ModelInput,
    ModelMeta,
    ModelRuntime,
    Prediction,
    RuntimeDetails,
    Schema,
    TextVocabulary,
    from_probabilities,
)

INSTALL_HINT = "pip install 'predictd[transformers]'"
FEEDS = ("input_ids", "attention_mask", "token_type_ids")


def _imports() -> tuple[Any, Any]:
    try:
        import onnxruntime
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ArtifactError(
            f"transformer models need onnxruntime and tokenizers: {INSTALL_HINT}"
        ) from exc
    return onnxruntime, Tokenizer


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


class TransformerRuntime(ModelRuntime):
    flavor = "transformer"

    def __init__(
        self, path: Path, meta: ModelMeta, providers: Sequence[str] = (CPU,), threads: int = 1
    ) -> None:
        super().__init__(path, meta)
        self.providers = tuple(providers)
        # Calls already run on several worker threads; one ORT thread each avoids
        # oversubscribing the CPU (as for other ONNX models).
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._bundle: transformer_bundle.Bundle | None = None
        self._feeds: tuple[str, ...] = ()
        self._output = ""
        self._unknown: str | None = None

    def load(self) -> None:
        ort, tokenizer_class = _imports()
        bundle = transformer_bundle.read(self.path)
        try:
            tokenizer = tokenizer_class.from_str(bundle.tokenizer)
        except Exception as exc:  # the tokenizers library raises plain Exceptions
            raise ArtifactError(f"{self.path.name}: tokenizer.json does not load: {exc}") from exc
        pad_token = bundle.pad_token or "[PAD]"
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ArtifactError(
                f"{self.path.name}: the pad token {pad_token!r} is not in the tokenizer's "
                "vocabulary; set pad_token in tokenizer_config.json"
            )
        tokenizer.enable_truncation(max_length=bundle.max_length)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # to the longest item
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = usable_providers(self.providers, ort.get_available_providers())
        try:
            session = ort.InferenceSession(bundle.model, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime's own exception types
            raise ArtifactError(
                f"{self.path.name}: model.onnx is not a model onnxruntime can load: "
                f"{str(exc).strip()[:500]}"
            ) from exc
        self._check_graph(session, len(bundle.labels))
        self._session, self._tokenizer, self._bundle = session, tokenizer, bundle
        model = getattr(tokenizer, "model", None)
        self._unknown = getattr(model, "unk_token", None)

    def _check_graph(self, session: Any, labels: int) -> None:
        names = [i.name for i in session.get_inputs()]
        if not {"input_ids", "attention_mask"} <= set(names) or set(names) - set(FEEDS):
            raise ArtifactError(
                f"{self.path.name}: model.onnx takes {names}; a sequence classifier export "
                "takes input_ids and attention_mask (and optionally token_type_ids)"
            )
        self._feeds = tuple(names)
        outputs = session.get_outputs()
        logits = next((o for o in outputs if o.name == "logits"), outputs[0] if outputs else None)
        shape = list(logits.shape) if logits is not None else []
        if logits is None or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != labels):
            raise ArtifactError(
                f"{self.path.name}: model.onnx must output logits [batch, {labels}] (one per "
                f"id2label entry); it outputs {[(o.name, o.shape) for o in outputs]}"
            )
        self._output = logits.name

    @property
    def bundle(self) -> transformer_bundle.Bundle:
        if self._bundle is None:
            raise ArtifactError(f"{self.path.name}: used before load()")
        return self._bundle

    def schema(self) -> Schema:
        return Schema(
            input_kind="text",
            task="classification",
            feature_names=(),
            classes=self.bundle.labels,
            algorithm="transformer (ONNX)",
        )

    def details(self) -> RuntimeDetails:
        providers = tuple(self._session.get_providers()) if self._session is not None else ()
        return RuntimeDetails(
            execution_providers=providers, max_input_tokens=self.bundle.max_length
        )

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The feeds for ``texts``: one micro-batch, padded to its longest item."""
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.array(
            [e.attention_mask for e in encodings], dtype=np.int64)}  # fmt: skip
        if "token_type_ids" in self._feeds:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds

    def predict(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        texts = [t for t in inputs if isinstance(t, str)]
        if len(texts) != len(inputs):
            raise ArtifactError(f"{self.path.name} takes text only")
        [logits] = self._session.run([self._output], self.encode(texts))
        proba = softmax(np.asarray(logits, dtype=np.float64).reshape(len(texts), -1))
        return from_probabilities(proba, self.meta.classes)

    def vocabulary(self) -> TextVocabulary | None:
        """Word pieces, for the token drift tests: a piece the vocabulary lacks becomes the
        unknown token, which is the one token counted as out of vocabulary."""
        tokenizer = self._tokenizer
        if tokenizer is None:
            return None
        known = set(tokenizer.get_vocab()) - ({self._unknown} if self._unknown else set())

        def tokens(text: str) -> list[str]:
            return list(tokenizer.encode(text, add_special_tokens=False).tokens)

        return TextVocabulary(tokens=tokens, known=known)
