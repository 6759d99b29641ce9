"""A Hugging Face sequence classifier exported to ONNX, as one content-addressed artifact.

``optimum-cli export onnx`` writes a directory: ``model.onnx``, ``tokenizer.json`` (with
``tokenizer_config.json`` and ``special_tokens_map.json``), ``config.json`` with ``id2label``.
predictd keeps exactly those files (an allow-list of names; anything else in the directory is
left out, and said so) in one uncompressed tar, written the same way every time (sorted
members, no times or owners), with a manifest of each file's sha256 and size. The registry
stores the tar like any artifact, so the sha256 of the whole is checked before every load;
reading it back checks every member against the allow-list and the manifest before any of it
reaches a parser, and nothing is ever extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predictd.errors import ArtifactError, artifact_file_errors
from predictd.strict_json import unique_keys

SUFFIX = ".transformer"  # the stored tar's suffix: what formats.flavor_of maps to the runtime
MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS = "special_tokens_map.json"
MANIFEST = "predictd-bundle.json"
REQUIRED = (MODEL, TOKENIZER, CONFIG)
OPTIONAL = (TOKENIZER_CONFIG, SPECIAL_TOKENS)
FILES = REQUIRED + OPTIONAL
# Weights beside the graph (models over 2 GB) would be read from wherever the graph says:
# refused, since the artifact must be the whole model.
EXTERNAL_DATA = ("model.onnx_data", "model.onnx.data", "model_data")
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_MODEL_BYTES = 2 * 1024**3  # protobuf's own ceiling for one ONNX file
MAX_BUNDLE_BYTES = MAX_MODEL_BYTES + 5 * MAX_JSON_BYTES
MAX_LABELS = 10_000
HUGE = 1_000_000  # transformers writes int(1e30) as model_max_length when it does not know
FORMAT = 1
_ID = re.compile(r"0|[1-9][0-9]{0,4}")
# These models number positions from pad_token_id + 1 (2): two fewer tokens than
# max_position_embeddings fit.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2,
                    "bart": 2, "mbart": 2, "xmod": 2}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bundle:
    """What a runtime needs, read and checked; ``files``: each member's sha256."""

    model: bytes
    tokenizer: str
    labels: tuple[str, ...]
    max_length: int
    pad_token: str | None
    unk_token: str | None = None
    vocab_size: int | None = None  # config.json's: how many rows the embedding has
    files: dict[str, str] = field(default_factory=dict)


def _limit(name: str) -> int:
    return MAX_MODEL_BYTES if name == MODEL else MAX_JSON_BYTES


def pack(
    src: Path, out_dir: Path, max_model_bytes: int = MAX_MODEL_BYTES
) -> tuple[Path, list[str]]:
    """The export directory ``src`` as one tar in ``out_dir``; (its path, the names of the
    files left out). Refused, with nothing written, when a required file is missing, a file
    is a link or too large, the weights are external, or the bundle would not load."""
    with artifact_file_errors(f"could not pack {src}"):
        return _pack(src, out_dir, max_model_bytes)


def _pack(src: Path, out_dir: Path, max_model_bytes: int) -> tuple[Path, list[str]]:
    present = {p.name: p for p in src.iterdir()} if src.is_dir() else {}
    missing = [name for name in REQUIRED if name not in present]
    if missing:
        raise ArtifactError(
            f"{src} is not a transformer export: {', '.join(missing)} missing (expected the "
            "layout `optimum-cli export onnx` writes: model.onnx, tokenizer.json, config.json)"
        )
    external = [name for name in EXTERNAL_DATA if name in present]
    if external:
        raise ArtifactError(
            f"{src} keeps weights outside model.onnx ({external[0]}); predictd serves a "
            "self-contained model.onnx (under 2 GB)"
        )
    contents: dict[str, bytes] = {}
    for name in FILES:
        path = present.get(name)
        if path is None:
            continue
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(f"{src}: {name} must be a regular file, not a link; refused")
        limit = min(_limit(name), max_model_bytes) if name == MODEL else _limit(name)
        size = path.stat().st_size
        if size > limit:
            raise ArtifactError(f"{src}: {name} is {size} bytes (at most {limit})")
        contents[name] = path.read_bytes()
    left_out = sorted(n for n in present if n not in FILES)
    manifest = {
        "format": FORMAT,
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in sorted(contents.items())
        },
    }
    members = {**contents, MANIFEST: json.dumps(manifest, indent=1, sort_keys=True).encode()}
    parse(members, str(src))  # a bundle that would not load is never stored
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{src.resolve().name or 'model'}{SUFFIX}"
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(members[name]))
    return out, left_out


def read(path: Path) -> Bundle:
    """The bundle stored at ``path`` (already sha256-verified by the artifact store)."""
    members: dict[str, bytes] = {}
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:  # tar headers are read whole: none may exceed this either
            raise ArtifactError(f"{path.name} is {size} bytes (at most {MAX_BUNDLE_BYTES})")
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                name = info.name
                if name not in FILES and name != MANIFEST:
                    raise ArtifactError(f"{path.name} holds {name[:100]!r}, not a bundle file")
                if not info.isfile():
                    raise ArtifactError(f"{path.name}: {name} is not a regular file; refused")
                if name in members:
                    raise ArtifactError(f"{path.name} holds {name} twice; refused")
                if info.size > _limit(name):
                    raise ArtifactError(f"{path.name}: {name} is {info.size} bytes, too large")
                src = tar.extractfile(info)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise ArtifactError(f"{path.name}: cannot read {name}")
                with src:
                    members[name] = src.read(info.size + 1)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise ArtifactError(f"{path.name} is not a transformer bundle: {exc!r}") from exc
    return parse(members, path.name)


def parse(members: Mapping[str, bytes], where: str) -> Bundle:
    """Check the manifest against every member, then read the configuration."""
    manifest = _json(members, MANIFEST, where)
    listed = manifest.get("files") if manifest.get("format") == FORMAT else None
    if not isinstance(listed, dict):
        raise ArtifactError(f"{where}: {MANIFEST} is not a bundle manifest (format {FORMAT})")
    if set(listed) != set(members) - {MANIFEST}:
        raise ArtifactError(f"{where}: the files do not match {MANIFEST}")
    hashes: dict[str, str] = {}
    for name, entry in listed.items():
        digest = hashlib.sha256(members[name]).hexdigest()
        if not isinstance(entry, dict) or entry.get("sha256") != digest:
            raise ArtifactError(f"{where}: {name} does not match its sha256 in {MANIFEST}")
        hashes[name] = digest
    for name in REQUIRED:
        if name not in members:
            raise ArtifactError(f"{where}: {name} missing")
    config = _json(members, CONFIG, where)
    tokenizer_config = (
        _json(members, TOKENIZER_CONFIG, where) if TOKENIZER_CONFIG in members else {}
    )
    special = _json(members, SPECIAL_TOKENS, where) if SPECIAL_TOKENS in members else {}
    try:
        tokenizer = members[TOKENIZER].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{where}: {TOKENIZER} is not UTF-8 text") from exc
    return Bundle(
        model=members[MODEL],
        tokenizer=tokenizer,
        labels=labels_of(config, where),
        max_length=max_length_of(config, tokenizer_config, where),
        pad_token=_token(tokenizer_config.get("pad_token")) or _token(special.get("pad_token")),
        unk_token=_token(tokenizer_config.get("unk_token")) or _token(special.get("unk_token")),
        vocab_size=_count(config.get("vocab_size")),
        files=hashes,
    )


def _json(members: Mapping[str, bytes], name: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(members[name], object_pairs_hook=unique_keys)
    except KeyError:
        raise ArtifactError(f"{where}: {name} missing") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past Python's limit
        raise ArtifactError(f"{where}: {name} is not JSON predictd reads: {exc}") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: {name} must be a JSON object")
    return value


def _token(value: object) -> str | None:
    """A special token as written by transformers: a string, or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def labels_of(config: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """``id2label`` in id order; ids must be 0..n-1, labels distinct strings."""
    problem = config.get("problem_type")
    if problem not in (None, "single_label_classification"):
        raise ArtifactError(
            f"{where}: problem_type {problem!r}; predictd serves single-label sequence "
            "classifiers (softmax over the logits)"
        )
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not 2 <= len(raw) <= MAX_LABELS:
        raise ArtifactError(f"{where}: config.json needs id2label, with 2 to {MAX_LABELS} labels")
    by_id: dict[int, str] = {}
    for key, label in raw.items():
        if not isinstance(key, str) or not _ID.fullmatch(key):  # "00" or "+1" would rename
            raise ArtifactError(f"{where}: id2label key {key[:20]!r} is not an integer id")
        index = int(key)
        if not isinstance(label, str) or not label or len(label) > 200:
            raise ArtifactError(f"{where}: id2label[{key}] must be a label of 1-200 characters")
        by_id[index] = label
    if sorted(by_id) != list(range(len(by_id))):
        raise ArtifactError(f"{where}: id2label ids must be 0..{len(by_id) - 1}")
    labels = tuple(by_id[i] for i in range(len(by_id)))
    if len(set(labels)) != len(labels):
        raise ArtifactError(f"{where}: id2label names a label twice")
    return labels


def _count(value: object) -> int | None:
    """A positive whole number below HUGE from JSON (an int, or a float like 512.0), else
    None: transformers writes int(1e30) where it knows no limit."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 1 <= value < HUGE else None  # compared as given: no overflow


def max_length_of(
    config: Mapping[str, Any], tokenizer_config: Mapping[str, Any], where: str
) -> int:
    """Tokens the model reads at most: the smaller of the tokenizer's ``model_max_length``
    and the positions the model has (``max_position_embeddings``, less the offset of models
    that number positions after the padding id)."""
    limits = []
    told = _count(tokenizer_config.get("model_max_length"))
    if told is not None:
        limits.append(told)
    positions = _count(config.get("max_position_embeddings"))
    if positions is not None:
        model_type = config.get("model_type")
        offset = _POSITION_OFFSET.get(model_type, 0) if isinstance(model_type, str) else 0
        limits.append(positions - offset)
    if not limits or min(limits) < 2:
        raise ArtifactError(
            f"{where}: no maximum input length (tokenizer_config.json model_max_length or "
            "config.json max_position_embeddings)"
        )
    return min(limits)
