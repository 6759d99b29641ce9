"""The approval workflow on SQLite and PostgreSQL: one open proposal per model and type,
auto-approval, separation of duties, expiry, the audit rows and the gauge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from predictd.access import audit
from predictd.agent.service import AUTO_REVIEWER, ActionService
from predictd.db.engine import Database
from predictd.errors import Conflict, Forbidden, InvalidInput, NotFound
from predictd.observability import Metrics
from tests.agent.conftest import TTL, audit_rows, proposal, stored


async def test_one_open_proposal_per_model_and_type(actions: ActionService) -> None:
    first = await stored(actions, proposal())
    assert (first.status, first.requested_by, first.reviewed_by) == ("pending", "agent", None)
    assert first.expires_at == first.created_at + TTL
    assert first.evidence["metrics"]["accuracy"] == 0.61
    assert await actions.propose(proposal(), ttl=TTL) is None  # still open: no second one
    other_model = await stored(actions, proposal(model="tabular"))
    other_type = await stored(actions, proposal("retrain_model"))
    await actions.reject(first.id, "kim", "not now")
    again = await stored(actions, proposal())  # closed: a new one may open
    assert again.id not in (first.id, other_model.id, other_type.id)
    assert [a.id for a in await actions.list("pending")] == [
        again.id,
        other_type.id,
        other_model.id,
    ]
    assert [a.id for a in await actions.list("rejected")] == [first.id]


async def test_an_action_without_approval_is_stored_approved(actions: ActionService) -> None:
    auto = await stored(
        actions, proposal("rollback_model", version=2, requires_approval=False), ttl=TTL
    )
    assert (auto.status, auto.reviewed_by) == ("approved", AUTO_REVIEWER)
    assert auto.reviewed_at is not None
    with pytest.raises(Conflict, match="is approved: only a pending action"):
        await actions.approve(auto.id, "kim")
    # approved is open too: the same rollback is not proposed twice
    assert await actions.propose(proposal("rollback_model", version=2), ttl=TTL) is None


async def test_decisions_and_their_audit_rows(db: Database, actions: ActionService) -> None:
    approved = await stored(actions, proposal())
    rejected = await stored(actions, proposal(model="tabular"))
    with audit.acting_as(audit.Actor("kim", "approve")):
        done = await actions.approve(approved.id, "kim", "  looks right  ")
        assert (done.status, done.reviewed_by, done.review_comment) == (
            "approved",
            "kim",
            "looks right",
        )
        with pytest.raises(InvalidInput) as no_comment:
            await actions.reject(rejected.id, "kim", "   ")
        assert no_comment.value.field == "comment"
        with pytest.raises(InvalidInput, match="at most 2000"):
            await actions.reject(rejected.id, "kim", "x" * 2001)
        no = await actions.reject(rejected.id, "kim", "the drift is seasonal")
        assert (no.status, no.review_comment) == ("rejected", "the drift is seasonal")
        with pytest.raises(Conflict, match="is rejected"):
            await actions.approve(rejected.id, "kim")
        with pytest.raises(NotFound, match="no action 999"):
            await actions.approve(999, "kim")
    assert (await actions.get(approved.id)).status == "approved"
    with pytest.raises(NotFound):
        await actions.get(999)

    rows = [(r["action"], r["key_name"], r["allowed"]) for r in await audit_rows(db)]
    assert rows[:2] == [("actions.propose", "cli:" + rows[0][1].split(":", 1)[1], True)] * 2
    assert rows[2:] == [
        ("actions.approve", "kim", True),
        ("actions.reject", "kim", True),
        ("actions.approve", "kim", False),  # refused: already rejected
        ("actions.approve", "kim", False),  # refused: no such action
    ]
    decided = (await audit_rows(db))[2]
    assert (decided["before"]["status"], decided["after"]["status"]) == ("pending", "approved")
    assert decided["target"] == f"action {approved.id} (open_incident, sentiment)"
    refused = (await audit_rows(db))[4]
    assert "is rejected" in refused["after"]["refused"]


async def test_who_requested_an_action_may_not_review_it(
    db: Database, actions: ActionService
) -> None:
    mine = await stored(actions, proposal(), requested_by="alice")
    assert mine.requested_by == "alice"
    for decide in (actions.approve(mine.id, "alice"), actions.reject(mine.id, "alice", "no")):
        with pytest.raises(Forbidden, match="requested by 'alice': someone else must review"):
            await decide
    assert (await actions.get(mine.id)).status == "pending"
    assert (await actions.approve(mine.id, "bob")).reviewed_by == "bob"
    refused = [r for r in await audit_rows(db) if not r["allowed"]]
    assert [(r["action"], r["after"]["by"]) for r in refused] == [
        ("actions.approve", "alice"),
        ("actions.reject", "alice"),
    ]


async def test_proposals_expire_after_their_ttl(db: Database, actions: ActionService) -> None:
    short = await stored(actions, proposal(), ttl=timedelta(seconds=30))
    long = await stored(actions, proposal(model="tabular"))
    overdue = await stored(actions, proposal(model="overdue"), ttl=timedelta(seconds=-1))

    # Past its time but not yet swept: a decision finds it expired, and says so.
    with pytest.raises(Conflict, match=f"action {overdue.id} expired at"):
        await actions.approve(overdue.id, "kim")
    assert (await actions.get(overdue.id)).status == "expired"

    later = datetime.now(UTC) + timedelta(seconds=31)
    assert [a.id for a in await actions.expire_due(later)] == [short.id]
    assert await actions.expire_due(later) == []
    assert (await actions.get(short.id)).status == "expired"
    assert (await actions.get(long.id)).status == "pending"
    with pytest.raises(Conflict, match="expired"):
        await actions.reject(short.id, "kim", "too late")
    await stored(actions, proposal())  # expired is not open

    rows = [(r["action"], r["allowed"]) for r in await audit_rows(db)][3:]
    assert rows == [
        ("actions.expire", True),
        ("actions.approve", False),
        ("actions.expire", True),
        ("actions.reject", False),
        ("actions.propose", True),
    ]


async def test_the_gauge_counts_actions_per_status(db: Database) -> None:
    metrics = Metrics.create()
    actions = ActionService(db, metrics)

    def gauge(status: str) -> float | None:
        return metrics.registry.get_sample_value("predictd_agent_actions", {"status": status})

    a = await stored(actions, proposal())
    b = await stored(actions, proposal(model="b"))
    await stored(actions, proposal(model="c", requires_approval=False))
    assert (gauge("pending"), gauge("approved"), gauge("rejected")) == (2, 1, 0)
    await actions.reject(a.id, "kim", "no")
    assert (gauge("pending"), gauge("rejected"), gauge("succeeded")) == (1, 1, 0)
    await actions.approve(b.id, "kim")
    assert (gauge("pending"), gauge("approved")) == (0, 2)
    assert await actions.counts() == {
        "pending": 0,
        "approved": 2,
        "rejected": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "expired": 0,
    }


async def test_a_bad_status_is_named(actions: ActionService) -> None:
    with pytest.raises(InvalidInput) as bad:
        await actions.list("done")  # type: ignore[arg-type]
    assert bad.value.field == "status"
