"""The one place predictd reads its configuration from.

``Settings`` holds one group per concern (``settings.database``, ``settings.recording``, ...),
and each component is given only the group it works with. The operator still sets flat
variables: every field carries its variable as its ``validation_alias`` (``PREDICTD_`` and the
old field name; ``DATABASE_URL`` and ``REDIS_URL`` are also read without the prefix), and the
sources read those variables and hand them on grouped. A ``.env`` file in the working
directory is honoured, and any variable can be read from a file in ``PREDICTD_SECRETS_DIR``
(Kubernetes/Docker secrets). ``Settings(database_url=...)`` takes the same flat names (the
variable without ``PREDICTD_``). The README's configuration table is generated from the
attribute docstrings below.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from predictd.durations import format_duration, parse_duration, seconds_span

Durability = Literal["memory", "process", "strict"]
SpoolFullPolicy = Literal["reject", "shed"]
# libpq's TLS parameters a PostgreSQL URL may carry (db/tls.py translates them for asyncpg).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SSL_FILE_PARAMS = ("sslrootcert", "sslcert", "sslkey")
PREFIX = "PREDICTD_"


class _Group(BaseModel):
    """A settings group: validated like the flat settings were (defaults included), filled by
    field name from the grouped sources or by its variables' names."""

    model_config = ConfigDict(
        extra="ignore",
        use_attribute_docstrings=True,
        validate_default=True,
        validate_by_name=True,
        validate_by_alias=True,
    )


class DatabaseSettings(_Group):
    """Where predictions and the registry live, and how connections to it behave."""

    url: str = Field(
        default="sqlite:///./predictd.db",
        validation_alias=AliasChoices("DATABASE_URL", "PREDICTD_DATABASE_URL"),
    )
    """Where predictions and the registry live: `sqlite:///path` or
    `postgresql://user:password@host:port/db` (the async driver is chosen internally), with
    libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` query parameters if TLS is
    needed (`?sslmode=require`)."""

    analytics_url: str | None = Field(
        default=None, validation_alias="PREDICTD_ANALYTICS_DATABASE_URL"
    )
    """PostgreSQL: a read replica for analytics, drift and performance reads (the dashboard,
    /analytics, the monitor pass's measurements), with the same URL rules as `DATABASE_URL`.
    Writes, the registry, keys, feedback and alerts stay on `DATABASE_URL`. A replica's lag
    shows as predictions arriving a little later in analytics."""

    auto_migrate: bool | None = Field(default=None, validation_alias="PREDICTD_AUTO_MIGRATE")
    """Apply database migrations at startup. Unset means yes on SQLite, no on PostgreSQL
    (run `predictd db upgrade` there, e.g. as a Kubernetes Job)."""

    pool_size: int = Field(default=5, ge=1, validation_alias="PREDICTD_DB_POOL_SIZE")
    """Connections kept open per process (PostgreSQL)."""

    max_overflow: int = Field(default=5, ge=0, validation_alias="PREDICTD_DB_MAX_OVERFLOW")
    """Extra connections allowed beyond the pool under load (PostgreSQL)."""

    pool_pre_ping: bool = Field(default=True, validation_alias="PREDICTD_DB_POOL_PRE_PING")
    """Check a pooled connection before use, so a restarted database is noticed at once."""

    connect_timeout_s: float = Field(
        default=5.0, gt=0, validation_alias="PREDICTD_DB_CONNECT_TIMEOUT_S"
    )
    """Seconds to wait for a new database connection."""

    statement_timeout_ms: int = Field(
        default=30_000, ge=0, validation_alias="PREDICTD_DB_STATEMENT_TIMEOUT_MS"
    )
    """Server-side statement timeout in milliseconds (PostgreSQL; 0 disables it)."""

    partition_interval: Literal["day", "week", "month"] = Field(
        default="month", validation_alias="PREDICTD_PARTITION_INTERVAL"
    )
    """PostgreSQL: the time span of each partition of `predictions`. New partitions are made
    ahead by the monitor pass and `predictd db partitions ensure`; retention drops whole
    partitions. A changed interval applies to partitions made from then on."""

    partitions_ahead: int = Field(
        default=3, ge=1, le=400, validation_alias="PREDICTD_PARTITIONS_AHEAD"
    )
    """PostgreSQL: how many partitions beyond the current one are kept made ahead (a row of a
    period with none still lands, in the default partition, and moves when it is made)."""

    @model_validator(mode="after")
    def _replica_beside_postgres(self) -> Self:
        if self.analytics_url is not None and self.is_sqlite:
            raise ValueError(
                "PREDICTD_ANALYTICS_DATABASE_URL is a PostgreSQL read replica of a "
                "PostgreSQL DATABASE_URL"
            )
        return self

    @field_validator("analytics_url")
    @classmethod
    def _replica_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cls._supported_database(value)
        if not value.startswith("postgres"):
            raise ValueError("expected postgresql://user@host:port/db (a read replica)")
        return value

    @field_validator("url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        """A URL the engine cannot use fails here, as a setting, not later as a traceback."""
        if "://" not in value:
            raise ValueError("expected sqlite:///path or postgresql://user@host:port/db")
        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unsupported database {backend!r}: use sqlite:///path or "
                "postgresql://user@host:port/db"
            )
        for name in ("sslmode", *SSL_FILE_PARAMS):
            if isinstance(url.query.get(name), tuple):
                raise ValueError(f"{name} is given more than once")
        mode = url.query.get("sslmode")
        if mode is not None and mode not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}, not {mode!r}")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def migrate_on_startup(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


class ServerSettings(_Group):
    """The HTTP server: where it listens, what it accepts, how it stops and logs."""

    host: str = Field(default="127.0.0.1", validation_alias="PREDICTD_HOST")
    """Address `predictd serve` binds to."""

    port: int = Field(default=8000, ge=1, le=65535, validation_alias="PREDICTD_PORT")
    """Port `predictd serve` listens on."""

    max_concurrency: int = Field(default=512, ge=0, validation_alias="PREDICTD_MAX_CONCURRENCY")
    """Requests one process works on at once; more get 503 with Retry-After instead of queueing
    without bound (probes and /metrics are exempt). 0 = no cap."""

    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, validation_alias="PREDICTD_MAX_BODY_BYTES"
    )
    """Largest accepted request body; larger bodies get 413."""

    body_timeout_s: float = Field(
        default=10.0, gt=0, le=3600, validation_alias="PREDICTD_BODY_TIMEOUT_S"
    )
    """Longest a request body may take to arrive once its headers are in; a slower one gets
    408 `body_timeout`. No concurrency slot is held while a body arrives."""

    header_timeout_s: float = Field(
        default=10.0, gt=0, le=3600, validation_alias="PREDICTD_HEADER_TIMEOUT_S"
    )
    """Longest `predictd serve` waits for a request's headers, from the connection's start or
    its previous answer: then 408 `header_timeout` (or, if nothing came, a plain close) and
    the connection is closed. Headers over 64 KiB get 431; an idle kept-alive connection is
    closed after 5 s."""

    shutdown_delay_s: float = Field(default=5.0, ge=0, validation_alias="PREDICTD_SHUTDOWN_DELAY_S")
    """After SIGTERM, seconds /ready answers 503 while requests are still served, so load
    balancers stop routing here before the listener closes (every worker under --workers)."""

    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="PREDICTD_CORS_ORIGINS"
    )
    """Comma-separated origins allowed to call the API from a browser (CORS). Empty: no CORS
    headers at all, so other sites' pages cannot read answers."""

    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        validation_alias="PREDICTD_FORWARDED_ALLOW_IPS",
    )
    """Comma-separated addresses or networks (CIDR) of the proxies whose `X-Forwarded-For` and
    `X-Forwarded-Proto` are believed: the client address in rate limits, records and logs is
    then the one they forwarded. Behind a Kubernetes ingress, the ingress controller's pod
    network. `*` believes anyone, which lets any client choose its own address."""

    docs: bool = Field(default=True, validation_alias="PREDICTD_DOCS")
    """Serve /docs, /redoc and /openapi.json. Turn off on an internet-facing deployment that
    does not want to describe itself."""

    opentelemetry: bool = Field(default=False, validation_alias="PREDICTD_OPENTELEMETRY")
    """Trace and measure every request with OpenTelemetry. With `predictd[otel]` installed and
    no providers configured elsewhere, they are exported over OTLP/HTTP as the standard
    `OTEL_*` variables say (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...). Off,
    requests pay nothing for it."""

    log_level: str = Field(default="INFO", validation_alias="PREDICTD_LOG_LEVEL")
    """Python log level."""

    log_format: Literal["json", "text"] = Field(
        default="json", validation_alias="PREDICTD_LOG_FORMAT"
    )
    """`json` (one object a line, with request_id) or `text` for humans."""

    @field_validator("cors_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return _split_names(value)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        # uvicorn would take a typo as a literal host name and silently believe no proxy.
        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"not an IP address or network: {entry!r}") from None
        return value


class RecordingSettings(_Group):
    """What is kept of each prediction, and how it travels through the spool to the database."""

    enabled: bool = Field(default=True, validation_alias="PREDICTD_RECORD")
    """Record predictions at all. Off only for benchmarks and dry runs: nothing is kept."""

    durability: Durability = Field(default="process", validation_alias="PREDICTD_DURABILITY")
    """When a prediction is answered: `memory` before any I/O (kill -9 may lose queued
    records), `process` after the write to the local spool (a process crash loses nothing),
    `strict` after that write is fsync'ed with group commit (a power cut loses nothing)."""

    store_inputs: Literal["full", "hash", "none"] = Field(
        default="full", validation_alias="PREDICTD_STORE_INPUTS"
    )
    """What each prediction row keeps of its input: `full`; `hash`, a keyed HMAC-SHA256 of it
    (equal inputs still match, nobody without PREDICTD_INPUT_HASH_KEY can test a guess; drift
    of inputs cannot be measured); or `none`."""

    input_hash_key: SecretStr | None = Field(
        default=None, validation_alias="PREDICTD_INPUT_HASH_KEY"
    )
    """The secret key of `PREDICTD_STORE_INPUTS=hash`; the same on every replica (required
    with hash)."""

    spool_dir: Path = Field(default=Path(".predictd/spool"), validation_alias="PREDICTD_SPOOL_DIR")
    """Local write-ahead spool; each server process claims a locked subdirectory."""

    spool_max_bytes: int = Field(
        default=1 << 30, ge=1 << 16, validation_alias="PREDICTD_SPOOL_MAX_BYTES"
    )
    """Spool size limit; reaching it applies `spool_full_policy`."""

    spool_segment_bytes: int = Field(
        default=64 << 20, ge=1 << 12, validation_alias="PREDICTD_SPOOL_SEGMENT_BYTES"
    )
    """Size at which the spool starts a new segment file."""

    spool_full_policy: SpoolFullPolicy = Field(
        default="reject", validation_alias="PREDICTD_SPOOL_FULL_POLICY"
    )
    """With a full spool: `reject` answers 503 with Retry-After (nothing answered is lost),
    `shed` answers without recording and counts every such prediction."""

    batch: int = Field(default=1000, ge=1, validation_alias="PREDICTD_RECORD_BATCH")
    """Most rows the recorder writes to the database in one transaction."""

    concurrency: int = Field(default=2, ge=1, le=16, validation_alias="PREDICTD_RECORD_CONCURRENCY")
    """Batches written at once, each on its own connection (commits overlap the next COPY)."""

    flush_ms: int = Field(default=50, ge=0, validation_alias="PREDICTD_RECORD_FLUSH_MS")
    """Longest a recorded prediction waits for its batch to fill before being shipped."""

    queue_max: int = Field(default=50_000, ge=1, validation_alias="PREDICTD_RECORD_QUEUE_MAX")
    """Records held in memory for the shipper; beyond it they are read back from the spool
    (in `memory` durability, beyond it `spool_full_policy` applies)."""

    retry_max_s: float = Field(default=30.0, gt=0, validation_alias="PREDICTD_RECORD_RETRY_MAX_S")
    """Longest back-off between attempts while the database is failing."""

    shutdown_flush_s: float = Field(
        default=10.0, ge=0, validation_alias="PREDICTD_SHUTDOWN_FLUSH_S"
    )
    """On shutdown, seconds spent shipping what is queued; the rest stays in the spool."""

    @model_validator(mode="after")
    def _hash_needs_a_key(self) -> Self:
        if self.store_inputs == "hash" and self.input_hash_key is None:
            raise ValueError("PREDICTD_STORE_INPUTS=hash needs PREDICTD_INPUT_HASH_KEY")
        return self


class InferenceSettings(_Group):
    """Which models are served, how their artifacts are stored and trusted, and how they are
    called."""

    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="PREDICTD_MODELS"
    )
    """Model names to serve, comma-separated; the first answers `/predict`, the others
    `/models/{name}/predict`. Unset: every name with a production version (the default is
    the `--model` one, else the first by name)."""

    model_name: str | None = Field(default=None, validation_alias="PREDICTD_MODEL_NAME")
    """Name the `--model` artifact is registered under (default: its file name without suffix);
    without `--model`, the model `/predict` answers with when `PREDICTD_MODELS` is unset."""

    model_path: Path | None = Field(default=None, validation_alias="PREDICTD_MODEL_PATH")
    """An artifact to serve (registered as production on startup); set by `predictd serve
    --model`."""

    canary_percent: float = Field(
        default=0.0, ge=0, le=100, validation_alias="PREDICTD_CANARY_PERCENT"
    )
    """Share of each model's traffic answered by its candidate (newest `staging` version);
    requests with the same `key` always get the same version."""

    shadow: bool = Field(default=False, validation_alias="PREDICTD_SHADOW")
    """Also run each model's candidate on the production traffic, off the request path; its
    answers are recorded with `variant=shadow` and never returned."""

    shadow_queue_max: int = Field(
        default=10_000, ge=1, validation_alias="PREDICTD_SHADOW_QUEUE_MAX"
    )
    """Items waiting for the shadow model; beyond it shadow work is dropped and counted, so the
    candidate can never slow production."""

    shadow_process: bool = Field(default=False, validation_alias="PREDICTD_SHADOW_PROCESS")
    """Run the shadow candidate in a lower-priority worker process instead of a thread, so its
    computing never holds the serving process's GIL: for candidates much heavier than
    production. Costs a process, the model's memory and some pickling per call: for a light
    candidate (the demo model takes ~1 ms per 30 inputs) the thread is as good."""

    shadow_linger_ms: float = Field(
        default=100.0, ge=0, le=10_000, validation_alias="PREDICTD_SHADOW_LINGER_MS"
    )
    """How long the shadow worker waits after the first queued request, so many requests share
    one vectorised candidate call instead of costing one call each (0 = call at once)."""

    registry_poll_s: float = Field(default=5.0, gt=0, validation_alias="PREDICTD_REGISTRY_POLL_S")
    """How often a server re-reads the registry for changes made elsewhere (on PostgreSQL,
    LISTEN/NOTIFY usually brings them at once; this poll is the guarantee)."""

    artifact_dir: Path = Field(
        default=Path(".predictd/artifacts"), validation_alias="PREDICTD_ARTIFACT_DIR"
    )
    """Content-addressed artifact store, and the manifest of the last loaded model used when
    the database is down at startup."""

    artifact_url: str | None = Field(default=None, validation_alias="PREDICTD_ARTIFACT_URL")
    """An fsspec URL to store artifacts in instead of `PREDICTD_ARTIFACT_DIR` (`s3://bucket/
    prefix`, `gs://`, `az://`; needs `pip install predictd[fsspec]` and the backend's package).
    Downloads are cached in `PREDICTD_ARTIFACT_DIR` and verified like local files."""

    allow_pickle: bool = Field(default=False, validation_alias="PREDICTD_ALLOW_PICKLE")
    """Accept joblib/pickle artifacts (`.joblib`, `.pkl`). Loading a pickle runs code from the
    file: enable only for artifacts you built; the registry's sha256 is still verified first."""

    trusted_types: list[str] = Field(
        default_factory=list, validation_alias="PREDICTD_TRUSTED_TYPES"
    )
    """Extra exact type or function names trusted when loading skops artifacts (JSON list),
    beyond predictd's allow-list of scikit-learn, NumPy and SciPy classes. Loading them runs
    their code: list only what you trust; each load relying on one is logged."""

    max_batch: int = Field(default=100, ge=1, validation_alias="PREDICTD_MAX_BATCH")
    """Most items in one `POST /batch`."""

    max_text_chars: int = Field(default=10_000, ge=1, validation_alias="PREDICTD_MAX_TEXT_CHARS")
    """Longest accepted `text` input."""

    predict_timeout_s: float = Field(
        default=10.0, gt=0, validation_alias="PREDICTD_PREDICT_TIMEOUT_S"
    )
    """A model call that takes longer answers 504."""

    threads: int = Field(default=2, ge=1, validation_alias="PREDICTD_INFERENCE_THREADS")
    """Worker threads running model calls off the event loop."""

    batch_max: int = Field(default=32, ge=1, validation_alias="PREDICTD_BATCH_MAX")
    """Most single predictions gathered into one model call (1 = no micro-batching)."""

    batch_wait_ms: float = Field(
        default=2.0, ge=0, le=1000, validation_alias="PREDICTD_BATCH_WAIT_MS"
    )
    """Longest a prediction waits for others to share its model call; only while requests
    arrive together (a lone request is sent at once)."""

    onnx_providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        validation_alias="PREDICTD_ONNX_PROVIDERS",
    )
    """ONNX Runtime execution providers for ONNX and transformer models, comma-separated in
    order of preference, e.g. `CUDAExecutionProvider,CPUExecutionProvider` (needs
    `onnxruntime-gpu` and a GPU); one this build lacks is skipped with a warning, the CPU is
    always the last resort, and `/model-info` shows those in use."""

    @field_validator("models", "onnx_providers", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        return _split_names(value)

    @field_validator("onnx_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,63}ExecutionProvider", name):
                raise ValueError(
                    f"{name!r} is not an execution provider name (e.g. CUDAExecutionProvider)"
                )
        return value


class CacheSettings(_Group):
    """The prediction cache, and the Redis the replicas share."""

    mode: Literal["off", "local", "redis"] = Field(default="off", validation_alias="PREDICTD_CACHE")
    """Prediction cache: the same input to the same model version is answered from the cache
    (still with its own prediction id and record, `cache_hit=true`). `local`: an LRU in each
    process; `redis`: shared through REDIS_URL, the local LRU while Redis is away."""

    ttl_s: float = Field(default=300.0, gt=0, validation_alias="PREDICTD_CACHE_TTL_S")
    """How long a cached answer is reused."""

    max_items: int = Field(default=10_000, ge=1, validation_alias="PREDICTD_CACHE_MAX_ITEMS")
    """Answers kept in each process's LRU."""

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PREDICTD_REDIS_URL")
    )
    """Redis shared by the replicas (rate limits; the prediction cache). Unset, or down: each
    process keeps its own."""

    redis_timeout_ms: float = Field(
        default=50.0, gt=0, validation_alias="PREDICTD_REDIS_TIMEOUT_MS"
    )
    """How long a request waits for Redis before going on without it; after a failure Redis
    is left alone for a few seconds (circuit breaker)."""

    @model_validator(mode="after")
    def _redis_cache_needs_redis(self) -> Self:
        if self.mode == "redis" and self.redis_url is None:
            raise ValueError("PREDICTD_CACHE=redis needs REDIS_URL")
        return self

    @property
    def redis_timeout_s(self) -> float:
        return self.redis_timeout_ms / 1000


class MonitoringSettings(_Group):
    """The monitor (performance and drift of what was answered) and the samples it keeps."""

    interval_s: float = Field(default=0.0, ge=0, validation_alias="PREDICTD_MONITOR_INTERVAL_S")
    """Run the monitor (performance, drift, alert rules) inside the server this often (0 =
    never; run `predictd monitor run` from cron instead). Each pass stores one performance row
    and one drift report per version that answered."""

    window_h: float = Field(default=24.0, gt=0, validation_alias="PREDICTD_MONITOR_WINDOW_H")
    """How far back the in-server monitor looks."""

    drift_share: float = Field(default=0.5, gt=0, le=1, validation_alias="PREDICTD_DRIFT_SHARE")
    """A window's inputs have drifted when at least this share of the features tested drift."""

    drift_p_value: float = Field(
        default=0.05, gt=0, lt=1, validation_alias="PREDICTD_DRIFT_P_VALUE"
    )
    """With a small reference or a small window (<= 1,000 rows): a feature drifts when its
    Kolmogorov-Smirnov or chi-square test gives a p-value below this."""

    drift_distance: float = Field(default=0.1, gt=0, validation_alias="PREDICTD_DRIFT_DISTANCE")
    """With a larger reference and window: a feature drifts when its normalised Wasserstein
    distance (numeric) or Jensen-Shannon distance (categorical) reaches this."""

    drift_min_rows: int = Field(default=200, ge=1, validation_alias="PREDICTD_DRIFT_MIN_ROWS")
    """Fewer answered predictions than this in the window: the drift report says there is too
    little data instead of testing (no false alarms from a handful of requests)."""

    drift_max_values: int = Field(
        default=2_000_000, ge=10_000, validation_alias="PREDICTD_DRIFT_MAX_VALUES"
    )
    """Feature values (rows x features) a drift report counts on PostgreSQL before it counts a
    fixed pseudo-random sample of rows (by a hash of the id) instead; reading a value out of
    stored JSON costs ~0.1-0.3 µs, and a sample this size moves bin shares well under 1%."""

    drift_sample: int = Field(default=5000, ge=100, validation_alias="PREDICTD_DRIFT_SAMPLE")
    """Most recent values per feature a Kolmogorov-Smirnov test compares against a small
    reference; bin counts always cover the whole window."""

    system_metrics_interval_s: float = Field(
        default=60.0, ge=0, validation_alias="PREDICTD_SYSTEM_METRICS_INTERVAL_S"
    )
    """Sample this server's CPU, memory, event-loop lag, recorder backlog and pool use into
    `system_metrics` this often (0 = never); `predictd db cleanup` applies the retention."""

    metrics_refresh_s: float = Field(
        default=5.0, gt=0, validation_alias="PREDICTD_METRICS_REFRESH_S"
    )
    """Every process reads the latest monitor rows (accuracy, drift, shadow agreement) for
    /metrics this often, and reports whether the database answered (`predictd_db_pool_ready`);
    a scrape never waits on the database."""

    feedback_unmatched_days: int = Field(
        default=7, ge=1, validation_alias="PREDICTD_FEEDBACK_UNMATCHED_DAYS"
    )
    """Feedback whose prediction never arrived is kept this long (it may still be on its way
    through a spool), then `predictd db cleanup` deletes it."""


class AlertSettings(_Group):
    """When an alert opens, and where it is sent."""

    accuracy_min: float | None = Field(
        default=None, ge=0, le=1, validation_alias="PREDICTD_ALERT_ACCURACY_MIN"
    )
    """Alert when a version's realised accuracy falls below this (unset: no floor)."""

    accuracy_drop: float = Field(
        default=0.1, ge=0, le=1, validation_alias="PREDICTD_ALERT_ACCURACY_DROP"
    )
    """Alert when realised accuracy is more than this below the accuracy the version was
    registered with (`models register --metrics-json`)."""

    p99_latency_ms: float = Field(
        default=1000.0, gt=0, validation_alias="PREDICTD_ALERT_P99_LATENCY_MS"
    )
    """Alert when a model's p99 latency over the monitor window exceeds this."""

    error_rate: float = Field(
        default=0.05, ge=0, le=1, validation_alias="PREDICTD_ALERT_ERROR_RATE"
    )
    """Alert when more than this share of a model's predictions fail."""

    min_predictions: int = Field(
        default=100, ge=1, validation_alias="PREDICTD_ALERT_MIN_PREDICTIONS"
    )
    """Latency and error-rate alerts wait for this many predictions in the window."""

    recording_s: float = Field(default=60.0, gt=0, validation_alias="PREDICTD_ALERT_RECORDING_S")
    """Alert when the database has been unreachable, or the recorder's backlog has kept
    growing, for this long. Decided by each server itself, since the database is what fails."""

    webhook_url: str | None = Field(default=None, validation_alias="PREDICTD_ALERT_WEBHOOK_URL")
    """POSTed `{"event": "opened"|"resolved", "alert": {...}}` for each new and resolved
    alert, with retries."""


def _duration(value: object) -> object:
    """'7d', '24h', '30m', '45s' (or seconds) for a duration setting; 'off' or '' for none."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "off", "none", "0"):
            return None
        if text.replace(".", "", 1).isdigit():
            return seconds_span(float(text))
        return parse_duration(text)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
OptionalDuration = Annotated[timedelta | None, BeforeValidator(_duration)]


class RetrainingSettings(_Group):
    """`predictd train`: retraining a model from its training data and labelled feedback."""

    interval: OptionalDuration = Field(default=None, validation_alias="PREDICTD_RETRAIN_INTERVAL")
    """Retrain every model that has a production version this often inside the server, one
    replica at a time (e.g. `7d`; unset = never: run `predictd train` from cron instead). Each
    run registers an unstaged candidate, which takes no traffic; nothing is staged or promoted
    by it."""

    since: Duration = Field(default=timedelta(days=30), validation_alias="PREDICTD_RETRAIN_SINCE")
    """How far back labelled predictions are read (`--since`)."""

    min_labelled: int = Field(default=200, ge=1, validation_alias="PREDICTD_RETRAIN_MIN_LABELLED")
    """Fewer labelled predictions with stored inputs than this in the window: no candidate."""

    recent_weight: float = Field(
        default=20.0, gt=0, validation_alias="PREDICTD_RETRAIN_RECENT_WEIGHT"
    )
    """Sample weight of a recent labelled row against a row of the registered training data,
    so new labels outweigh data a concept shift contradicts (`--recent-weight`). 20: the
    smallest weight that won back at least 80% of the accuracy a concept shift took on every
    seed of `benchmarks/retrain_recovery.py` (400 labels against 1,000 training rows)."""

    holdout: float = Field(default=0.2, gt=0, lt=1, validation_alias="PREDICTD_RETRAIN_HOLDOUT")
    """Share of the labelled rows, the newest, kept out of fitting to score the candidate
    and the production version on."""


class AgentSettings(_Group):
    """The remediation agent: proposals from alerts, approval, and the executor."""

    enabled: bool = Field(default=True, validation_alias="PREDICTD_AGENT")
    """Turn alerts into proposed actions after each monitor pass, and execute approved ones
    inside the server."""

    policy: Path | None = Field(default=None, validation_alias="PREDICTD_AGENT_POLICY")
    """A YAML or JSON file overriding the policy's defaults (which alerts propose what, and
    how risky each action is)."""

    auto_rollback: bool = Field(default=False, validation_alias="PREDICTD_AGENT_AUTO_ROLLBACK")
    """Execute a proposed rollback without waiting for approval."""

    promote_margin: float = Field(
        default=0.01, ge=0, le=1, validation_alias="PREDICTD_PROMOTE_MARGIN"
    )
    """How much better (accuracy) a candidate must score than production, on the same rows,
    before the agent shadows it and then proposes promoting it."""

    action_ttl: Duration = Field(default=timedelta(days=3), validation_alias="PREDICTD_ACTION_TTL")
    """A proposal nobody approved or rejected in this long expires."""

    execute_interval_s: float = Field(
        default=5.0, ge=0, validation_alias="PREDICTD_AGENT_EXECUTE_INTERVAL_S"
    )
    """How often the server looks for approved actions to execute (0 = never; run `predictd
    actions run` instead)."""

    lease_s: float = Field(default=900.0, gt=0, validation_alias="PREDICTD_AGENT_LEASE_S")
    """How long a running action stays claimed without word from its executor (which renews
    the claim while it works): a replica that crashed mid-action loses the action after this
    and another takes it over."""


class AccessSettings(_Group):
    """Who may call what: authentication, API keys and the request limits per client."""

    auth: Literal["on", "off"] = Field(default="on", validation_alias="PREDICTD_AUTH")
    """on: every route but /health, /ready, /docs and the dashboard's page needs an API key
    (`Authorization: Bearer <key>`) with the route's scope. off: predict and read are open to
    anyone (the loopback demo); predictd refuses to start with off on a non-loopback
    `PREDICTD_HOST`, and answers 403 to requests that reach a non-loopback address (under any
    server: `predictd serve`, uvicorn, granian), unless `PREDICTD_INSECURE_NO_AUTH`."""

    insecure_no_auth: bool = Field(default=False, validation_alias="PREDICTD_INSECURE_NO_AUTH")
    """Allow `PREDICTD_AUTH=off` on non-loopback addresses, for a proxy in front that
    authenticates (`serve --insecure-no-auth` sets it)."""

    admin_token: SecretStr | None = Field(default=None, validation_alias="PREDICTD_ADMIN_TOKEN")
    """A bootstrap credential with the admin scope, checked without the database (before any
    key exists, or in an emergency); not stored. Prefer named keys (`predictd keys create`)."""

    keys_refresh_s: float = Field(
        default=2.0, gt=0, le=60, validation_alias="PREDICTD_KEYS_REFRESH_S"
    )
    """How often each server re-reads the live API keys: a revocation takes effect on every
    replica within this."""

    keys_lookup_timeout_s: float = Field(
        default=1.0, gt=0, le=30, validation_alias="PREDICTD_KEYS_LOOKUP_TIMEOUT_S"
    )
    """How long a request with a key this server does not know yet (made since the last
    re-read) waits for the database to look it up; beyond it, or with the database away, 503.
    Keys are also kept in a snapshot beside the spool (hashes, names, scopes, revocations),
    so a server started during a database outage serves the keys it knew."""

    rate_limit_per_s: float = Field(default=0.0, ge=0, validation_alias="PREDICTD_RATE_LIMIT_PER_S")
    """Requests per second each API key (or, without a key, each client address) may make,
    as a token bucket shared through Redis; over it: 429 with Retry-After. 0 = no limit."""

    rate_limit_burst: int = Field(default=0, ge=0, validation_alias="PREDICTD_RATE_LIMIT_BURST")
    """Requests a key may make at once above its rate (0 = twice the rate, at least 1)."""

    refusal_rate_per_s: float = Field(
        default=1.0, ge=0, validation_alias="PREDICTD_REFUSAL_RATE_PER_S"
    )
    """Refused requests (401/403) per second each client address may cause, beyond
    `PREDICTD_REFUSAL_BURST`; over it: 429 with Retry-After before any key is checked, so a
    client cycling through wrong keys costs no database lookups. Keys the server knows are
    never held back. 0 = no limit."""

    refusal_burst: int = Field(default=30, ge=1, validation_alias="PREDICTD_REFUSAL_BURST")
    """Refused requests a client address may cause at once before `PREDICTD_REFUSAL_RATE_PER_S`
    applies."""

    metrics_public: bool = Field(default=False, validation_alias="PREDICTD_METRICS_PUBLIC")
    """Serve /metrics without a key (for a Prometheus that scrapes without credentials on a
    private network); otherwise it needs the read scope."""


def _split_names(value: object) -> object:
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


GROUPS: dict[str, type[_Group]] = {
    "database": DatabaseSettings,
    "server": ServerSettings,
    "recording": RecordingSettings,
    "inference": InferenceSettings,
    "cache": CacheSettings,
    "monitoring": MonitoringSettings,
    "alerts": AlertSettings,
    "access": AccessSettings,
    "retraining": RetrainingSettings,
    "agent": AgentSettings,
}


def env_names(info: FieldInfo) -> list[str]:
    """A field's variables, the documented one first."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    assert isinstance(alias, str), "every settings field names its variable"
    return [alias]


def _flat_name(variable: str) -> str:
    """``PREDICTD_DB_POOL_SIZE`` -> ``db_pool_size``: the name ``Settings(...)`` also takes."""
    lowered = variable.lower()
    return lowered.removeprefix(PREFIX.lower())


# flat name -> (group, field), and (group, field) -> its documented variable
_PLACES: dict[str, tuple[str, str]] = {
    _flat_name(variable): (group, field)
    for group, model in GROUPS.items()
    for field, info in model.model_fields.items()
    for variable in env_names(info)
}
_VARIABLES: dict[tuple[str, str], str] = {
    (group, field): env_names(info)[0]
    for group, model in GROUPS.items()
    for field, info in model.model_fields.items()
}


def group_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat values (by variable or flat name) put in their groups; a group given whole (a
    mapping or the group's model) and anything unknown pass through unchanged."""
    grouped: dict[str, Any] = {}
    for key, value in values.items():
        if key in GROUPS and isinstance(value, Mapping | GROUPS[key]):
            target = grouped.setdefault(key, {})
            if isinstance(target, dict):
                shown = (
                    value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
                )
                grouped[key] = {**target, **shown}
            continue
        place = _PLACES.get(_flat_name(key))
        if place is None:
            grouped[key] = value
            continue
        group, field = place
        grouped.setdefault(group, {})[field] = value
    return grouped


class _Flat(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")


# What the sources read: every group's fields side by side under their flat names, so that
# pydantic-settings finds each variable (prefix, aliases, case, JSON lists, NoDecode, .env,
# secret files) exactly as it did when Settings itself was flat. Never instantiated.
_FLAT_FIELDS: dict[str, Any] = {
    _flat_name(env_names(info)[0]): (info.annotation, info)
    for model in GROUPS.values()
    for info in model.model_fields.values()
}
_Variables = create_model("_Variables", __base__=_Flat, **_FLAT_FIELDS)


class _Grouped(PydanticBaseSettingsSource):
    """One of pydantic-settings' sources, read for the flat variables and handed on grouped,
    so every source merges (and overrides) group by group, field by field."""

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.source = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the wrapped source as a whole

    def __call__(self) -> dict[str, Any]:
        return group_values(self.source())


class Settings(BaseSettings):
    """predictd configuration, laptop defaults, one group per concern."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_default=True)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    retraining: RetrainingSettings = Field(default_factory=RetrainingSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(dotenv_settings, DotEnvSettingsSource)  # `Settings(_env_file=None)`
        dotenv = DotEnvSettingsSource(_Variables, env_file=dotenv_settings.env_file)
        sources = [init_settings, EnvSettingsSource(_Variables), dotenv]
        # Read when Settings() is built, not at import: mounted secrets, one file per variable.
        secrets_dir = os.environ.get("PREDICTD_SECRETS_DIR")
        if secrets_dir:
            sources.append(SecretsSettingsSource(_Variables, secrets_dir=secrets_dir))
        return tuple(_Grouped(settings_cls, source) for source in sources)

    def replace(self, **values: Any) -> Settings:
        """A copy with some values changed, named flat as in ``Settings(...)``; not
        re-validated (like ``model_copy``)."""
        unknown = sorted(name for name in values if _flat_name(name) not in _PLACES)
        if unknown:
            raise TypeError(f"no such settings: {', '.join(unknown)}")
        changes = group_values(values)
        return self.model_copy(
            update={
                group: getattr(self, group).model_copy(update=v) for group, v in changes.items()
            }
        )


def env_name(loc: tuple[int | str, ...]) -> str | None:
    """The variable an error's location points at (None for a whole group's or the model's
    own error)."""
    if len(loc) >= 2 and (str(loc[0]), str(loc[1])) in _VARIABLES:
        return _VARIABLES[str(loc[0]), str(loc[1])]
    if loc and str(loc[0]).isupper():  # located by the variable it was given as
        return str(loc[0])
    return None


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per invalid setting, named as the operator sets it (its variable)."""
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        variable = env_name(error["loc"])
        lines.append(f"{variable}: {message}" if variable else message)
    return lines


def markdown_table() -> str:
    """The README's configuration tables, one per group, generated from the docstrings."""
    sections = []
    for group, model in GROUPS.items():
        about = " ".join((model.__doc__ or "").split())
        lines = [f"**{group}**: {about}", "", "| variable | default | meaning |", "|---|---|---|"]
        for field, info in model.model_fields.items():
            default = info.get_default(call_default_factory=True)
            shown = "unset" if default is None else f"`{default}`"
            if isinstance(default, bool):
                shown = f"`{str(default).lower()}`"
            elif isinstance(default, list) and default:
                shown = f"`{','.join(map(str, default))}`"
            elif isinstance(default, timedelta):
                shown = f"`{format_duration(default)}`"
            doc = " ".join((info.description or "").split()).replace("|", "\\|")
            lines.append(f"| `{_VARIABLES[group, field]}` | {shown} | {doc} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


if __name__ == "__main__":  # `python -m predictd.settings` prints the table for the README
    print(markdown_table())
