"""Alert rules and the alert lifecycle: active -> acknowledged -> resolved.

Rules are pure: they turn what the monitor measured into findings (firing or clear) per rule
and model. ``AlertService.apply`` keeps at most one open alert per rule and model (the database
enforces it), refreshes it while the condition persists, and resolves it, with a note, when
the condition clears. New and resolved alerts go to the optional webhook, with retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.errors import Conflict, NotFound
from predictd.monitoring.repository import AlertRepository
from predictd.monitoring.repository.alerts import OPEN_STATUSES
from predictd.settings import AlertSettings

log = logging.getLogger("predictd.alerts")

SYSTEM = "predictd"  # who resolves an alert whose condition cleared


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    model: str
    firing: bool
    severity: str = "warning"
    title: str = ""
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


# -- rules -------------------------------------------------------------------------------


def accuracy_findings(
    performance: Iterable[Mapping[str, Any]],
    training_accuracy: Mapping[tuple[str, int], float],
    settings: AlertSettings,
) -> list[Finding]:
    """Realised accuracy below the floor, or more than the allowed drop below the accuracy
    the version was registered with."""
    out = []
    for row in performance:
        realised = (row.get("metrics") or {}).get("accuracy")
        if realised is None:
            continue
        name, version = row["model_name"], row["model_version"]
        trained = training_accuracy.get((name, version))
        reasons = []
        if settings.accuracy_min is not None and realised < settings.accuracy_min:
            reasons.append(f"below the floor {settings.accuracy_min:.3f}")
        if trained is not None and realised < trained - settings.accuracy_drop:
            reasons.append(f"more than {settings.accuracy_drop:.3f} below training "
                           f"accuracy {trained:.3f}")  # fmt: skip
        out.append(
            Finding(
                "accuracy",
                name,
                bool(reasons),
                "critical",
                f"{name} v{version} accuracy {realised:.3f}",
                f"realised accuracy {realised:.3f} on {row['labelled']} labelled predictions: "
                + ("; ".join(reasons) or "within bounds"),
                {"version": version, "accuracy": realised, "training_accuracy": trained},
            )
        )
    return out


def serving_findings(
    name: str, summary: Mapping[str, Any], settings: AlertSettings
) -> list[Finding]:
    """p99 latency and error rate over the window, once there is enough traffic to judge."""
    total, errors = int(summary["total"]), int(summary["errors"])
    if total + errors < settings.min_predictions:
        return []
    p99 = summary.get("p99_latency_ms")
    rate = errors / (total + errors)
    slow = p99 is not None and p99 > settings.p99_latency_ms
    failing = rate > settings.error_rate
    return [
        Finding(
            "latency_p99", name, slow, "warning",
            f"{name} p99 latency {p99 or 0:.0f} ms",
            f"p99 latency {p99 or 0:.1f} ms (limit {settings.p99_latency_ms:g} ms) over "
            f"{total} predictions",
            {"p99_latency_ms": p99, "predictions": total},
        ),
        Finding(
            "error_rate", name, failing, "critical",
            f"{name} error rate {rate:.1%}",
            f"{errors} of {total + errors} predictions failed ({rate:.2%}; limit "
            f"{settings.error_rate:.2%})",
            {"errors": errors, "predictions": total + errors, "error_rate": rate},
        ),
    ]  # fmt: skip


def drift_findings(reports: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Dataset drift in a version's inputs. A report without a verdict (too little data, no
    reference) neither opens nor clears the alert."""
    out = []
    for report in reports:
        if report["status"] != "ok":
            continue
        name, version = report["model_name"], report["model_version"]
        drifted = sorted(k for k, f in (report["features"] or {}).items() if f.get("drifted"))
        out.append(
            Finding(
                "drift", name, bool(report["drift_detected"]), "warning",
                f"{name} v{version} input drift",
                f"v{version}: {report['message']}",
                {"version": version, "score": report["score"], "drifted_features": drifted},
            )
        )  # fmt: skip
    return out


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per rule and model, firing if any of its versions fires, so a canary and
    production in the same pass do not open and then resolve the same alert."""
    merged: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        key = (finding.rule, finding.model)
        if key not in merged or (finding.firing and not merged[key].firing):
            merged[key] = finding
    return list(merged.values())


# -- lifecycle ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Changes:
    opened: list[dict[str, Any]]
    resolved: list[dict[str, Any]]


class AlertService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def apply(self, findings: Sequence[Finding]) -> Changes:
        opened, resolved = [], []
        now = datetime.now(UTC)
        async with translate_errors("updating alerts"), self.db.engine.begin() as conn:
            repo = AlertRepository(conn)
            for finding in merge_findings(findings):
                current = await repo.open_alert(finding.rule, finding.model)
                if finding.firing and current is None:
                    row = {
                        "rule": finding.rule, "model_name": finding.model,
                        "severity": finding.severity, "status": "active",
                        "title": finding.title, "message": finding.message,
                        "data": dict(finding.data), "created_at": now, "updated_at": now,
                    }  # fmt: skip
                    alert = await repo.open(row)
                    if alert is not None:  # None: another replica opened it a moment ago
                        opened.append(alert)
                elif finding.firing and current is not None:
                    await repo.update(
                        current["id"],
                        {
                            "message": finding.message,
                            "title": finding.title,
                            "data": dict(finding.data),
                            "updated_at": now,
                        },
                    )
                elif current is not None:
                    closed = {
                        "status": "resolved",
                        "resolved_by": SYSTEM,
                        "resolved_at": now,
                        "resolution_notes": f"condition cleared: {finding.message}",
                    }
                    await repo.update(current["id"], {**closed, "updated_at": now})
                    resolved.append({**current, **closed})
        return Changes(opened, resolved)

    async def list(self, status: str | None, limit: int = 200) -> list[dict[str, Any]]:
        async with translate_errors("reading alerts"), self.db.engine.connect() as conn:
            return await AlertRepository(conn).list(status, limit)

    async def acknowledge(self, alert_id: int, by: str) -> dict[str, Any]:
        return await self._move(alert_id, "acknowledged", by, None, allowed=("active",))

    async def resolve(self, alert_id: int, by: str, notes: str | None) -> dict[str, Any]:
        return await self._move(alert_id, "resolved", by, notes, allowed=OPEN_STATUSES)

    async def _move(
        self, alert_id: int, status: str, by: str, notes: str | None, allowed: Sequence[str]
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if status == "acknowledged":
            values.update(acknowledged_by=by, acknowledged_at=now)
        else:
            values.update(resolved_by=by, resolved_at=now, resolution_notes=notes)
        async with translate_errors("updating alerts"), self.db.engine.begin() as conn:
            repo = AlertRepository(conn)
            current = await repo.get(alert_id)
            if current is None:
                raise NotFound(f"no alert {alert_id}")
            if current["status"] not in allowed:
                raise Conflict(
                    f"alert {alert_id} is {current['status']}: it cannot become {status}"
                )
            await repo.update(alert_id, values)
            action = "alerts.acknowledge" if status == "acknowledged" else "alerts.resolve"
            await repo.audit(
                action,
                f"alert {alert_id} ({current['rule']}, {current['model_name'] or 'server'})",
                before={"status": current["status"]},
                after={"status": status, "by": by, "notes": notes},
            )
        return {**current, **values}

    async def active_counts(self) -> dict[tuple[str, str], int]:
        async with translate_errors("reading alerts"), self.db.engine.connect() as conn:
            return await AlertRepository(conn).active_counts()


class Webhook:
    """POSTs ``{"event": "opened"|"resolved", "alert": {...}}``, retrying transient failures;
    a webhook that stays down is logged, never raised: alerts live in the database anyway."""

    ATTEMPTS = 4

    def __init__(self, url: str | None, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    async def send(self, changes: Changes) -> int:
        if self.url is None:
            return 0
        events = [("opened", a) for a in changes.opened] + [
            ("resolved", a) for a in changes.resolved
        ]
        sent = 0
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            for event, alert in events:
                body = {"event": event, "alert": _jsonable(alert)}
                try:
                    async for attempt in AsyncRetrying(
                        stop=stop_after_attempt(self.ATTEMPTS),
                        wait=wait_exponential(multiplier=0.2, max=2),
                        retry=retry_if_exception_type(httpx.HTTPError),
                        reraise=True,
                    ):
                        with attempt:
                            response = await client.post(self.url, json=body)
                            response.raise_for_status()
                    sent += 1
                except httpx.HTTPError as exc:
                    log.warning("alert webhook failed", extra={"event": event,
                                "alert": alert.get("id"), "error": repr(exc)})  # fmt: skip
        return sent


def _jsonable(alert: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in alert.items()}
