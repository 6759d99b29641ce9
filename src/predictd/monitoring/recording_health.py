"""The in-server alert on recording itself: the database unreachable, or the recorder's
backlog growing, for longer than PREDICTD_ALERT_RECORDING_S.

This is the one alert that cannot wait for the database, since the database is what is
failing: the server decides from its own recorder's state, notifies the webhook and the
gauge at once, and stores the alert (and its resolution) in the database as soon as it can.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from predictd.monitoring.alerts import AlertService, Changes, Finding, Webhook
from predictd.observability import Metrics
from predictd.recording.recorder import RecorderState
from predictd.settings import AlertSettings

log = logging.getLogger("predictd.alerts")

RULE = "recording"


@dataclass(slots=True)
class RecordingCondition:
    """Tracks how long recording has been unhealthy; ``observe`` is pure given its inputs."""

    limit_s: float
    down_since: float | None = None
    growing_since: float | None = None
    last_backlog: int = 0

    def observe(self, state: RecorderState, now: float) -> tuple[bool, str]:
        backlog = state.last_lsn - state.committed_lsn
        if state.database_ok is False:
            self.down_since = self.down_since if self.down_since is not None else now
        else:
            self.down_since = None
        if backlog > self.last_backlog:
            self.growing_since = self.growing_since if self.growing_since is not None else now
        elif backlog < self.last_backlog or backlog == 0:
            self.growing_since = None
        self.last_backlog = backlog
        down_s = None if self.down_since is None else now - self.down_since
        growing_s = None if self.growing_since is None else now - self.growing_since
        if max(down_s or 0.0, growing_s or 0.0) < self.limit_s:
            return False, f"recording is healthy (backlog {backlog})"
        # Whichever clock ran out, a database failing now is the cause (the backlog usually
        # starts growing a moment before the first write fails).
        if down_s is not None:
            return True, (
                f"the database has been unreachable for {down_s:.0f} s; "
                f"{backlog} predictions wait in the spool ({state.last_error or 'no error text'})"
            )
        return True, (
            f"the recorder's backlog has grown for {growing_s:.0f} s "
            f"to {backlog} predictions: the database is not keeping up"
        )


class RecordingWatch:
    def __init__(
        self,
        settings: AlertSettings,
        recorder_state: Callable[[], RecorderState],
        alerts: AlertService,
        metrics: Metrics,
    ) -> None:
        self.condition = RecordingCondition(settings.recording_s)
        self.recorder_state = recorder_state
        self.alerts = alerts
        self.metrics = metrics
        self.webhook = Webhook(settings.webhook_url)
        self.firing = False
        self._unstored: list[Finding] = []  # changes the database has not taken yet, in order

    async def check(self, now: float | None = None) -> None:
        firing, message = self.condition.observe(
            self.recorder_state(), time.monotonic() if now is None else now
        )
        if firing != self.firing:
            self.firing = firing
            finding = Finding(RULE, "", firing, "critical", "recording is failing", message)
            self._unstored.append(finding)
            log.log(logging.ERROR if firing else logging.INFO,
                    "recording alert " + ("opened" if firing else "resolved"),
                    extra={"detail": message})  # fmt: skip
            self.metrics.alerts_active.labels(rule=RULE, severity="critical").set(int(firing))
            alert = {"rule": RULE, "model_name": "", "severity": "critical",
                     "status": "active" if firing else "resolved", "title": finding.title,
                     "message": message, "at": datetime.now(UTC)}  # fmt: skip
            await self.webhook.send(Changes([alert], []) if firing else Changes([], [alert]))
        while self._unstored:  # an outage opened and over before the database took either
            try:
                await self.alerts.apply(self._unstored[:1])
                self._unstored.pop(0)
            except Exception as exc:  # still down: store it on a later check
                log.debug("recording alert not stored yet", extra={"error": repr(exc)})
                break

    async def forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("recording watch failed")
