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

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
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
# The tokenizer.json parts predictd accepts, by their "type" (what the tokenizers library
# ships for the encoder families a sequence classifier is exported from). Anything else,
# e.g. a custom component, is refused before the library reads the file.
COMPONENTS = {
    "normalizer": {"BertNormalizer", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip",
                   "StripAccents", "Replace", "Prepend", "Precompiled", "Sequence"},
    "pre_tokenizer": {"BertPreTokenizer", "ByteLevel", "Whitespace", "WhitespaceSplit",
                      "Metaspace", "Punctuation", "Digits", "Split", "CharDelimiterSplit",
                      "UnicodeScripts", "Sequence"},
    "model": {"WordPiece", "BPE", "Unigram", "WordLevel"},
    "post_processor": {"TemplateProcessing", "BertProcessing", "RobertaProcessing",
                       "ByteLevel", "Sequence"},
    "decoder": {"WordPiece", "ByteLevel", "Metaspace", "BPEDecoder", "CTC", "Replace",
                "Strip", "Fuse", "ByteFallback", "Sequence"},
}  # fmt: skip
# WordPiece's matching is quadratic in a word's length: BERT's tokenizers say 100.
MAX_CHARS_PER_WORD = 200
MAX_PATTERN = 200
# A group that repeats and holds a repetition or alternative: the shape of regular
# expressions that backtrack without end (catastrophic backtracking).
_NESTED_REPEAT = re.compile(r"\([^()]*[*+?|{][^()]*\)\s*[*+{]")


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
        check_tokenizer(bundle.tokenizer, self.path.name)
        try:
            tokenizer = tokenizer_class.from_str(bundle.tokenizer)
        except BaseException as exc:  # plain Exceptions, and Rust panics (not Exceptions)
            if not (isinstance(exc, Exception) or _is_panic(exc)):
                raise
            raise ArtifactError(f"{self.path.name}: tokenizer.json does not load: {exc}") from None
        vocabulary = tokenizer.get_vocab_size(with_added_tokens=True)
        if bundle.vocab_size is not None and vocabulary > bundle.vocab_size:
            raise ArtifactError(
                f"{self.path.name}: the tokenizer has {vocabulary} tokens, the model's "
                f"embedding {bundle.vocab_size} (config.json vocab_size): ids past it would fail"
            )
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
        self._probe(session, bundle.max_length, vocabulary)
        # The graph's bytes now live in the session; the bundle keeps what serving reads.
        self._session, self._tokenizer = session, tokenizer
        self._bundle = replace(bundle, model=b"")
        model = getattr(tokenizer, "model", None)
        self._unknown = getattr(model, "unk_token", None) or bundle.unk_token

    def _probe(self, session: Any, max_length: int, vocabulary: int) -> None:
        """The longest input the tokenizer can make, of its last id: a model whose positions
        or embedding are shorter than the configuration says fails here, at registration,
        not on the first long text a client sends."""
        ids = np.full((1, max_length), vocabulary - 1, dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in self._feeds:
            feeds["token_type_ids"] = np.zeros_like(ids)
        try:
            [logits] = session.run([self._output], feeds)
        except Exception as exc:
            raise ArtifactError(
                f"{self.path.name}: model.onnx fails on {max_length} tokens (the maximum "
                f"length) of id {vocabulary - 1} (the tokenizer's last): "
                f"{str(exc).strip()[:300]}; check model_max_length, max_position_embeddings "
                "and vocab_size"
            ) from exc
        if not np.isfinite(np.asarray(logits, dtype=np.float64)).all():
            raise ArtifactError(f"{self.path.name}: model.onnx answers non-finite logits")

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
        with _panics_as_errors():
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
        scores = np.asarray(logits, dtype=np.float64).reshape(len(texts), -1)
        if not np.isfinite(scores).all():  # a batch fails; retried item by item, the bad alone
            raise ValueError("the model answered non-finite logits for this input")
        proba = softmax(scores)
        return from_probabilities(proba, self.meta.classes)

    def vocabulary(self) -> TextVocabulary | None:
        """Word pieces, for the token drift tests: a piece the vocabulary lacks becomes the
        unknown token, which is the one token counted as out of vocabulary."""
        tokenizer = self._tokenizer
        if tokenizer is None:
            return None
        known = set(tokenizer.get_vocab()) - ({self._unknown} if self._unknown else set())

        def tokens(text: str) -> list[str]:
            with _panics_as_errors():
                return list(tokenizer.encode(text, add_special_tokens=False).tokens)

        return TextVocabulary(tokens=tokens, known=known)


def _is_panic(exc: BaseException) -> bool:
    """The tokenizers library's Rust panics arrive as pyo3's PanicException, which derives
    from BaseException (past every ``except Exception``) and cannot be imported by name."""
    return type(exc).__name__ == "PanicException" and not isinstance(exc, Exception)


@contextmanager
def _panics_as_errors() -> Iterator[None]:
    """A tokenizer panic on one input becomes that input's error (the micro-batch retries
    its items one by one), not an escape past the server's error handling."""
    try:
        yield
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        raise RuntimeError(f"the tokenizer failed on this input: {str(exc)[:200]}") from None


def check_tokenizer(text: str, where: str) -> None:
    """Refuse a tokenizer.json before the library reads it: components by exact type,
    regular expressions without nested repetition, WordPiece words bounded."""
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{where}: tokenizer.json is not JSON predictd reads: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        raise ArtifactError(f"{where}: tokenizer.json has no model")
    for part, allowed in COMPONENTS.items():
        for component in _components(spec.get(part)):
            kind = component.get("type")
            if part == "model" and kind is None and "vocab" in component:
                kind = "BPE" if "merges" in component else "WordPiece"  # older files
            if kind not in allowed:
                shown = kind[:40] if isinstance(kind, str) else type(kind).__name__
                raise ArtifactError(f"{where}: tokenizer.json {part} {shown!r} is not supported")
            pattern = component.get("pattern")
            regex = pattern.get("Regex") if isinstance(pattern, dict) else None
            if regex is not None and (
                not isinstance(regex, str)
                or len(regex) > MAX_PATTERN
                or _NESTED_REPEAT.search(regex)
            ):
                raise ArtifactError(
                    f"{where}: tokenizer.json {part} {kind} has a regular expression predictd "
                    "does not run (nested repetition, or over 200 characters)"
                )
    words = spec["model"].get("max_input_chars_per_word")
    if words is not None and (not isinstance(words, int) or not 1 <= words <= MAX_CHARS_PER_WORD):
        raise ArtifactError(
            f"{where}: tokenizer.json max_input_chars_per_word must be 1-{MAX_CHARS_PER_WORD}"
        )


def _components(value: object) -> Iterator[dict[str, Any]]:
    """A component and, for a Sequence, the ones inside it (nested at most a few deep)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None:
            continue
        if not isinstance(item, dict) or depth > 4:
            raise ArtifactError("tokenizer.json: a component is not an object")
        yield item
        for key in ("normalizers", "pretokenizers", "processors", "decoders"):
            inner = item.get(key)
            if isinstance(inner, list):
                stack.extend((child, depth + 1) for child in inner)
