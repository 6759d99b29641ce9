"""The dashboard: served with its security headers and nothing external, and, in Debian's
headless Chromium against a real server on PostgreSQL, drawn without a console error and
showing the numbers the JSON API returns."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from predictd.access.keys import KeyService
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.monitoring.alerts import AlertService, Finding
from predictd.monitoring.monitor import run_monitor
from predictd.monitoring.profile import validation_profiler
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app
from tests.support.server import ServerPool, ServerProcess

WORDS = ["great", "awful", "fine", "love", "hate", "okay", "broken", "perfect", "slow", "fast"]
# The one URL in the page's files: an XML namespace name, never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


async def test_dashboard_is_self_contained(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    async with running_app(settings) as (_, client):
        page = await client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        script = await client.get("/dashboard/dashboard.js")
        style = await client.get("/dashboard/dashboard.css")
        assert script.headers["content-type"].startswith("text/javascript")
        assert style.headers["content-type"].startswith("text/css")
        for body in (page.text, script.text, style.text):
            assert re.findall(r"\w+://[^\s\"')]+", body.replace(SVG_NAMESPACE, "")) == []
            assert "<script>" not in body  # no inline script: the CSP would refuse it
        missing = await client.get("/dashboard/secrets.txt")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"


async def prepare(settings: Settings, artifacts: Artifacts) -> None:
    """The demo model registered with its validation split (reference profile, calibration)."""
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        model = artifacts.sentiment
        candidate = registry.inspect(
            model.path,
            model.name,
            metrics=model.metrics,
            profiler=validation_profiler(model.validation, settings.inference),
        )
        await registry.register(candidate)
    finally:
        await db.dispose()


async def monitor(settings: Settings) -> None:
    """One monitor pass (performance, drift, alerts), plus an alert of our own."""
    db = Database(settings.database)
    try:
        await run_monitor(db, settings.monitoring, settings.alerts, timedelta(hours=1))
        slow = Finding("latency_p99", "sentiment", True, "warning", "sentiment p99 1200 ms", "slow")
        await AlertService(db).apply([slow])
    finally:
        await db.dispose()


def to_fixed(value: float, digits: int) -> str:
    """JavaScript's Number.toFixed: the float's exact value, ties rounded up (Python's
    format rounds exact ties to even: 1.25 -> "1.2" where the page shows "1.3")."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def traffic(server: ServerProcess, count: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    answers = []
    with server.client() as client:
        for _ in range(count):
            text = " ".join(rng.choices(WORDS, k=rng.randint(2, 12)))
            response = client.post("/predict", json={"text": text})
            assert response.status_code == 200, response.text
            answers.append(response.json())
        for answer in answers[: count // 2]:  # ground truth for half of them
            label = answer["prediction"] if rng.random() < 0.8 else "neutral"
            sent = client.post("/feedback", json={"prediction_id": answer["prediction_id"],
                                                  "actual": label})  # fmt: skip
            assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 20
        while client.get("/analytics/summary").json()["total"] < count:
            assert time.monotonic() < deadline, "predictions not recorded within 20 s"
            time.sleep(0.1)
    return answers


def test_dashboard_in_chromium(
    chromium: str, servers: ServerPool, postgres_url: str, artifacts: Artifacts, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    settings = Settings(database_url=postgres_url, drift_min_rows=20, alert_min_predictions=10_000)
    asyncio.run(prepare(make_settings(tmp_path, postgres_url), artifacts))
    server = servers.start(postgres_url, spool_dir=tmp_path / "spool", model=None)
    traffic(server, 80)
    asyncio.run(monitor(settings))

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)  # fmt: skip
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}")
                    if r.status >= 400 else None)  # fmt: skip
            page.goto(f"{server.base_url}/dashboard?model=sentiment&hours=24")
            page.wait_for_selector('body[data-state="ready"]', timeout=20_000)
            shown = page.evaluate(SCRAPE)
            assert page.is_hidden("#auth")  # PREDICTD_AUTH=off: no key asked for
            screenshot = os.environ.get("PREDICTD_DASHBOARD_SCREENSHOT")
            page.screenshot(path=screenshot or str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []

    scope = {"from": shown["from"], "model": "sentiment"}
    with server.client() as client:
        summary = client.get("/analytics/summary", params=scope).json()
        distribution = client.get("/analytics/distribution", params=scope).json()
        timeseries = client.get("/analytics/timeseries", params={**scope, "interval": "hour"})
        drift = client.get("/drift/reports", params={"model": "sentiment", "limit": 1}).json()
        alerts = client.get("/alerts", params={"status": "open"}).json()
        performance = client.get("/analytics/performance", params={"model": "sentiment"}).json()

    assert summary["total"] == 80
    stats = shown["stats"]
    assert (stats["stat-total"]["value"], stats["stat-total"]["text"]) == ("80", "80")
    for key in ("p50", "p95", "p99"):
        api = summary[f"{key}_latency_ms"]
        assert float(stats[f"stat-{key}"]["value"]) == api
        assert stats[f"stat-{key}"]["text"] == f"{to_fixed(api, 1)} ms"
    assert float(stats["stat-confidence"]["value"]) == pytest.approx(summary["avg_confidence"])

    assert shown["labels"] == [[str(x["label"]), str(x["count"])] for x in distribution["labels"]]
    assert shown["confidenceBars"] == [str(b["count"]) for b in distribution["confidence"]]
    # The chart shows every hour of the window; the API lists the hours that saw traffic.
    assert len(shown["volumeBars"]) in (24, 25)
    assert [v for v in shown["volumeBars"] if v != "0"] == [
        str(p["count"]) for p in timeseries.json()["points"]
    ]

    (report,) = drift["items"]
    assert report["status"] == "ok"
    tested = {k: v for k, v in report["features"].items() if v["status"] == "ok"}
    assert tested, report
    assert {name: float(value) for name, value in shown["drift"]} == {
        name: feature["statistic"] for name, feature in tested.items()
    } | {f"answers: {k}": v["statistic"] for k, v in (report["outputs"] or {}).items()}

    assert sorted(shown["alerts"]) == sorted(str(a["id"]) for a in alerts["items"])
    assert "latency_p99" in {a["rule"] for a in alerts["items"]}
    realised = [row for row in performance["items"] if row["metrics"]]
    assert realised, performance
    assert shown["accuracyDots"] == len(realised) + sum(
        1 for row in performance["items"] if row["estimated"]
    )


# What the page shows, read from its DOM.
SCRAPE = """() => {
  const stat = (id) => ({ value: document.getElementById(id).dataset.value,
                          text: document.getElementById(id).textContent });
  const ids = ["stat-total", "stat-errors", "stat-cache", "stat-confidence",
               "stat-p50", "stat-p95", "stat-p99"];
  return {
    from: document.body.dataset.from,
    stats: Object.fromEntries(ids.map((id) => [id, stat(id)])),
    labels: [...document.querySelectorAll("#labels tbody tr")]
      .filter((tr) => tr.cells.length === 3)
      .map((tr) => [tr.cells[0].textContent, tr.cells[1].dataset.value]),
    confidenceBars: [...document.querySelectorAll("#confidence rect.bar")]
      .map((r) => r.dataset.value),
    volumeBars: [...document.querySelectorAll("#volume rect.bar")].map((r) => r.dataset.value),
    drift: [...document.querySelectorAll("#drift tbody tr")]
      .filter((tr) => tr.cells[0].dataset.feature)
      .map((tr) => [tr.cells[0].dataset.feature, tr.cells[2].dataset.value]),
    alerts: [...document.querySelectorAll("#alerts tbody tr")]
      .filter((tr) => tr.cells.length > 1).map((tr) => tr.cells[1].dataset.id),
    accuracyDots: document.querySelectorAll("#accuracy circle").length - 2,  // minus legend
  };
}"""


def test_screenshot_is_kept_in_docs() -> None:
    """docs/dashboard.png is produced by the browser test above
    (PREDICTD_DASHBOARD_SCREENSHOT=docs/dashboard.png); it must exist and be a PNG."""
    shot = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000


def test_dashboard_asks_for_a_key_when_auth_is_on(
    chromium: str, servers: ServerPool, postgres_url: str, artifacts: Artifacts, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    asyncio.run(prepare(make_settings(tmp_path, postgres_url), artifacts))

    async def reader_key() -> str:
        db = Database(Settings(database_url=postgres_url).database)
        try:
            key, _ = await KeyService(db).create("dashboard", ["read"])
            return key
        finally:
            await db.dispose()

    key = asyncio.run(reader_key())
    server = servers.start(postgres_url, spool_dir=tmp_path / "spool", model=None,
                        env={"PREDICTD_AUTH": "on"})  # fmt: skip
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.base_url}/dashboard")
            page.wait_for_selector('body[data-state="needs-key"]', timeout=20_000)
            assert page.is_visible("#auth")
            page.fill("#key", key)
            page.click("#auth button")
            page.wait_for_selector('body[data-state="ready"]', timeout=20_000)
            assert page.is_hidden("#auth")
            assert page.text_content("#stat-total") == "0"
        finally:
            browser.close()
    assert errors == []
