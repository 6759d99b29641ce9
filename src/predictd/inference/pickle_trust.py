"""What a pickle may rebuild, decided by reading its opcodes before one of them runs.

Unpickling imports and calls whatever the file names (``os.system`` as a ``__reduce__``
result is enough), so a pickle is never handed to ``pickle.load`` until every global it
refers to is known and trusted. :func:`pickle_globals` walks the opcodes with
``pickletools.genops`` (which decodes, never executes) and collects every ``GLOBAL``,
``INST`` and ``STACK_GLOBAL`` reference. ``STACK_GLOBAL`` takes its module and name from the
stack, so they are resolved from the string pushes (or memo fetches of strings) right before
it; a name the pickle would compute any other way is refused rather than guessed at, and so
are the opcodes that reach objects by other routes (the copyreg extension registry,
persistent ids, out-of-band buffers).

Trust is exact, as for skops files (inference/skops_trust.py): a name must be on the skops
allow-list (``trusted_types.CLASSES`` and ``FUNCTIONS``), on :data:`PICKLE_HELPERS` (the few
reconstruction functions NumPy's own pickles call), or in PREDICTD_TRUSTED_TYPES. Only then
is the pickle loaded, by an unpickler whose ``find_class`` returns exactly those names and
refuses anything else, so the walk and the load agree even if one of them were wrong.
"""

from __future__ import annotations

import importlib
import io
import pickle
import pickletools
from collections.abc import Collection
from typing import Any

from predictd.errors import ArtifactError, UntrustedArtifact
from predictd.inference.trusted_types import CLASSES, FUNCTIONS

# Reviewed: each rebuilds NumPy data from arguments and imports or calls nothing named by
# the file (a class it is given is itself a global, checked like any other).
PICKLE_HELPERS: frozenset[str] = frozenset(
    {
        "numpy._core.multiarray._reconstruct",  # ndarray.__new__(subtype, shape, dtype)
        "numpy._core.multiarray.scalar",  # a NumPy scalar from its dtype and bytes
        "numpy.core.multiarray._reconstruct",  # the same under NumPy 1's module name
        "numpy.core.multiarray.scalar",
        "numpy._core.numeric._frombuffer",  # protocol 5: frombuffer(bytes, dtype).reshape
        "numpy.core.numeric._frombuffer",
        "numpy.random._pickle.__randomstate_ctor",  # RandomState(bit generator by name)
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
    }
)

_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
# Opcodes that reach an object other than through find_class on a name in the file.
_REFUSED = {
    "EXT1": "the copyreg extension registry",
    "EXT2": "the copyreg extension registry",
    "EXT4": "the copyreg extension registry",
    "PERSID": "a persistent id",
    "BINPERSID": "a persistent id",
    "NEXT_BUFFER": "an out-of-band buffer",
    "READONLY_BUFFER": "an out-of-band buffer",
}
_UNKNOWN = object()  # a stack or memo value this walk does not know


def pickle_globals(data: bytes, artifact: str) -> frozenset[str]:
    """Every ``module.name`` the pickle in ``data`` would import, read without executing
    it; ArtifactError when it is not a pickle or computes a name this walk cannot see."""
    found: set[str] = set()
    memo: dict[int, object] = {}
    recent: list[object] = []  # values pushed since the last opcode that did anything else
    try:
        for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
            op = opcode.name
            if op in _REFUSED:
                raise ArtifactError(
                    f"{artifact} reaches an object through {_REFUSED[op]} ({op} at byte "
                    f"{pos}); predictd refuses such pickles"
                )
            if op in _STRINGS:
                recent.append(arg)
            elif op in _GETS:
                recent.append(memo.get(arg if isinstance(arg, int) else -1, _UNKNOWN))
            elif op == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else _UNKNOWN
            elif op in _PUTS:
                memo[arg if isinstance(arg, int) else -1] = recent[-1] if recent else _UNKNOWN
            elif op == "FRAME":
                pass  # framing only: the stack is untouched
            elif op in ("GLOBAL", "INST"):
                module, _, name = str(arg).partition(" ")
                found.add(_qualified(module, name, artifact))
                recent.clear()
            elif op == "STACK_GLOBAL":
                if len(recent) < 2 or not all(isinstance(v, str) for v in recent[-2:]):
                    raise ArtifactError(
                        f"{artifact} computes the name of a global at load time "
                        f"(STACK_GLOBAL at byte {pos}); predictd refuses such pickles"
                    )
                found.add(_qualified(str(recent[-2]), str(recent[-1]), artifact))
                recent.clear()
            else:
                recent.clear()
    except ArtifactError:
        raise
    except Exception as exc:  # genops raises ValueError and friends on damaged data
        raise ArtifactError(f"{artifact} is not a readable pickle: {exc!r}") from exc
    return frozenset(found)


def _qualified(module: str, name: str, artifact: str) -> str:
    # A dotted name walks attributes at load time; trusted names never need one.
    if not module or not name or "." in name:
        raise UntrustedArtifact(artifact, [f"{module}.{name}" if module else name])
    return f"{module}.{name}"


def check_pickle(data: bytes, artifact: str, extra_trusted: Collection[str] = ()) -> frozenset[str]:
    """Refuse the pickle unless every global it names is trusted; returns those names."""
    names = pickle_globals(data, artifact)
    refused = sorted(names - trusted_names(extra_trusted))
    if refused:
        raise UntrustedArtifact(artifact, refused)
    return names


def trusted_names(extra_trusted: Collection[str] = ()) -> frozenset[str]:
    return CLASSES | FUNCTIONS | PICKLE_HELPERS | frozenset(extra_trusted)


class _RestrictedUnpickler(pickle.Unpickler):
    """Returns exactly the allowed names; anything else raises before it is imported."""

    def __init__(self, file: io.BytesIO, allowed: frozenset[str], artifact: str) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._artifact = artifact

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if "." in name or full not in self._allowed:
            raise UntrustedArtifact(self._artifact, [full])
        return getattr(importlib.import_module(module), name)

    def persistent_load(self, pid: Any) -> Any:
        raise UntrustedArtifact(self._artifact, ["a persistent id"])


def load_pickle(data: bytes, artifact: str, extra_trusted: Collection[str] = ()) -> Any:
    """Unpickle ``data`` after :func:`check_pickle`, with find_class limited to the names
    it found (all trusted); raises UntrustedArtifact or ArtifactError."""
    names = check_pickle(data, artifact, extra_trusted)
    try:
        return _RestrictedUnpickler(io.BytesIO(data), names, artifact).load()
    except ArtifactError:
        raise
    except Exception as exc:  # a damaged or inconsistent pickle fails in many ways
        raise ArtifactError(f"could not unpickle {artifact}: {exc!r}") from exc


__all__ = ["PICKLE_HELPERS", "check_pickle", "load_pickle", "pickle_globals", "trusted_names"]
