"""Retraining inside the server (PREDICTD_RETRAIN_INTERVAL): every model with a production
version gets a candidate once per interval, made by one replica.

On PostgreSQL a session advisory lock lets one replica run a pass at a time, and each run is
written to the audit log (``retraining.scheduled``), so a replica that takes the lock later
in the same interval sees the run and skips it: N replicas make one candidate per model per
interval, not N. Too few labels is logged at info and tried again next interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from predictd.access import audit
from predictd.db.engine import Database
from predictd.errors import NotEnoughData
from predictd.observability import describe_error
from predictd.registry.service import ModelRegistry
from predictd.retraining.options import RetrainOptions, RetrainResult
from predictd.retraining.repository import RetrainingRepository
from predictd.retraining.service import retrain
from predictd.settings import RetrainingSettings

log = logging.getLogger("predictd.retraining")

RETRAIN_LOCK = 0x7072_6574  # advisory lock key ("pret"): one retraining pass per database
SCHEDULED = "retraining.scheduled"  # the audit action each scheduled run writes
CHECK_EVERY = timedelta(minutes=10)  # how often a replica looks for a model that is due


@asynccontextmanager
async def exclusive_retraining(db: Database) -> AsyncIterator[bool]:
    """True for the one replica that runs this pass (always on SQLite: one server)."""
    if db.dialect != "postgresql":
        yield True
        return
    async with db.engine.connect() as conn:
        repo = RetrainingRepository(conn)
        held = await repo.try_lock(RETRAIN_LOCK)
        await conn.commit()  # the lock is the session's; no transaction held open meanwhile
        try:
            yield held
        finally:
            if held:
                await repo.unlock(RETRAIN_LOCK)
                await conn.commit()


async def run_due(
    db: Database, registry: ModelRegistry, settings: RetrainingSettings, interval: timedelta
) -> list[RetrainResult]:
    """One pass: retrain each model whose last scheduled run is ``interval`` old or more;
    returns the candidates made (none when another replica holds the pass)."""
    made: list[RetrainResult] = []
    async with exclusive_retraining(db) as mine:
        if not mine:
            log.debug("retraining pass skipped: another replica is running it")
            return made
        # Only scikit-learn (skops) artifacts can be refitted; an ONNX model is left alone.
        names = sorted(
            {
                v.name
                for v in await registry.list_versions()
                if v.stage == "production" and v.flavor == "sklearn"
            }
        )
        for name in names:
            async with db.engine.connect() as conn:
                last = await RetrainingRepository(conn).last_run(SCHEDULED, name)
            if last is not None and datetime.now(UTC) - last < interval:
                continue
            outcome: dict[str, object]
            try:
                result = await retrain(db, registry, RetrainOptions.from_settings(name, settings))
                made.append(result)
                outcome = {"version": result.version.version}
                log.info("retrained", extra={"model": name, "version": result.version.version})
            except NotEnoughData as exc:
                outcome = {"skipped": exc.message}
                log.info("retraining skipped", extra={"model": name, "reason": exc.message})
            except Exception as exc:
                error = describe_error(exc, 500)  # credentials taken out, as an action's error is
                outcome = {"failed": error}
                log.warning("retraining failed", extra={"model": name, "error": error})
            async with db.engine.begin() as conn:
                await audit.record(conn, SCHEDULED, name, after=outcome)
    return made


async def retrain_forever(
    db: Database, registry: ModelRegistry, settings: RetrainingSettings
) -> None:
    """The in-server schedule (only with ``settings.interval``); a failed pass is logged and
    retried at the next check."""
    interval = settings.interval
    if interval is None:
        return
    tick = min(interval, CHECK_EVERY).total_seconds()
    while True:
        await asyncio.sleep(tick)
        try:
            await run_due(db, registry, settings, interval)
        except Exception as exc:
            log.warning("retraining pass failed", extra={"error": repr(exc)})
