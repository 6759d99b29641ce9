"""JSON logging that carries the request id, and the Prometheus collectors.

Collectors live on a registry injected by the app factory (never the global one), so two apps
in one process — tests do this — never share counters. Under ``serve --workers N`` the
samples go through prometheus-client's multiprocess files instead (worker_metrics.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

from predictd import worker_metrics

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "predictd_request_id", default=None
)

# Deciles, finer near certainty where most confident classifiers answer.
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


_SECRETS = (
    (re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),
    (
        re.compile(
            r"(?i)(\b(?:authorization|password|passwd|secret|token)\b[\"']?\s*[:=]\s*[\"']?)"
            r"[^\s\"',;}]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"(://[^:/@\s]*:)[^@\s]+@"), r"\1[redacted]@"),  # user:password@host
    # A token given as the user name alone (https://ghp_…@host): long, unlike a login.
    (re.compile(r"(://)[A-Za-z0-9_.~%+-]{20,}@"), r"\1[redacted]@"),
    # Signed URLs: an Azure SAS, S3 and GCS presigned signatures, OAuth access tokens.
    (
        re.compile(
            r"(?i)([?&](?:sig|x-amz-signature|x-amz-security-token|x-goog-signature|"
            r"access_token)=)[^&\s\"']+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"\bpdk_[A-Za-z0-9_-]{8,}"), "pdk_[redacted]"),  # an API key on its own
)


def redact(text: str) -> str:
    """Credentials out of a line: bearer tokens, authorization/password values, passwords
    in URLs, API keys. Every log line and readiness detail goes through this."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def describe_error(exc: BaseException, limit: int = 4000) -> str:
    """An error as stored or sent on (an action's error, the audit row of a scheduled run):
    predictd's own message, else type and text, with credentials taken out."""
    from predictd.errors import PredictdError

    text = exc.message if isinstance(exc, PredictdError) else f"{type(exc).__name__}: {exc}"
    return redact(text)[:limit]


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept, the request id is added."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        payload.update(_extras(record))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(payload, default=str).decode())


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STD_ATTRS and not key.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """For humans: the message, then the extra= fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return redact(line)
        fields = " ".join(f"{key}={value}" for key, value in extras.items())
        head, sep, rest = line.partition("\n")  # keep a traceback below the fields
        return redact(f"{head} {fields}{sep}{rest}")


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("predictd")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


@dataclass(frozen=True)
class Metrics:
    """Every collector predictd exports, bound to one registry."""

    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    predictions: Counter
    confidence: Histogram
    rejected_inputs: Counter
    recorder_queue_depth: Gauge
    spool_bytes: Gauge
    db_write_errors: Counter
    records_shipped: Counter
    records_unrecorded: Counter
    records_quarantined: Counter
    model_load_failures: Counter
    served_version: Gauge
    shadow_predictions: Counter
    shadow_dropped: Counter
    alerts_active: Gauge
    agent_actions: Gauge
    batch_size: Histogram
    batch_wait: Histogram
    cache_lookups: Counter
    key_lookups: Counter
    key_snapshot_stale: Gauge
    key_snapshot_write_failures: Counter
    feedback_received: Counter
    feedback_matched: Counter
    db_pool_ready: Gauge
    db_pool_in_use: Gauge
    # Gauges read at scrape time (single process) or set every second (workers).
    samplers: list[tuple[Gauge, Callable[[], float]]] = field(default_factory=list)
    # Collectors whose values every process reads alike (the database's latest rows): a
    # scrape takes them from the process that answers it, never added up across workers.
    collectors: list[Collector] = field(default_factory=list)

    def sample(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Keep ``gauge`` equal to ``read()`` at no cost to the request path."""
        if worker_metrics.directory() is None:
            gauge.set_function(read)
        else:  # a scrape reaches one worker: each sets its own value for the others to add
            self.samplers.append((gauge, read))

    def collect_from(self, collector: Collector) -> None:
        """Export ``collector``'s families as they are, whichever process is scraped."""
        if worker_metrics.directory() is None:
            self.registry.register(collector)
        else:
            self.collectors.append(collector)

    def stop_collecting(self, collector: Collector) -> None:
        if collector in self.collectors:
            self.collectors.remove(collector)
        else:
            self.registry.unregister(collector)

    def refresh(self) -> None:
        for gauge, read in self.samplers:
            gauge.set(read())

    async def refresh_forever(self, interval_s: float = 1.0) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(interval_s)

    def exposition(self) -> bytes:
        """The Prometheus text: this process's registry, or all workers' samples added up."""
        shared = worker_metrics.directory()
        if shared is None:
            return generate_latest(self.registry)
        self.refresh()
        return worker_metrics.collect(shared, self.collectors)

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=reg,
            http_requests=Counter(
                "predictd_http_requests",
                "HTTP requests by route template, method and status.",
                ["endpoint", "method", "status"],
                registry=reg,
            ),
            http_latency=Histogram(
                "predictd_http_request_duration_seconds",
                "HTTP request latency by route template and status.",
                ["endpoint", "status"],
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            cache_lookups=Counter(
                "predictd_cache_lookups",
                "Prediction cache lookups by model, where they were answered (redis, or local: "
                "the LRU, also while Redis is away) and result (hit, miss).",
                ["model", "source", "result"],
                registry=reg,
            ),
            key_lookups=Counter(
                "predictd_key_lookups",
                "API keys looked up in the database because this server did not know them, by "
                "result (found, revoked, unknown, failed: the database did not answer in time).",
                ["result"],
                registry=reg,
            ),
            key_snapshot_stale=Gauge(
                "predictd_key_snapshot_stale",
                "1 while the key snapshot beside the spool is older than the key table this "
                "server read (its last write failed): a restart during a database outage would "
                "serve the older table. 0 when it matches (or no snapshot is kept).",
                multiprocess_mode="livemax",
                registry=reg,
            ),
            key_snapshot_write_failures=Counter(
                "predictd_key_snapshot_write_failures",
                "Failed writes of the key snapshot beside the spool.",
                registry=reg,
            ),
            batch_size=Histogram(
                "predictd_model_batch_size",
                "Items per model call made by the micro-batcher.",
                ["model"],
                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                registry=reg,
            ),
            batch_wait=Histogram(
                "predictd_model_batch_wait_seconds",
                "How long the oldest item of a micro-batch waited for its model call.",
                ["model"],
                buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
                registry=reg,
            ),
            predictions=Counter(
                "predictd_predictions",
                "Predictions answered, by model, version, variant and predicted label.",
                ["model", "version", "variant", "label"],
                registry=reg,
            ),
            confidence=Histogram(
                "predictd_prediction_confidence_ratio",
                "Confidence of the answered predictions (0..1), by model and version; "
                "sum / count is the average confidence.",
                ["model", "version"],
                buckets=_CONFIDENCE_BUCKETS,
                registry=reg,
            ),
            feedback_received=Counter(
                "predictd_feedback_received",
                "Ground-truth answers received on POST /feedback and /feedback/batch.",
                registry=reg,
            ),
            feedback_matched=Counter(
                "predictd_feedback_matched",
                "Answers received whose prediction row the database already held (the others "
                "wait for their row, which the recorder may still be shipping).",
                registry=reg,
            ),
            db_pool_ready=Gauge(
                "predictd_db_pool_ready",
                "1 while the database answered this server's last read (every few seconds), "
                "else 0; across workers, 0 when any live worker could not reach it.",
                multiprocess_mode="livemin",
                registry=reg,
            ),
            db_pool_in_use=Gauge(
                "predictd_db_pool_connections_in_use",
                "Connections the database pool has handed out (summed over workers).",
                multiprocess_mode="livesum",
                registry=reg,
            ),
            rejected_inputs=Counter(
                "predictd_rejected_requests",
                "Requests refused before prediction, by error code.",
                ["code"],
                registry=reg,
            ),
            recorder_queue_depth=Gauge(
                "predictd_recorder_queue_depth",
                "Records waiting in memory for the shipper.",
                multiprocess_mode="livesum",
                registry=reg,
            ),
            spool_bytes=Gauge(
                "predictd_spool_bytes",
                "Bytes in the local write-ahead spool not yet confirmed by the database.",
                multiprocess_mode="livesum",
                registry=reg,
            ),
            db_write_errors=Counter(
                "predictd_db_write_errors",
                "Failed attempts to write a batch of records to the database.",
                registry=reg,
            ),
            records_shipped=Counter(
                "predictd_records_shipped",
                "Prediction records committed to the database (duplicates included).",
                registry=reg,
            ),
            records_unrecorded=Counter(
                "predictd_records_unrecorded",
                "Predictions answered without being recorded (shed policy, full spool).",
                registry=reg,
            ),
            records_quarantined=Counter(
                "predictd_records_quarantined",
                "Spool records moved to quarantine because their checksum failed.",
                registry=reg,
            ),
            model_load_failures=Counter(
                "predictd_model_load_failures",
                "Model versions that failed to load, verify or warm up (never served); "
                "reason=tampered when the artifact no longer matches its registered sha256.",
                ["model", "role", "reason"],
                registry=reg,
            ),
            alerts_active=Gauge(
                "predictd_alerts_active",
                "Open (active or acknowledged) alerts by rule and severity, as of the last "
                "monitor run in this process.",
                ["rule", "severity"],
                multiprocess_mode="livemax",
                registry=reg,
            ),
            agent_actions=Gauge(
                "predictd_agent_actions",
                "Remediation actions by status (pending, approved, running, succeeded, ...), "
                "as this process last counted them (its executor loop and its changes).",
                ["status"],
                multiprocess_mode="livemax",
                registry=reg,
            ),
            served_version=Gauge(
                "predictd_served_version",
                "The version each model name serves, as production or candidate (0: none).",
                ["model", "role"],
                multiprocess_mode="livemax",
                registry=reg,
            ),
            shadow_predictions=Counter(
                "predictd_shadow_predictions",
                "Predictions made by candidates on shadowed production inputs.",
                registry=reg,
            ),
            shadow_dropped=Counter(
                "predictd_shadow_dropped",
                "Shadow predictions skipped: queue full, schema mismatch or candidate error.",
                registry=reg,
            ),
        )


def uvicorn_log_config(level: str, fmt: str) -> dict[str, object]:
    """uvicorn's own loggers in the same format as predictd's (one JSON object a line)."""
    formatter: dict[str, str] = (
        {"()": "predictd.observability.JsonFormatter"}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }
