"""Grouped settings, flat variables: every variable an operator sets still lands in its
field (now inside a group), from the environment, `.env` or a secret file, and a bad value
is still reported under its variable."""

from __future__ import annotations

import os
import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from predictd.server import ServerConfig
from predictd.settings import GROUPS, Settings, describe_errors, markdown_table

# Every variable predictd read before its settings were grouped: none may be renamed.
VARIABLES = {
    "DATABASE_URL", "PREDICTD_ADMIN_TOKEN", "PREDICTD_ALERT_ACCURACY_DROP",
    "PREDICTD_ALERT_ACCURACY_MIN", "PREDICTD_ALERT_ERROR_RATE", "PREDICTD_ALERT_MIN_PREDICTIONS",
    "PREDICTD_ALERT_P99_LATENCY_MS", "PREDICTD_ALERT_RECORDING_S", "PREDICTD_ALERT_WEBHOOK_URL",
    "PREDICTD_ALLOW_PICKLE", "PREDICTD_ARTIFACT_DIR", "PREDICTD_ARTIFACT_URL", "PREDICTD_AUTH",
    "PREDICTD_AUTO_MIGRATE", "PREDICTD_BATCH_MAX", "PREDICTD_BATCH_WAIT_MS",
    "PREDICTD_BODY_TIMEOUT_S", "PREDICTD_CACHE", "PREDICTD_CACHE_MAX_ITEMS",
    "PREDICTD_CACHE_TTL_S", "PREDICTD_CANARY_PERCENT", "PREDICTD_CORS_ORIGINS",
    "PREDICTD_DB_CONNECT_TIMEOUT_S", "PREDICTD_DB_MAX_OVERFLOW", "PREDICTD_DB_POOL_PRE_PING",
    "PREDICTD_DB_POOL_SIZE", "PREDICTD_DB_STATEMENT_TIMEOUT_MS", "PREDICTD_DOCS",
    "PREDICTD_DRIFT_DISTANCE", "PREDICTD_DRIFT_MAX_VALUES", "PREDICTD_DRIFT_MIN_ROWS",
    "PREDICTD_DRIFT_P_VALUE", "PREDICTD_DRIFT_SAMPLE", "PREDICTD_DRIFT_SHARE",
    "PREDICTD_DURABILITY", "PREDICTD_FEEDBACK_UNMATCHED_DAYS", "PREDICTD_FORWARDED_ALLOW_IPS",
    "PREDICTD_HEADER_TIMEOUT_S",
    "PREDICTD_HOST", "PREDICTD_INFERENCE_THREADS", "PREDICTD_INPUT_HASH_KEY",
    "PREDICTD_INSECURE_NO_AUTH", "PREDICTD_KEYS_LOOKUP_TIMEOUT_S", "PREDICTD_KEYS_REFRESH_S",
    "PREDICTD_LOG_FORMAT", "PREDICTD_LOG_LEVEL", "PREDICTD_MAX_BATCH", "PREDICTD_MAX_BODY_BYTES",
    "PREDICTD_MAX_CONCURRENCY", "PREDICTD_MAX_TEXT_CHARS", "PREDICTD_METRICS_PUBLIC",
    "PREDICTD_METRICS_REFRESH_S",
    "PREDICTD_MODELS", "PREDICTD_MODEL_NAME", "PREDICTD_MODEL_PATH",
    "PREDICTD_MONITOR_INTERVAL_S", "PREDICTD_MONITOR_WINDOW_H", "PREDICTD_OPENTELEMETRY",
    "PREDICTD_PORT", "PREDICTD_PREDICT_TIMEOUT_S", "PREDICTD_RATE_LIMIT_BURST",
    "PREDICTD_RATE_LIMIT_PER_S", "PREDICTD_RECORD", "PREDICTD_RECORD_BATCH",
    "PREDICTD_RECORD_CONCURRENCY", "PREDICTD_RECORD_FLUSH_MS", "PREDICTD_RECORD_QUEUE_MAX",
    "PREDICTD_RECORD_RETRY_MAX_S", "PREDICTD_REDIS_TIMEOUT_MS", "PREDICTD_REFUSAL_BURST",
    "PREDICTD_REFUSAL_RATE_PER_S", "PREDICTD_REGISTRY_POLL_S", "PREDICTD_SHADOW",
    "PREDICTD_SHADOW_LINGER_MS", "PREDICTD_SHADOW_PROCESS", "PREDICTD_SHADOW_QUEUE_MAX",
    "PREDICTD_SHUTDOWN_DELAY_S", "PREDICTD_SHUTDOWN_FLUSH_S", "PREDICTD_SPOOL_DIR",
    "PREDICTD_SPOOL_FULL_POLICY", "PREDICTD_SPOOL_MAX_BYTES", "PREDICTD_SPOOL_SEGMENT_BYTES",
    "PREDICTD_STORE_INPUTS", "PREDICTD_SYSTEM_METRICS_INTERVAL_S", "PREDICTD_TRUSTED_TYPES",
    "REDIS_URL",
    # issue 16: retraining and the remediation agent
    "PREDICTD_RETRAIN_INTERVAL", "PREDICTD_RETRAIN_SINCE", "PREDICTD_RETRAIN_MIN_LABELLED",
    "PREDICTD_RETRAIN_RECENT_WEIGHT", "PREDICTD_RETRAIN_HOLDOUT", "PREDICTD_AGENT",
    "PREDICTD_AGENT_POLICY", "PREDICTD_AGENT_AUTO_ROLLBACK", "PREDICTD_PROMOTE_MARGIN",
    "PREDICTD_ACTION_TTL", "PREDICTD_AGENT_EXECUTE_INTERVAL_S", "PREDICTD_AGENT_LEASE_S",
    # issue 18: scale out
    "PREDICTD_PARTITION_INTERVAL", "PREDICTD_PARTITIONS_AHEAD", "PREDICTD_ANALYTICS_DATABASE_URL",
    "PREDICTD_ONNX_PROVIDERS",
}  # fmt: skip

# (variable, as set, group, field, as read): a few from each group.
PLACES: list[tuple[str, str, str, str, Any]] = [
    ("DATABASE_URL", "postgresql://u@h/db", "database", "url", "postgresql://u@h/db"),
    ("PREDICTD_DATABASE_URL", "sqlite:///p.db", "database", "url", "sqlite:///p.db"),
    ("PREDICTD_DB_POOL_SIZE", "9", "database", "pool_size", 9),
    ("PREDICTD_AUTO_MIGRATE", "false", "database", "auto_migrate", False),
    ("PREDICTD_PORT", "9001", "server", "port", 9001),
    ("PREDICTD_CORS_ORIGINS", "https://a, https://b", "server", "cors_origins",
     ["https://a", "https://b"]),
    ("PREDICTD_LOG_FORMAT", "text", "server", "log_format", "text"),
    ("PREDICTD_RECORD", "false", "recording", "enabled", False),
    ("PREDICTD_RECORD_BATCH", "7", "recording", "batch", 7),
    ("PREDICTD_SPOOL_DIR", "/var/spool/p", "recording", "spool_dir", Path("/var/spool/p")),
    ("PREDICTD_MODELS", "a, b", "inference", "models", ["a", "b"]),
    ("PREDICTD_INFERENCE_THREADS", "3", "inference", "threads", 3),
    ("PREDICTD_TRUSTED_TYPES", '["x.Y"]', "inference", "trusted_types", ["x.Y"]),
    ("PREDICTD_RETRAIN_INTERVAL", "7d", "retraining", "interval", timedelta(days=7)),
    ("PREDICTD_RETRAIN_INTERVAL", "off", "retraining", "interval", None),
    ("PREDICTD_RETRAIN_SINCE", "36h", "retraining", "since", timedelta(hours=36)),
    ("PREDICTD_ACTION_TTL", "90m", "agent", "action_ttl", timedelta(minutes=90)),
    ("PREDICTD_ACTION_TTL", "3600", "agent", "action_ttl", timedelta(hours=1)),
    ("PREDICTD_AGENT_AUTO_ROLLBACK", "true", "agent", "auto_rollback", True),
    ("PREDICTD_CACHE", "local", "cache", "mode", "local"),
    ("REDIS_URL", "redis://r:6379/1", "cache", "redis_url", "redis://r:6379/1"),
    ("PREDICTD_CACHE_TTL_S", "12", "cache", "ttl_s", 12.0),
    ("PREDICTD_MONITOR_INTERVAL_S", "30", "monitoring", "interval_s", 30.0),
    ("PREDICTD_DRIFT_SHARE", "0.25", "monitoring", "drift_share", 0.25),
    ("PREDICTD_FEEDBACK_UNMATCHED_DAYS", "3", "monitoring", "feedback_unmatched_days", 3),
    ("PREDICTD_ALERT_P99_LATENCY_MS", "250", "alerts", "p99_latency_ms", 250.0),
    ("PREDICTD_ALERT_WEBHOOK_URL", "http://hook", "alerts", "webhook_url", "http://hook"),
    ("PREDICTD_AUTH", "off", "access", "auth", "off"),
    ("PREDICTD_REFUSAL_BURST", "4", "access", "refusal_burst", 4),
    ("predictd_metrics_public", "true", "access", "metrics_public", True),  # any case
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the machine's, and no `.env` but the test's own."""
    for key in list(os.environ):
        if key.upper().startswith("PREDICTD_") or key in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_no_variable_was_renamed() -> None:
    variables = [row.split("`")[1] for row in markdown_table().splitlines() if row[:3] == "| `"]
    assert sorted(variables) == sorted(VARIABLES)  # each once: one field per variable


@pytest.mark.parametrize(("variable", "value", "group", "field", "expected"), PLACES)
def test_a_variable_lands_in_its_group(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, group: str, field: str,
    expected: Any,
) -> None:  # fmt: skip
    monkeypatch.setenv(variable, value)
    assert getattr(getattr(Settings(), group), field) == expected


def test_keywords_take_the_flat_names_and_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://env@h/db")
    monkeypatch.setenv("PREDICTD_DRIFT_SHARE", "0.3")
    settings = Settings(database_url="sqlite:///kw.db", cache="local", record_batch=5)
    assert settings.database.url == "sqlite:///kw.db"
    assert (settings.cache.mode, settings.recording.batch) == ("local", 5)
    assert settings.monitoring.drift_share == 0.3  # the rest still from the environment
    grouped = Settings(database={"url": "sqlite:///g.db"}, monitoring={"drift_min_rows": 5})
    assert (grouped.database.url, grouped.monitoring.drift_min_rows) == ("sqlite:///g.db", 5)


def test_dotenv_and_secret_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PREDICTD_ALERT_ERROR_RATE=0.2\nPREDICTD_PORT=9100\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "PREDICTD_ADMIN_TOKEN").write_text("s3cret")
    (secrets / "PREDICTD_PORT").write_text("9200")
    monkeypatch.setenv("PREDICTD_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("PREDICTD_SHADOW", "true")
    settings = Settings()
    assert settings.alerts.error_rate == 0.2
    assert settings.server.port == 9100  # `.env` before secret files, as before
    assert settings.access.admin_token == SecretStr("s3cret")
    assert settings.inference.shadow is True
    monkeypatch.setenv("PREDICTD_PORT", "9300")  # the environment before `.env`
    assert Settings().server.port == 9300
    assert Settings(_env_file=None).alerts.error_rate == 0.05


@pytest.mark.parametrize(
    ("environment", "lines"),
    [
        ({"PREDICTD_BATCH_MAX": "0"},
         ["PREDICTD_BATCH_MAX: Input should be greater than or equal to 1"]),
        ({"PREDICTD_CACHE": "nope"}, ["PREDICTD_CACHE: Input should be 'off', 'local' or 'redis'"]),
        ({"DATABASE_URL": "mysql://x/y"},
         ["DATABASE_URL: unsupported database 'mysql': use sqlite:///path or "
          "postgresql://user@host:port/db"]),
        ({"PREDICTD_TRUSTED_TYPES": "[1]"},
         ["PREDICTD_TRUSTED_TYPES: Input should be a valid string"]),
        ({"PREDICTD_CACHE": "redis"}, ["PREDICTD_CACHE=redis needs REDIS_URL"]),
        ({"PREDICTD_STORE_INPUTS": "hash"},
         ["PREDICTD_STORE_INPUTS=hash needs PREDICTD_INPUT_HASH_KEY"]),
        ({"DATABASE_URL": "postgresql://u@h/db", "PREDICTD_ANALYTICS_DATABASE_URL": "h:5432"},
         ["PREDICTD_ANALYTICS_DATABASE_URL: expected sqlite:///path or "
          "postgresql://user@host:port/db"]),
        ({"DATABASE_URL": "postgresql://u@h/db",
          "PREDICTD_ANALYTICS_DATABASE_URL": "sqlite:///replica.db"},
         ["PREDICTD_ANALYTICS_DATABASE_URL: expected postgresql://user@host:port/db "
          "(a read replica)"]),
        ({"PREDICTD_PORT": "eighty", "PREDICTD_ALERT_ERROR_RATE": "2"},
         ["PREDICTD_PORT: Input should be a valid integer, unable to parse string as an integer",
          "PREDICTD_ALERT_ERROR_RATE: Input should be less than or equal to 1"]),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], lines: list[str]
) -> None:
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_errors(caught.value) == lines


def test_unknown_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTD_NO_SUCH_THING", "1")
    monkeypatch.setenv("PREDICTD_DATABASE", "not a group")  # a group's name is no variable
    assert Settings(no_such_thing=1).database == Settings().database


def test_replace_changes_only_what_it_names() -> None:
    settings = Settings(port=9000)
    changed = settings.replace(host="0.0.0.0", insecure_no_auth=True)
    assert (changed.server.host, changed.server.port) == ("0.0.0.0", 9000)
    assert changed.access.insecure_no_auth is True
    assert (settings.server.host, settings.access.insecure_no_auth) == ("127.0.0.1", False)
    with pytest.raises(TypeError, match="no such settings: hots"):
        settings.replace(hots="0.0.0.0")


def test_workers_receive_the_settings_whole() -> None:
    """What uvicorn pickles into each worker carries the command's settings, not variables
    for the worker to read again."""
    settings = Settings(admin_token="t", model_name="m", shutdown_delay_s=1.5, port=9000)
    config = pickle.loads(pickle.dumps(ServerConfig(settings, workers=2)))
    assert isinstance(config, ServerConfig)
    assert config.settings == settings
    assert config.header_timeout_s == settings.server.header_timeout_s
    assert (config.port, config.workers) == (9000, 2)


def test_every_group_documents_itself() -> None:
    for group in GROUPS.values():
        assert group.__doc__
        assert all(info.description for info in group.model_fields.values())
