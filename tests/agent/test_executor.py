"""The executor on SQLite and PostgreSQL: each approved action runs exactly once with
executors racing over separate engines, a stopped executor's action is taken over once its
lease runs out (and not before: the lease is kept alive while a handler works), an action
that keeps stopping executors fails, and failures reach the webhook."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from predictd.agent.actions import Action
from predictd.agent.executor import MAX_ATTEMPTS
from predictd.agent.handlers import HANDLERS, Toolbox
from predictd.agent.service import ActionService
from predictd.db.engine import Database
from predictd.db.tables import agent_actions
from tests.agent.conftest import Replicas, audit_rows, proposal, stored
from tests.support.webhook import webhook_sink

RACED = 24


async def test_each_approved_action_runs_exactly_once(
    db: Database, actions: ActionService, replicas: Replicas
) -> None:
    with webhook_sink() as sink:
        ids = [
            (await stored(actions, proposal(model=f"m{i}", requires_approval=False))).id
            for i in range(RACED)
        ]
        pending = await stored(actions, proposal(model="waiting"))  # not approved: not run
        racers = [replicas.executor(webhook_url=sink.url) for _ in range(3)]
        finished = await asyncio.gather(*(r.run_once() for r in racers))
        incidents = [body["action_id"] for body in sink.received if body["event"] == "incident"]

    ran = [a.id for done in finished for a in done]
    assert sorted(ran) == ids  # every one finished, none by two executors
    assert Counter(incidents) == Counter(ids)  # and its handler ran once
    assert [await r.run_once() for r in racers] == [[], [], []]
    for action in await actions.list("succeeded"):
        assert (action.attempts, action.error) == (1, None)
        assert action.lease_owner in {r.owner for r in racers}
        assert action.result is not None
        assert action.result["sent"]["action_id"] == action.id
    assert (await actions.get(pending.id)).status == "pending"
    runs = Counter(r["action"] for r in await audit_rows(db))
    assert (runs["actions.run"], runs["actions.succeeded"]) == (RACED, RACED)


async def test_a_stopped_executors_action_is_taken_over_after_its_lease(
    actions: ActionService, replicas: Replicas
) -> None:
    crashed, survivor = replicas.executor(lease_s=0.5), replicas.executor()
    action = await stored(actions, proposal(requires_approval=False))
    held = await crashed.claim()  # ... and the replica dies before executing it
    assert held is not None
    assert (held.id, held.status, held.attempts) == (action.id, "running", 1)
    assert held.lease_owner == crashed.owner
    assert await survivor.claim() is None  # the lease still holds
    await asyncio.sleep(0.6)

    (done,) = await survivor.run_once()
    assert (done.id, done.status, done.attempts) == (action.id, "succeeded", 2)
    assert done.lease_owner == survivor.owner
    assert done.executed_at == held.executed_at  # first started then
    # The first executor, back from the dead, cannot overwrite the outcome.
    assert await crashed.execute(held) is None
    assert (await actions.get(action.id)).status == "succeeded"


async def test_the_lease_is_kept_while_a_handler_works(
    actions: ActionService, replicas: Replicas
) -> None:
    started = asyncio.Event()

    async def slow_incident(tools: Toolbox, action: Action) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(1.2)  # four leases long
        return await HANDLERS["open_incident"](tools, action)

    worker = replicas.executor(lease_s=0.3, handlers={**HANDLERS, "open_incident": slow_incident})
    rival = replicas.executor(lease_s=0.3)
    action = await stored(actions, proposal(requires_approval=False))
    running = asyncio.create_task(worker.run_once())
    await started.wait()
    rival_claims = []
    while not running.done():
        rival_claims.append(await rival.claim())
        await asyncio.sleep(0.05)
    (done,) = running.result()
    assert rival_claims
    assert set(rival_claims) == {None}
    assert (done.id, done.status, done.attempts) == (action.id, "succeeded", 1)


async def test_a_handler_whose_lease_was_taken_over_is_stopped(
    actions: ActionService, replicas: Replicas
) -> None:
    """The database lost the lease to another executor (it was away longer than the lease):
    the first handler is cancelled rather than finishing its work beside the new owner."""
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow_incident(tools: Toolbox, action: Action) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(3)
        finished.set()
        return {}

    worker = replicas.executor(lease_s=0.3, handlers={**HANDLERS, "open_incident": slow_incident})
    action = await stored(actions, proposal(requires_approval=False))
    running = asyncio.create_task(worker.run_once())
    await started.wait()
    async with actions.db.engine.begin() as conn:  # what a takeover after expiry leaves
        await conn.execute(
            update(agent_actions)
            .where(agent_actions.c.id == action.id)
            .values(lease_owner="another:1:replica",
                    lease_expires_at=datetime.now(UTC) + timedelta(minutes=5))
        )  # fmt: skip
    assert await asyncio.wait_for(running, 2) == []  # stopped, nothing recorded
    assert not finished.is_set()
    held = await actions.get(action.id)
    assert (held.status, held.lease_owner, held.result) == ("running", "another:1:replica", None)


async def test_a_stopping_executor_hands_its_action_back(
    actions: ActionService, replicas: Replicas
) -> None:
    started = asyncio.Event()

    async def endless(tools: Toolbox, action: Action) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    stopping = replicas.executor(handlers={**HANDLERS, "open_incident": endless})
    action = await stored(actions, proposal(requires_approval=False))
    running = asyncio.create_task(stopping.run_once())
    await started.wait()
    assert (await actions.get(action.id)).status == "running"
    running.cancel()  # what the lifespan does on shutdown
    await asyncio.gather(running, return_exceptions=True)
    back = await actions.get(action.id)
    assert (back.status, back.lease_owner, back.attempts) == ("approved", None, 0)
    (done,) = await replicas.executor().run_once()  # at once: no lease to wait out
    assert (done.id, done.status, done.attempts) == (action.id, "succeeded", 1)


async def test_an_action_that_keeps_stopping_executors_fails(
    actions: ActionService, replicas: Replicas
) -> None:
    with webhook_sink() as sink:
        action = await stored(actions, proposal(requires_approval=False))
        for _ in range(MAX_ATTEMPTS):
            assert await replicas.executor(lease_s=0.05).claim() is not None
            await asyncio.sleep(0.1)
        (done,) = await replicas.executor(webhook_url=sink.url).run_once()
        assert sink.events() == ["action_failed"]  # never the incident itself
    assert (done.id, done.status, done.attempts) == (action.id, "failed", MAX_ATTEMPTS + 1)
    assert done.error is not None
    assert done.error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert sink.received[0]["action"]["id"] == action.id
    assert sink.received[0]["action"]["status"] == "failed"


async def test_a_failure_is_stored_and_sent_to_the_webhook(
    db: Database, actions: ActionService, replicas: Replicas
) -> None:
    with webhook_sink(failures=1) as sink:  # the first POST fails: retried
        missing = await stored(actions, proposal("promote_candidate", "ghost", version=3,
                                                 requires_approval=False))  # fmt: skip
        no_version = await stored(actions, proposal("rollback_model", requires_approval=False))
        done = {a.id: a for a in await replicas.executor(webhook_url=sink.url).run_once()}
    assert done[missing.id].status == "failed"
    assert done[missing.id].error == "model 'ghost' version 3 not found"
    assert done[missing.id].finished_at is not None
    assert done[missing.id].result is None
    assert done[no_version.id].error == "rollback_model needs the model version it is about"
    assert sink.events() == ["action_failed", "action_failed"]
    assert {b["action"]["id"] for b in sink.received} == {missing.id, no_version.id}
    failed = [r for r in await audit_rows(db) if r["action"] == "actions.failed"]
    assert [r["key_name"] for r in failed] == [
        f"agent:action:{missing.id}",
        f"agent:action:{no_version.id}",
    ]
    assert failed[0]["after"]["error"] == "model 'ghost' version 3 not found"
