"""The per-process cap on requests being worked on (``PREDICTD_MAX_CONCURRENCY``)."""

from __future__ import annotations


class ConcurrencyGate:
    """Requests one process works on at once; beyond ``limit``, 503 rather than a queue
    without bound. Entered only by requests whose body is in (on the prediction routes, whose
    caller is also admitted), so it counts work, never connections that trickle or stall."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.message = f"this server is working on {limit} requests; retry shortly"

    def enter(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
