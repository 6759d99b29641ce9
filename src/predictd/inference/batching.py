"""Adaptive micro-batching: concurrent single predictions for one model version share one
vectorised model call.

A model call on a batch costs little more than on one item (the demo model: ~530 µs for one,
~25 µs per item at 32), so under concurrency the batcher gathers what arrives while the model
is busy and sends it as one call, up to ``max_items`` and at most ``inference_threads`` calls
at once. When a worker is free it does not hold a lone request back: it dispatches on the next
turn of the event loop (so requests already parsed in this turn join), and waits up to
``wait_s`` for company only while traffic is concurrent (recent batches held more than one).
A batch that raises is retried item by item, so one bad input fails alone.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from predictd.inference.runtime import ModelInput, Prediction

Outcome = Prediction | BaseException
_CONCURRENT = 1.5  # an average batch above this means requests are arriving together
_SMOOTHING = 0.2


def _call_each(
    call: Callable[[Sequence[ModelInput]], list[Prediction]], values: list[ModelInput]
) -> list[Outcome]:
    """Runs in a worker thread: the whole batch at once, else item by item."""
    try:
        outputs: list[Outcome] = list(call(values))
    except Exception:
        if len(values) == 1:
            raise
        outcomes: list[Outcome] = []
        for value in values:
            try:
                outcomes.append(call([value])[0])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
    if len(outputs) != len(values):
        raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(values)} items")
    return outputs


class MicroBatcher:
    def __init__(
        self,
        call: Callable[[Sequence[ModelInput]], list[Prediction]],
        executor: Executor,
        *,
        wait_s: float,
        max_items: int,
        slots: int,
        observe: Callable[[int, float], None],
    ) -> None:
        self.call = call
        self.executor = executor
        self.wait_s = wait_s
        self.max_items = max_items
        self.observe = observe  # (items in the call, seconds the oldest item waited)
        self._free = slots
        self._pending: list[tuple[ModelInput, asyncio.Future[Prediction], float]] = []
        self._handle: asyncio.Handle | None = None
        self._average = 1.0

    async def predict(self, value: ModelInput) -> Prediction:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((value, future, time.perf_counter()))
        if len(self._pending) >= self.max_items and self._free:
            self._dispatch()
        elif self._handle is None and self._free:
            if self._average > _CONCURRENT and self.wait_s > 0:
                self._handle = loop.call_later(self.wait_s, self._dispatch)
            else:
                self._handle = loop.call_soon(self._dispatch)
        return await future

    def _dispatch(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        loop = asyncio.get_running_loop()
        while self._pending and self._free:
            batch = self._pending[: self.max_items]
            del self._pending[: self.max_items]
            batch = [entry for entry in batch if not entry[1].done()]  # timed out meanwhile
            if not batch:
                continue
            self._free -= 1
            self._average += _SMOOTHING * (len(batch) - self._average)
            self.observe(len(batch), time.perf_counter() - batch[0][2])
            values = [value for value, _, _ in batch]
            work = loop.run_in_executor(self.executor, _call_each, self.call, values)
            work.add_done_callback(functools.partial(self._finished, batch))

    def _finished(
        self,
        batch: list[tuple[ModelInput, asyncio.Future[Prediction], float]],
        done: asyncio.Future[list[Outcome]],
    ) -> None:
        self._free += 1
        error = done.exception() if not done.cancelled() else RuntimeError("model call cancelled")
        outcomes: list[Outcome] = [error] * len(batch) if error else done.result()
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if self._pending:  # they waited for this worker: no further wait
            self._dispatch()
