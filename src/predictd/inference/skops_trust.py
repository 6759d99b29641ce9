"""What a skops artifact is allowed to rebuild, decided before anything in it is loaded.

A skops file is a zip whose ``schema.json`` names every object to rebuild by module and
name. Loading imports each name and calls it, so a file that names ``builtins.exec`` as a
vectorizer's analyzer runs every request's text as Python. Trust is therefore exact: every
name in the schema must be a class on the generated allow-list (``trusted_types.CLASSES``),
every callable a function on its short reviewed list (``trusted_types.FUNCTIONS``), or
either one listed by the operator in PREDICTD_TRUSTED_TYPES. Name prefixes are never
trusted: ``numpy.`` also holds functions that run shell commands.

The schema is read here with ``zipfile`` and ``json`` rather than through skops' own audit,
because skops trusts some names by default; this reading sees every name in the file. It is
exact for the one skops file protocol it was reviewed against: a file written in another
protocol, or holding a loader not on ``LOADERS``, is refused rather than guessed at (skops
keeps older loaders that read names from other fields).
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictd.errors import ArtifactError, UntrustedArtifact
from predictd.inference.trusted_types import CLASSES, FUNCTIONS

log = logging.getLogger("predictd.inference")

SCHEMA_FILE = "schema.json"
MAX_SCHEMA_BYTES = 64 * 1024 * 1024  # a fitted forest of a few thousand trees is ~10 MB
PROTOCOL = 2  # skops' file protocol whose loaders were reviewed (skops 0.16)
# Loaders whose name is a callable to be called later, not a class to rebuild.
CALLABLE_LOADERS = frozenset({"FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode"})
# Every loader of that protocol: each reads the names it imports from __module__/__class__.
_OTHER_LOADERS = """BytearrayNode BytesNode CachedNode ConstructorFromReduceNode DTypeNode
DefaultDictNode DictNode JsonNode ListNode LossNode MaskedArrayNode NdArrayNode ObjectNode
RandomGeneratorNode RandomStateNode SetNode SliceNode SparseMatrixNode TreeNode TupleNode
TypeNode"""
LOADERS = CALLABLE_LOADERS | frozenset(_OTHER_LOADERS.split())


@dataclass(frozen=True, slots=True)
class ArtifactTypes:
    """Every name a skops file would import: classes to rebuild and callables to keep."""

    classes: frozenset[str]
    callables: frozenset[str]

    @property
    def all(self) -> frozenset[str]:
        return self.classes | self.callables


def read_types(path: Path) -> ArtifactTypes:
    """The names ``path`` refers to; ArtifactError when it is not a skops file we can read."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(SCHEMA_FILE)
            if info.file_size > MAX_SCHEMA_BYTES:
                raise ArtifactError(
                    f"{path.name}: {SCHEMA_FILE} is {info.file_size} bytes "
                    f"(at most {MAX_SCHEMA_BYTES})"
                )
            schema = json.loads(archive.read(info))
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, RecursionError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path.name} is not a readable skops artifact: {exc!r}") from exc
    protocol = schema.get("protocol") if isinstance(schema, dict) else None
    if protocol != PROTOCOL:
        raise ArtifactError(
            f"{path.name} was written in skops file protocol {protocol!r}; predictd reads "
            f"protocol {PROTOCOL} (save it again with the skops predictd installs)"
        )
    classes: set[str] = set()
    callables: set[str] = set()
    for node in _nodes(schema):
        name = f"{node['__module__']}.{node['__class__']}"
        loader = node.get("__loader__")
        if loader not in LOADERS:
            raise UntrustedArtifact(path.name, [f"{name} (loader {loader!r})"])
        if loader == "MethodNode":
            # a bound method: the owner is rebuilt (and checked as its own node); the call
            # target is owner's type + attribute name, which must be a reviewed callable
            content = node.get("content")
            func = content.get("func") if isinstance(content, dict) else None
            callables.add(f"{name}.{func}")
        elif loader in CALLABLE_LOADERS:
            callables.add(name)
        else:
            classes.add(name)
    return ArtifactTypes(frozenset(classes), frozenset(callables))


def _nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every dict in the schema naming a module and a name, at any depth (iteratively: a
    hostile file may nest deeper than Python's recursion limit)."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module, name = item.get("__module__"), item.get("__class__")
            if isinstance(module, str) or isinstance(name, str):
                if not (isinstance(module, str) and isinstance(name, str)):
                    raise ArtifactError("a skops node names a module or a type but not both")
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_types(path: Path, extra_trusted: Collection[str] = ()) -> ArtifactTypes:
    """Refuse ``path`` unless every name in it is trusted; returns the names, to hand to
    skops as the exact trusted set. Names trusted only by the operator are logged."""
    found = read_types(path)
    refused = sorted(
        (found.classes - CLASSES - set(extra_trusted))
        | (found.callables - FUNCTIONS - set(extra_trusted))
    )
    if refused:
        raise UntrustedArtifact(path.name, refused)
    opted_in = sorted((found.classes - CLASSES) | (found.callables - FUNCTIONS))
    if opted_in:
        log.warning(
            "artifact loaded with types trusted only by PREDICTD_TRUSTED_TYPES",
            extra={"artifact": path.name, "types": opted_in},
        )
    return found


__all__ = ["ArtifactTypes", "check_types", "read_types"]
