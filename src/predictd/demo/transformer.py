"""A small transformer-style text classifier, built offline from the demo sentences, in the
layout ``optimum-cli export onnx`` writes for a Hugging Face sequence classifier.

Nothing is downloaded: a WordPiece tokenizer is trained with ``tokenizers`` on the demo
sentences, and the model is an ONNX graph built with ``onnx.helper`` that takes
``input_ids`` and ``attention_mask`` like an exported encoder: token embedding, mean pooling
over the unmasked tokens, a linear layer to one logit per label. The embeddings are the
per-label token statistics of the training sentences (``embeddings_for``) and the linear layer
is a logistic regression fitted by scikit-learn on the pooled embeddings, so the graph answers
like a (tiny) trained classifier. The demo
(``predictd demo --transformer``), the tests and benchmark part I all use this builder.
Needs ``predictd[transformers]`` (tokenizers, onnx).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictd.demo.train import DemoModel, held_out_scores, load_sentiment_data, write_csv
from predictd.errors import PredictdError
from predictd.inference.values import ItemInput

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_LENGTH = 128
DIMENSIONS = 96
VOCABULARY = 3000
NAME = "sentiment_transformer"


def train_tokenizer(texts: Sequence[str], vocab_size: int = VOCABULARY) -> Any:
    """A BERT-style WordPiece tokenizer (lower-cased, [CLS] text [SEP]) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))  # noqa: S106 (a token)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(
        texts, WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL))
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    return tokenizer


def pooled(tokenizer: Any, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """The mean of the token embeddings of each text: what the graph computes before its
    linear layer (padding masked out)."""
    rows = []
    for encoding in tokenizer.encode_batch(list(texts)):
        rows.append(embeddings[np.asarray(encoding.ids, dtype=np.int64)].mean(axis=0))
    return np.asarray(rows, dtype=np.float32)


def embeddings_for(
    tokenizer: Any, texts: Sequence[str], labels: Sequence[str], names: Sequence[str], rng: Any
) -> np.ndarray:
    """The embedding table: its first dimensions are each token's smoothed log-frequency per
    label against the mean over labels (what a naive Bayes reads), the rest small noise. A
    real encoder learns its embeddings; these are fitted in one pass instead, with no
    training loop, so the demo builds in a second."""
    vocab = tokenizer.get_vocab_size()
    counts = np.ones((len(names), vocab))
    for encoding, label in zip(tokenizer.encode_batch(list(texts)), labels, strict=True):
        np.add.at(counts[names.index(label)], np.asarray(encoding.ids, dtype=np.int64), 1)
    log_p = np.log(counts / counts.sum(axis=1, keepdims=True))
    table = rng.normal(0, 0.1, (vocab, DIMENSIONS))
    table[:, : len(names)] = 3 * (log_p - log_p.mean(axis=0)).T
    table[tokenizer.token_to_id("[PAD]")] = 0.0
    return np.asarray(table, dtype=np.float32)


def build_graph(embeddings: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> Any:
    """embedding -> masked mean pooling -> linear -> logits, as an ONNX model (opset 17)."""
    from onnx import TensorProto, helper, numpy_helper

    labels = weights.shape[1]
    f32 = TensorProto.FLOAT
    initializers = [
        numpy_helper.from_array(embeddings.astype(np.float32), "embeddings"),
        numpy_helper.from_array(weights.astype(np.float32), "classifier.weight"),
        numpy_helper.from_array(bias.astype(np.float32), "classifier.bias"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "sequence_axis"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "feature_axis"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["token_embeddings"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=f32),
        helper.make_node("Unsqueeze", ["mask", "feature_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["token_embeddings", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "sequence_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "sequence_axis"], ["tokens"], keepdims=1),
        helper.make_node("Max", ["tokens", "one"], ["tokens_at_least_one"]),
        helper.make_node("Div", ["summed", "tokens_at_least_one"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "classifier.weight"], ["scores"]),
        helper.make_node("Add", ["scores", "classifier.bias"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "predictd-demo-mean-pooling-classifier",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        [helper.make_tensor_value_info("logits", f32, ["batch", labels])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by onnxruntime releases back to 1.10
    model.producer_name = "predictd demo"
    return model


def _linear(classifier: Any, labels: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted logistic regression as the graph's [dims, labels] weights and bias."""
    coef, intercept = classifier.coef_, classifier.intercept_
    if labels == 2:  # one score for the second class: the softmax of (-z/2, z/2) is the same
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef.T.astype(np.float32), intercept.astype(np.float32)


def write_export(
    out: Path, tokenizer: Any, model: Any, labels: Sequence[str], max_length: int = MAX_LENGTH
) -> Path:
    """The files of an ``optimum-cli export onnx`` directory, for ``model`` and ``tokenizer``."""
    import onnx

    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    tokenizer.save(str(out / "tokenizer.json"))
    id2label = {str(i): label for i, label in enumerate(labels)}
    config = {
        "architectures": ["PredictdDemoMeanPoolingClassifier"],
        "model_type": "predictd-demo",
        "id2label": id2label,
        "label2id": {label: i for i, label in enumerate(labels)},
        "max_position_embeddings": max_length,
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "problem_type": "single_label_classification",
    }
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
               "sep_token": "[SEP]", "mask_token": "[MASK]"}  # fmt: skip
    tokenizer_config = {**special, "model_max_length": max_length, "do_lower_case": True,
                        "tokenizer_class": "BertTokenizer"}  # fmt: skip
    for name, content in (
        ("config.json", config),
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", special),
    ):
        (out / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return out


def train_transformer(out_dir: Path, seed: int = 0) -> DemoModel:
    """The demo sentences' classifier as a transformer export directory (``DemoModel.path``)."""
    try:
        import onnx  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise PredictdError(
            f"the transformer demo needs tokenizers and onnx ({exc.name} is missing): "
            "pip install 'predictd[transformers]'"
        ) from None
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    texts, labels = load_sentiment_data()
    names = sorted(set(labels))
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    tokenizer = train_tokenizer(texts)

    def fit(xs: Sequence[str], ys: Sequence[str]) -> tuple[np.ndarray, Any]:
        table = embeddings_for(tokenizer, xs, ys, names, np.random.default_rng(seed))
        classifier = LogisticRegression(max_iter=2000, C=1.0)
        return table, classifier.fit(pooled(tokenizer, table, xs), list(ys))

    embeddings, held_out = fit(x_train, y_train)
    features = pooled(tokenizer, embeddings, x_test)
    metrics, calibration = held_out_scores(
        y_test, held_out.predict(features), held_out.predict_proba(features).max(axis=1)
    )
    embeddings, final = fit(texts, labels)  # ship the model fitted on everything
    assert list(final.classes_) == names  # sklearn orders classes as sorted() does
    weights, bias = _linear(final, len(names))
    path = write_export(out_dir / NAME, tokenizer, build_graph(embeddings, weights, bias), names)
    header = ("text", "label")
    return DemoModel(
        NAME,
        path,
        metrics,
        len(texts),
        None,
        "Demo 3-class sentiment classifier in the layout of a Hugging Face ONNX export "
        "(WordPiece tokenizer, mean-pooled embeddings, linear head)",
        calibration,
        tuple((ItemInput(text=t), y) for t, y in zip(x_test, y_test, strict=True)),
        None,  # transformers are not retrained by predictd
        write_csv(out_dir / "sentiment-validation.csv", header, zip(x_test, y_test, strict=True)),
    )
