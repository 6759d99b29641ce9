"""A transformer export becomes one bundle: exactly the allow-listed files, each hashed in a
manifest, in a tar written the same way every time. Reading a bundle back trusts nothing: an
extra member, a link, a second copy, a file that does not match the manifest, or a
configuration predictd cannot serve is refused before any parser sees it."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from predictd.demo.train import DemoModel
from predictd.errors import ArtifactError
from predictd.inference import transformer_bundle as bundle
from predictd.inference import transformer_runtime
from predictd.inference.formats import open_artifact
from predictd.registry.archives import as_artifact
from predictd.registry.service import model_name_of
from predictd.settings import InferenceSettings


def copy_export(export: DemoModel, dst: Path) -> Path:
    return Path(shutil.copytree(export.path, dst))


def rewrite(path: Path, **members: bytes | None) -> Path:
    """The bundle at ``path`` with members replaced (None: removed) or added, manifest kept."""
    with tarfile.open(path) as tar:
        current = {i.name: tar.extractfile(i).read() for i in tar}  # type: ignore[union-attr]
    for name, data in members.items():
        if data is None:
            current.pop(name, None)
        else:
            current[name] = data
    out = path.with_name("edited" + bundle.SUFFIX)
    with tarfile.open(out, "w") as tar:
        for name, data in current.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def packed(transformer_export: DemoModel, tmp_path: Path) -> Path:
    path, _ = bundle.pack(transformer_export.path, tmp_path / "out")
    return path


def test_an_export_packs_the_same_way_every_time(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    src = copy_export(transformer_export, tmp_path / "export")
    (src / "README.md").write_text("model card")
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04 not read")
    first, left_out = bundle.pack(src, tmp_path / "a")
    second, _ = bundle.pack(src, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert left_out == ["README.md", "pytorch_model.bin"]
    with tarfile.open(first) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(bundle.MANIFEST).read())  # type: ignore[union-attr]
    assert names == sorted([*bundle.FILES, bundle.MANIFEST])
    assert set(manifest["files"]) == set(bundle.FILES)
    read = bundle.read(first)
    assert read.labels == ("negative", "neutral", "positive")
    assert read.max_length == 128
    assert read.pad_token == "[PAD]"


@pytest.mark.parametrize("missing", ["model.onnx", "tokenizer.json", "config.json"])
def test_an_export_without_a_required_file_is_refused(
    transformer_export: DemoModel, tmp_path: Path, missing: str
) -> None:
    src = copy_export(transformer_export, tmp_path / "export")
    (src / missing).unlink()
    with pytest.raises(ArtifactError, match=f"{missing} missing"):
        bundle.pack(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_links_and_external_weights_are_refused(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    src = copy_export(transformer_export, tmp_path / "export")
    (src / "tokenizer.json").unlink()
    (src / "tokenizer.json").symlink_to("/etc/passwd")
    with pytest.raises(ArtifactError, match=r"tokenizer\.json must be a regular file"):
        bundle.pack(src, tmp_path / "out")
    src = copy_export(transformer_export, tmp_path / "export2")
    (src / "model.onnx_data").write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match=r"keeps weights outside model\.onnx"):
        bundle.pack(src, tmp_path / "out")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id2label": None}, "needs id2label"),
        ({"id2label": {"0": "a", "2": "b"}}, r"ids must be 0\.\.1"),
        ({"id2label": {"0": "a", "x": "b"}}, "is not an integer"),
        ({"id2label": {"0": "a", "1": "b", "00": "c"}}, "is not an integer id"),
        ({"id2label": {"0": "a", "1": "a"}}, "names a label twice"),
        ({"problem_type": "multi_label_classification"}, "single-label sequence classifiers"),
    ],
)
def test_a_configuration_predictd_cannot_serve_is_refused(
    transformer_export: DemoModel, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    src = copy_export(transformer_export, tmp_path / "export")
    config = json.loads((src / "config.json").read_text())
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=message):
        bundle.pack(src, tmp_path / "out")


def test_a_model_with_no_length_limit_is_refused(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    src = copy_export(transformer_export, tmp_path / "export")
    for name, key in (("tokenizer_config.json", "model_max_length"),
                      ("config.json", "max_position_embeddings")):  # fmt: skip
        data = json.loads((src / name).read_text())
        data[key] = int(1e30)  # what transformers writes when it does not know
        (src / name).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="no maximum input length"):
        bundle.pack(src, tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil.py", "evil.py", "/etc/cron.d/x", "model.onnx/x"])
def test_a_bundle_with_another_member_is_refused(packed: Path, name: str) -> None:
    with pytest.raises(ArtifactError, match="not a bundle file"):
        bundle.read(rewrite(packed, **{name: b"import os"}))


def test_a_bundle_whose_files_do_not_match_the_manifest_is_refused(packed: Path) -> None:
    with pytest.raises(ArtifactError, match=r"config\.json does not match its sha256"):
        bundle.read(rewrite(packed, **{"config.json": b'{"id2label": {"0": "a", "1": "b"}}'}))
    with pytest.raises(ArtifactError, match="the files do not match"):
        bundle.read(rewrite(packed, **{"special_tokens_map.json": None}))
    with pytest.raises(ArtifactError, match="not a bundle manifest"):
        bundle.read(rewrite(packed, **{bundle.MANIFEST: b'{"format": 99}'}))


def test_links_and_duplicates_inside_a_bundle_are_refused(packed: Path, tmp_path: Path) -> None:
    linked = tmp_path / ("linked" + bundle.SUFFIX)
    with tarfile.open(linked, "w") as tar:
        info = tarfile.TarInfo("tokenizer.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ArtifactError, match=r"tokenizer\.json is not a regular file"):
        bundle.read(linked)
    twice = tmp_path / ("twice" + bundle.SUFFIX)
    shutil.copyfile(packed, twice)
    with tarfile.open(twice, "a") as tar:
        info = tarfile.TarInfo("config.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(ArtifactError, match=r"holds config\.json twice"):
        bundle.read(twice)
    (tmp_path / ("junk" + bundle.SUFFIX)).write_bytes(b"not a tar at all" * 64)
    with pytest.raises(ArtifactError, match="not a transformer bundle"):
        bundle.read(tmp_path / ("junk" + bundle.SUFFIX))


def test_a_graph_that_is_not_a_sequence_classifier_is_refused(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    import onnx

    src = copy_export(transformer_export, tmp_path / "export")
    config = json.loads((src / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b"}  # the graph answers three logits
    (src / "config.json").write_text(json.dumps(config))
    path, _ = bundle.pack(src, tmp_path / "out")
    with pytest.raises(ArtifactError, match=r"must output logits \[batch, 2\]"):
        open_artifact(path, InferenceSettings())
    src = copy_export(transformer_export, tmp_path / "export2")
    model = onnx.load(str(src / "model.onnx"))
    model.graph.input[0].name = "ids"  # not what a tokenizer feeds
    for node in model.graph.node:
        node.input[:] = ["ids" if i == "input_ids" else i for i in node.input]
    onnx.save(model, str(src / "model.onnx"))
    path, _ = bundle.pack(src, tmp_path / "out2")
    with pytest.raises(ArtifactError, match="takes input_ids and attention_mask"):
        open_artifact(path, InferenceSettings())


def test_an_archive_of_an_export_is_packed_like_the_directory(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    archive = Path(shutil.make_archive(
        str(tmp_path / "export"), "gztar", transformer_export.path.parent,
        transformer_export.path.name,
    ))  # fmt: skip
    from_archive, _ = as_artifact(archive, tmp_path / "work", 2**30)
    from_directory, _ = bundle.pack(transformer_export.path, tmp_path / "direct")
    assert from_archive.read_bytes() == from_directory.read_bytes()
    flavor, runtime = open_artifact(from_archive, InferenceSettings())
    assert flavor == "transformer"
    assert runtime.details().max_input_tokens == 128
    assert runtime.details().execution_providers == ("CPUExecutionProvider",)


def pack_edited(
    export: DemoModel, tmp_path: Path, file: str, edit: Any, name: str = "export"
) -> Path:
    """The export with one JSON file changed by ``edit`` (dict -> None), packed."""
    src = copy_export(export, tmp_path / name)
    data = json.loads((src / file).read_text())
    edit(data)
    (src / file).write_text(json.dumps(data))
    return bundle.pack(src, tmp_path / f"{name}-out")[0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t["normalizer"].update(type="CustomNormalizer"),
         "normalizer 'CustomNormalizer' is not supported"),
        (lambda t: t.update(pre_tokenizer={"type": "Split", "behavior": "Isolated",
                                           "invert": False, "pattern": {"Regex": "(a|aa)+$"}}),
         "regular expression predictd does not run"),
        (lambda t: t["model"].update(max_input_chars_per_word=10**9),
         "max_input_chars_per_word must be 1-200"),
    ],
)  # fmt: skip
def test_a_tokenizer_predictd_does_not_run_is_refused_before_it_is_read(
    transformer_export: DemoModel, tmp_path: Path, edit: Any, message: str
) -> None:
    path = pack_edited(transformer_export, tmp_path, "tokenizer.json", edit)
    with pytest.raises(ArtifactError, match=message):
        open_artifact(path, InferenceSettings())


def test_a_tokenizer_panic_is_an_error_of_that_input() -> None:
    class PanicException(BaseException):  # as pyo3 raises a Rust panic: not an Exception
        pass

    failed = pytest.raises(RuntimeError, match="the tokenizer failed on this input")
    with failed, transformer_runtime._panics_as_errors():
        raise PanicException("regex backtrack limit")
    with pytest.raises(KeyboardInterrupt), transformer_runtime._panics_as_errors():
        raise KeyboardInterrupt


def test_a_tokenizer_larger_than_the_embedding_is_refused_at_registration(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    path = pack_edited(transformer_export, tmp_path, "config.json",
                       lambda c: c.update(vocab_size=100))  # fmt: skip
    with pytest.raises(ArtifactError, match=r"the tokenizer has \d+ tokens"):
        open_artifact(path, InferenceSettings())


def test_a_model_that_fails_on_the_longest_input_is_refused_at_registration(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    """Tokens added to the tokenizer have ids past the embedding: the probe at load (the
    longest input, of the last id) finds it before a client does."""
    from tokenizers import Tokenizer

    src = copy_export(transformer_export, tmp_path / "export")
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    tokenizer.add_tokens(["<extra-1>", "<extra-2>"])
    tokenizer.save(str(src / "tokenizer.json"))
    config = json.loads((src / "config.json").read_text())
    del config["vocab_size"]
    (src / "config.json").write_text(json.dumps(config))
    path, _ = bundle.pack(src, tmp_path / "out")
    with pytest.raises(ArtifactError, match=r"model\.onnx fails on 128 tokens"):
        open_artifact(path, InferenceSettings())


def test_non_finite_logits_are_refused(transformer_export: DemoModel, tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    src = copy_export(transformer_export, tmp_path / "export")
    model = onnx.load(str(src / "model.onnx"))
    for init in model.graph.initializer:
        if init.name == "classifier.bias":
            nan = np.full_like(numpy_helper.to_array(init), np.nan)
            init.CopyFrom(numpy_helper.from_array(nan, init.name))
    onnx.save(model, str(src / "model.onnx"))
    path, _ = bundle.pack(src, tmp_path / "out")
    with pytest.raises(ArtifactError, match="non-finite logits"):
        open_artifact(path, InferenceSettings())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id2label": {"0": "a", "0": "b", "1": "c"}}', "appears twice"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON predictd reads"),
    ],
)
def test_config_json_that_parses_ambiguously_or_deeply_is_refused(
    transformer_export: DemoModel, tmp_path: Path, content: bytes, message: str
) -> None:
    src = copy_export(transformer_export, tmp_path / "export")
    (src / "config.json").write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        bundle.pack(src, tmp_path / "out")


def test_the_length_is_the_smallest_the_model_and_tokenizer_allow() -> None:
    where = "m"
    assert bundle.max_length_of({"max_position_embeddings": 512}, {"model_max_length": 10**400},
                                where) == 512  # fmt: skip
    assert bundle.max_length_of({"max_position_embeddings": 256}, {"model_max_length": 512},
                                where) == 256  # fmt: skip
    roberta = {"model_type": "roberta", "max_position_embeddings": 514}
    assert bundle.max_length_of(roberta, {}, where) == 512
    assert bundle.max_length_of({}, {"model_max_length": 128.0}, where) == 128
    with pytest.raises(ArtifactError, match="no maximum input length"):
        bundle.max_length_of({"max_position_embeddings": float("inf")}, {}, where)


def test_serve_model_names_a_directory_or_archive_by_its_stem(tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    (tmp_path / "model.skops").write_bytes(b"")
    assert model_name_of(tmp_path / "export") == "export"
    assert model_name_of(tmp_path / "export.tar.gz") == "export"
    assert model_name_of(tmp_path / "Export.ZIP") == "Export"
    assert model_name_of(tmp_path / "model.skops") == "model"


def test_a_unigram_tokenizer_counts_pieces_it_lacks_as_out_of_vocabulary(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    """XLM-R and ALBERT tokenizers (Unigram) name no unk_token on the model: a piece the
    vocabulary lacks is still out of vocabulary for the drift tests, and the unknown token
    (from the tokenizer's configuration) is not counted as known."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from predictd.demo.train import load_sentiment_data

    texts, _ = load_sentiment_data()
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.train_from_iterator(texts, trainers.UnigramTrainer(
        vocab_size=500, special_tokens=["[PAD]", "[UNK]"], unk_token="[UNK]"
    ))  # fmt: skip
    src = copy_export(transformer_export, tmp_path / "export")
    tokenizer.save(str(src / "tokenizer.json"))
    path, _ = bundle.pack(src, tmp_path / "out")
    _, runtime = open_artifact(path, InferenceSettings())
    vocabulary = runtime.vocabulary()
    assert vocabulary is not None
    pieces = vocabulary.tokens("great 日本")
    assert "日本" in pieces
    assert "日本" not in vocabulary.known
    assert "[UNK]" not in vocabulary.known
    assert isinstance(runtime, transformer_runtime.TransformerRuntime)
    assert runtime.bundle.model == b""  # the graph's bytes let go once the session has them


def test_an_export_that_cannot_be_packed_says_which_file(
    transformer_export: DemoModel, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ArtifactError, match=r"could not pack .*a-file"):
        bundle.pack(transformer_export.path, tmp_path / "a-file" / "out")


def test_the_demo_without_its_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from predictd.demo.transformer import train_transformer
    from predictd.errors import PredictdError

    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if it were not installed
    with pytest.raises(PredictdError, match=r"pip install 'predictd\[transformers\]'"):
        train_transformer(tmp_path)
