"""What the agent tells PREDICTD_ALERT_WEBHOOK_URL: incidents it opens and actions that failed.
Same receiver, retries and timeout as the monitor's alerts (monitoring/alerts.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger("predictd.agent")


class ActionWebhook:
    ATTEMPTS = 4

    def __init__(self, url: str | None, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    async def post(self, body: Mapping[str, Any]) -> None:
        """POST ``body`` as JSON, retrying transient failures; the last failure is raised."""
        if self.url is None:
            return
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.ATTEMPTS),
                wait=wait_exponential(multiplier=0.2, max=2),
                retry=retry_if_exception_type(httpx.HTTPError),
                reraise=True,
            ):
                with attempt:
                    response = await client.post(self.url, json=dict(body))
                    response.raise_for_status()

    async def tell(self, body: Mapping[str, Any]) -> bool:
        """``post`` for news that lives in the database anyway: a failure is logged, not
        raised. True when it was delivered."""
        if self.url is None:
            return False
        try:
            await self.post(body)
        except httpx.HTTPError as exc:
            log.warning(
                "agent webhook failed", extra={"event": body.get("event"), "error": repr(exc)}
            )
            return False
        return True
