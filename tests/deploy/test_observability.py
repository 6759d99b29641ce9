"""The Prometheus rules and the Grafana dashboard in deploy/ against the real tools and a real
server: promtool checks the rules, a real Prometheus scrapes a running `predictd serve` with the
rules loaded, and every metric the dashboard and the rules name is one predictd exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import services
from tests.support.server import ServerPool, ServerProcess, free_port, predict_many, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "predictd.json"
TOOLS = "(scripts/ensure_observability_tools.sh)"
# A predictd metric named in PromQL; recording rules (predictd:...) use colons, so they are
# not matched, and neither is `up`.
_METRIC = re.compile(r"\bpredictd_[a-zA-Z0-9_]+\b")
# Grafana's variables, replaced by what Prometheus itself accepts to check a query parses.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".*"}
PROMETHEUS_START_S = 60.0
SCRAPE_WAIT_S = 60.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        services.unavailable(f"{name} {TOOLS}")
    assert path is not None
    return path


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    found: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend(str(t["expr"]) for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            found.append(str(query["query"] if isinstance(query, dict) else query))
    return found


def rule_expressions() -> list[str]:
    import yaml

    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def exported_names(exposition: str) -> set[str]:
    """Every series name a query may use for the families in a /metrics text: the samples
    present, and the names each family's type implies (``_total``, ``_bucket``/``_sum``/
    ``_count``), so a labelled family with no sample yet still counts."""
    names: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


ADMIN_TOKEN = "deploy-test-admin-token"


def _served(servers: ServerPool, tmp_path: Path, *, as_compose: bool = False) -> ServerProcess:
    """A real server on SQLite with a few answered predictions and one refused request, so
    the labelled series (predictions by label, latency by endpoint, refusals) exist.
    ``as_compose``: authentication on and /metrics public, as compose.yaml runs predictd."""
    env = (
        {
            "PREDICTD_AUTH": "on",
            "PREDICTD_METRICS_PUBLIC": "true",
            "PREDICTD_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        if as_compose
        else {}
    )
    server = servers.start(
        f"sqlite:///{tmp_path / 'predictd.db'}", spool_dir=tmp_path / "spool", env=env
    )
    with server.client() as client:
        if as_compose:
            client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        predict_many(client, 5, prefix="deploy")
        assert client.post("/predict", json={}).status_code == 422
    return server


def test_rules_pass_promtool() -> None:
    promtool = _tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_alerts_fire_on_their_conditions() -> None:
    """promtool's unit tests of the rules: each alert fires on synthetic series shaped like
    predictd's and stays quiet below its threshold."""
    promtool = _tool("promtool")
    result = subprocess.run(
        [promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every alert of rules.yml has a test case (one that fires, not only an empty one).
    import yaml

    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    untested = sorted(alerts - tested)
    assert not untested, f"alerts without a firing promtool test: {untested}"


def test_dashboard_and_rules_name_only_exported_metrics(
    servers: ServerPool, tmp_path: Path
) -> None:
    server = _served(servers, tmp_path)
    with server.client() as client:
        response = client.get("/metrics")
    response.raise_for_status()
    exported = exported_names(response.text)
    # The predictions made above show up as labelled samples, not only as declared families.
    assert "predictd_predictions_total" in {
        s.name for f in text_string_to_metric_families(response.text) for s in f.samples
    }
    expressions = dashboard_expressions()
    assert len(expressions) >= 15, expressions
    for where, exprs in (("dashboard", expressions), ("rules", rule_expressions())):
        named = {name for expr in exprs for name in _METRIC.findall(expr)}
        assert named, f"{where} names no predictd metric"
        missing = sorted(named - exported)
        assert not missing, f"{where} names metrics predictd does not export: {missing}"
    # Every dashboard panel query names a predictd metric (no stray or misspelled source).
    for expr in expressions:
        assert _METRIC.search(expr), f"dashboard query names no predictd metric: {expr}"


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Starts Debian's prometheus scraping a target every second with the rules loaded;
    returns a function (target) -> base URL. Stopped (SIGTERM, then SIGKILL) afterwards."""
    binary = _tool("prometheus")
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML: no templating of a YAML text by hand
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": "predictd", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        log = tmp_path / "prometheus.log"
        logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited\n{log.read_text()[-4000:]}"
            try:
                return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, PROMETHEUS_START_S, "prometheus ready", lambda: log.read_text()[-4000:])
        return base

    try:
        yield start
    finally:
        for proc in started:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)


def _query(base: str, promql: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    body: dict[str, Any] = response.json()
    return body


def test_prometheus_scrapes_predictd_with_rules_loaded(
    servers: ServerPool, tmp_path: Path, prometheus_for: Any
) -> None:
    server = _served(servers, tmp_path, as_compose=True)
    with server.client() as client:  # what Prometheus relies on: no key for /metrics only
        assert client.post("/predict", json={"text": "no key"}).status_code == 401
        assert client.get("/metrics").status_code == 200
    base: str = prometheus_for(f"127.0.0.1:{server.port}")

    def scraped() -> bool:
        result = _query(base, "predictd_predictions_total")
        return result["status"] == "success" and bool(result["data"]["result"])

    wait_for(scraped, SCRAPE_WAIT_S, "predictd_ series in Prometheus", server.log_tail)
    targets = httpx.get(f"{base}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    series = _query(base, "predictd_predictions_total")["data"]["result"]
    labels = {r["metric"]["label"] for r in series}
    assert labels, "no predicted label reached Prometheus"

    # Every group loaded and each rule evaluated at least once without error.
    def evaluated() -> list[dict[str, Any]] | None:
        body = httpx.get(f"{base}/api/v1/rules", timeout=10).json()
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules):
            return rules
        return None

    wait_for(lambda: evaluated() is not None, SCRAPE_WAIT_S, "every rule evaluated")
    rules = evaluated()
    assert rules is not None
    assert len(rules) == len(rule_expressions()), [r["name"] for r in rules]
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    # A healthy, lightly used server fires none of the alerts (PredictdTargetDown included).
    firing = [r["name"] for r in rules if r.get("type") == "alerting" and r["state"] == "firing"]
    assert not firing, firing
    # The recording rule over the request counter produces a series from the real scrape.
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while not _query(base, "predictd:http_requests:rate5m")["data"]["result"]:
        assert time.monotonic() < deadline, "recording rule predictd:http_requests:rate5m empty"
        time.sleep(0.5)

    # Every dashboard panel query is PromQL this Prometheus accepts (Grafana's variables
    # replaced); label_values(...) is Grafana's own syntax and is checked by name only.
    for expr in dashboard_expressions():
        if expr.startswith("label_values("):
            continue
        for variable, value in _GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        result = _query(base, expr)
        assert result["status"] == "success", (expr, result)


def test_dashboard_layout_and_datasources() -> None:
    """What Grafana needs to load the dashboard as provisioned: unique panel ids, panels
    inside the 24-column grid without overlapping, and every query on the Prometheus picked
    by the dashboard's `datasource` variable (no uid of one particular Grafana)."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "predictd"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels: list[dict[str, Any]] = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] <= grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        for source in [
            panel.get("datasource"),
            *(t.get("datasource") for t in panel.get("targets", [])),
        ]:
            if source is not None:
                assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        if panel["type"] not in ("row", "text"):
            assert panel.get("targets"), f"{panel['title']} has no query"
