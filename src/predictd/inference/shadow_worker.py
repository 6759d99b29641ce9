"""The shadow candidate's side of the work: on the shadow thread, or with
``PREDICTD_SHADOW_PROCESS=true`` in a worker process of its own.

A candidate predicting on a thread holds the serving process's GIL while it computes, and
requests that arrive meanwhile wait for it; for a candidate much heavier than production that
shows in production's tail. In a separate, lower-priority process the candidate competes only
for CPU, which the kernel hands to production first. The process loads each name's candidate
once, after checking its sha256 again (the file may have changed since the server verified it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from predictd.errors import ArtifactTampered, PredictdError
from predictd.inference.runtime import ModelInput, ModelMeta, ModelRuntime, Prediction
from predictd.settings import InferenceSettings

# What the worker sends back: indices of the items that fit the candidate's schema, their
# validated inputs, and the candidate's predictions for them.
Outcome = tuple[list[int], list[ModelInput], list[Prediction]]
Item = tuple[str | None, Mapping[str, object] | None]

NICENESS = 10
PARENT_CHECK_S = 1.0

_settings: InferenceSettings | None = None
_runtimes: dict[str, ModelRuntime] = {}


def init(settings: InferenceSettings) -> None:
    """Process initialiser: lower priority; Ctrl-C is the server's to handle (it shuts this
    process down), and a server that dies without doing so takes this process with it."""
    global _settings
    _settings = settings
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True
    ).start()


def _exit_with_parent(parent: int) -> None:
    # The pool's queues stay open in this process, so it would never notice on its own.
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def run(meta: ModelMeta, path: str, items: Sequence[Item], max_chars: int) -> Outcome:
    """Entry point in the worker process: each model name's candidate is loaded on first use
    and kept until that name's candidate changes."""
    runtime = _runtimes.get(meta.name)
    if runtime is None or (runtime.meta.version, runtime.meta.sha256) != (
        meta.version,
        meta.sha256,
    ):
        _runtimes.pop(meta.name, None)  # let the previous candidate go before the next loads
        runtime = _runtimes[meta.name] = _open(meta, Path(path))
    return predict_with(runtime, items, max_chars)


def _open(meta: ModelMeta, path: Path) -> ModelRuntime:
    from predictd.inference.formats import runtime_for
    from predictd.vocabulary import sha256_of

    if _settings is None:
        raise RuntimeError("shadow worker used before init()")
    actual = sha256_of(path)
    if actual != meta.sha256:
        raise ArtifactTampered(
            f"{meta.name} v{meta.version}: {path} has sha256 {actual[:12]}…, "
            f"registry expects {meta.sha256[:12]}…"
        )
    runtime = runtime_for(meta.flavor, path, meta, _settings)
    runtime.prepare()
    return runtime


def predict_with(runtime: ModelRuntime, items: Sequence[Item], max_chars: int) -> Outcome:
    """Validate each item against the candidate's schema, then one vectorised call."""
    kept: list[int] = []
    values: list[ModelInput] = []
    for index, (text, features) in enumerate(items):
        try:
            values.append(runtime.validate(text, features, max_chars=max_chars))
        except PredictdError:  # the candidate's schema differs: nothing to compare
            continue
        kept.append(index)
    return kept, values, runtime.predict(values) if values else []
