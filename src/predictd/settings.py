"""The one place predictd reads its configuration from.

Every field is an environment variable with the ``PREDICTD_`` prefix (``DATABASE_URL`` and
``REDIS_URL`` are also read without it). A ``.env`` file in the working directory is honoured,
and any field can be read from a file in ``PREDICTD_SECRETS_DIR`` (Kubernetes/Docker secrets).
The README's configuration table is generated from the attribute docstrings below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

Durability = Literal["memory", "process", "strict"]
SpoolFullPolicy = Literal["reject", "shed"]
# libpq's TLS parameters a PostgreSQL URL may carry (db/tls.py translates them for asyncpg).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SSL_FILE_PARAMS = ("sslrootcert", "sslcert", "sslkey")


class Settings(BaseSettings):
    """predictd configuration, laptop defaults."""

    model_config = SettingsConfigDict(
        env_prefix="PREDICTD_",
        env_file=".env",
        extra="ignore",
        use_attribute_docstrings=True,
        validate_default=True,
        populate_by_name=True,
    )

    database_url: str = Field(
        default="sqlite:///./predictd.db",
        validation_alias=AliasChoices("DATABASE_URL", "PREDICTD_DATABASE_URL"),
    )
    """Where predictions and the registry live: `sqlite:///path` or
    `postgresql://user:password@host:port/db` (the async driver is chosen internally), with
    libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` query parameters if TLS is
    needed (`?sslmode=require`)."""

    auto_migrate: bool | None = None
    """Apply database migrations at startup. Unset means yes on SQLite, no on PostgreSQL
    (run `predictd db upgrade` there, e.g. as a Kubernetes Job)."""

    db_pool_size: int = Field(default=5, ge=1)
    """Connections kept open per process (PostgreSQL)."""

    db_max_overflow: int = Field(default=5, ge=0)
    """Extra connections allowed beyond the pool under load (PostgreSQL)."""

    db_pool_pre_ping: bool = True
    """Check a pooled connection before use, so a restarted database is noticed at once."""

    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    """Seconds to wait for a new database connection."""

    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    """Server-side statement timeout in milliseconds (PostgreSQL; 0 disables it)."""

    host: str = "127.0.0.1"
    """Address `predictd serve` binds to."""

    port: int = Field(default=8000, ge=1, le=65535)
    """Port `predictd serve` listens on."""

    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Model names to serve, comma-separated; the first answers `/predict`, the others
    `/models/{name}/predict`. Unset: every name with a production version (the default is
    the `--model` one, else the first by name)."""

    model_name: str | None = None
    """Name the `--model` artifact is registered under (default: its file name without suffix);
    without `--model`, the model `/predict` answers with when `PREDICTD_MODELS` is unset."""

    model_path: Path | None = None
    """An artifact to serve (registered as production on startup); set by `predictd serve
    --model`."""

    canary_percent: float = Field(default=0.0, ge=0, le=100)
    """Share of each model's traffic answered by its candidate (newest `staging` version);
    requests with the same `key` always get the same version."""

    shadow: bool = False
    """Also run each model's candidate on the production traffic, off the request path; its
    answers are recorded with `variant=shadow` and never returned."""

    shadow_queue_max: int = Field(default=10_000, ge=1)
    """Items waiting for the shadow model; beyond it shadow work is dropped and counted, so the
    candidate can never slow production."""

    shadow_process: bool = False
    """Run the shadow candidate in a lower-priority worker process instead of a thread, so its
    computing never holds the serving process's GIL: for candidates much heavier than
    production. Costs a process, the model's memory and some pickling per call: for a light
    candidate (the demo model takes ~1 ms per 30 inputs) the thread is as good."""

    shadow_linger_ms: float = Field(default=100.0, ge=0, le=10_000)
    """How long the shadow worker waits after the first queued request, so many requests share
    one vectorised candidate call instead of costing one call each (0 = call at once)."""

    monitor_interval_s: float = Field(default=0.0, ge=0)
    """Run the monitor (performance, drift, alert rules) inside the server this often (0 =
    never; run `predictd monitor run` from cron instead). Each pass stores one performance row
    and one drift report per version that answered."""

    monitor_window_h: float = Field(default=24.0, gt=0)
    """How far back the in-server monitor looks."""

    drift_share: float = Field(default=0.5, gt=0, le=1)
    """A window's inputs have drifted when at least this share of the features tested drift."""

    drift_p_value: float = Field(default=0.05, gt=0, lt=1)
    """With a small reference (<= 1,000 rows): a feature drifts when its Kolmogorov-Smirnov or
    chi-square test gives a p-value below this."""

    drift_distance: float = Field(default=0.1, gt=0)
    """With a larger reference: a feature drifts when its normalised Wasserstein distance
    (numeric) or Jensen-Shannon distance (categorical) reaches this."""

    drift_min_rows: int = Field(default=200, ge=1)
    """Fewer answered predictions than this in the window: the drift report says there is too
    little data instead of testing (no false alarms from a handful of requests)."""

    drift_max_values: int = Field(default=2_000_000, ge=10_000)
    """Feature values (rows x features) a drift report counts on PostgreSQL before it counts a
    fixed pseudo-random sample of rows (by a hash of the id) instead; reading a value out of
    stored JSON costs ~0.1-0.3 µs, and a sample this size moves bin shares well under 1%."""

    drift_sample: int = Field(default=5000, ge=100)
    """Most recent values per feature a Kolmogorov-Smirnov test compares against a small
    reference; bin counts always cover the whole window."""

    alert_accuracy_min: float | None = Field(default=None, ge=0, le=1)
    """Alert when a version's realised accuracy falls below this (unset: no floor)."""

    alert_accuracy_drop: float = Field(default=0.1, ge=0, le=1)
    """Alert when realised accuracy is more than this below the accuracy the version was
    registered with (`models register --metrics-json`)."""

    alert_p99_latency_ms: float = Field(default=1000.0, gt=0)
    """Alert when a model's p99 latency over the monitor window exceeds this."""

    alert_error_rate: float = Field(default=0.05, ge=0, le=1)
    """Alert when more than this share of a model's predictions fail."""

    alert_min_predictions: int = Field(default=100, ge=1)
    """Latency and error-rate alerts wait for this many predictions in the window."""

    alert_recording_s: float = Field(default=60.0, gt=0)
    """Alert when the database has been unreachable, or the recorder's backlog has kept
    growing, for this long. Decided by each server itself, since the database is what fails."""

    alert_webhook_url: str | None = None
    """POSTed `{"event": "opened"|"resolved", "alert": {...}}` for each new and resolved
    alert, with retries."""

    system_metrics_interval_s: float = Field(default=60.0, ge=0)
    """Sample this server's CPU, memory, event-loop lag, recorder backlog and pool use into
    `system_metrics` this often (0 = never); `predictd db cleanup` applies the retention."""

    feedback_unmatched_days: int = Field(default=7, ge=1)
    """Feedback whose prediction never arrived is kept this long (it may still be on its way
    through a spool), then `predictd db cleanup` deletes it."""

    registry_poll_s: float = Field(default=5.0, gt=0)
    """How often a server re-reads the registry for changes made elsewhere (on PostgreSQL,
    LISTEN/NOTIFY usually brings them at once; this poll is the guarantee)."""

    auth: Literal["on", "off"] = "on"
    """on: every route but /health, /ready, /docs and the dashboard's page needs an API key
    (`Authorization: Bearer <key>`) with the route's scope. off: predict and read are open to
    anyone (the loopback demo); predictd refuses to start with off on a non-loopback
    `PREDICTD_HOST`, and answers 403 to requests that reach a non-loopback address (under any
    server: `predictd serve`, uvicorn, granian), unless `PREDICTD_INSECURE_NO_AUTH`."""

    insecure_no_auth: bool = False
    """Allow `PREDICTD_AUTH=off` on non-loopback addresses, for a proxy in front that
    authenticates (`serve --insecure-no-auth` sets it)."""

    admin_token: SecretStr | None = None
    """A bootstrap credential with the admin scope, checked without the database (before any
    key exists, or in an emergency); not stored. Prefer named keys (`predictd keys create`)."""

    keys_refresh_s: float = Field(default=2.0, gt=0, le=60)
    """How often each server re-reads the live API keys: a revocation takes effect on every
    replica within this."""

    keys_lookup_timeout_s: float = Field(default=1.0, gt=0, le=30)
    """How long a request with a key this server does not know yet (made since the last
    re-read) waits for the database to look it up; beyond it, or with the database away, 503.
    Keys are also kept in a snapshot beside the spool (hashes, names, scopes, revocations),
    so a server started during a database outage serves the keys it knew."""

    store_inputs: Literal["full", "hash", "none"] = "full"
    """What each prediction row keeps of its input: `full`; `hash`, a keyed HMAC-SHA256 of it
    (equal inputs still match, nobody without PREDICTD_INPUT_HASH_KEY can test a guess; drift
    of inputs cannot be measured); or `none`."""

    input_hash_key: SecretStr | None = None
    """The secret key of `PREDICTD_STORE_INPUTS=hash`; the same on every replica (required
    with hash)."""

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PREDICTD_REDIS_URL")
    )
    """Redis shared by the replicas (rate limits; the prediction cache). Unset, or down: each
    process keeps its own."""

    redis_timeout_ms: float = Field(default=50.0, gt=0)
    """How long a request waits for Redis before going on without it; after a failure Redis
    is left alone for a few seconds (circuit breaker)."""

    cache: Literal["off", "local", "redis"] = "off"
    """Prediction cache: the same input to the same model version is answered from the cache
    (still with its own prediction id and record, `cache_hit=true`). `local`: an LRU in each
    process; `redis`: shared through REDIS_URL, the local LRU while Redis is away."""

    cache_ttl_s: float = Field(default=300.0, gt=0)
    """How long a cached answer is reused."""

    cache_max_items: int = Field(default=10_000, ge=1)
    """Answers kept in each process's LRU."""

    rate_limit_per_s: float = Field(default=0.0, ge=0)
    """Requests per second each API key (or, without a key, each client address) may make,
    as a token bucket shared through Redis; over it: 429 with Retry-After. 0 = no limit."""

    rate_limit_burst: int = Field(default=0, ge=0)
    """Requests a key may make at once above its rate (0 = twice the rate, at least 1)."""

    refusal_rate_per_s: float = Field(default=1.0, ge=0)
    """Refused requests (401/403) per second each client address may cause, beyond
    `PREDICTD_REFUSAL_BURST`; over it: 429 with Retry-After before any key is checked, so a
    client cycling through wrong keys costs no database lookups. Keys the server knows are
    never held back. 0 = no limit."""

    refusal_burst: int = Field(default=30, ge=1)
    """Refused requests a client address may cause at once before `PREDICTD_REFUSAL_RATE_PER_S`
    applies."""

    max_concurrency: int = Field(default=512, ge=0)
    """Requests one process works on at once; more get 503 with Retry-After instead of queueing
    without bound (probes and /metrics are exempt). 0 = no cap."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated origins allowed to call the API from a browser (CORS). Empty: no CORS
    headers at all, so other sites' pages cannot read answers."""

    docs: bool = True
    """Serve /docs, /redoc and /openapi.json. Turn off on an internet-facing deployment that
    does not want to describe itself."""

    metrics_public: bool = False
    """Serve /metrics without a key (for a Prometheus that scrapes without credentials on a
    private network); otherwise it needs the read scope."""

    opentelemetry: bool = False
    """Let FastAPI's built-in OpenTelemetry instrumentation trace and measure requests through
    the providers you configure (opentelemetry-sdk and its exporters). Off, requests pay
    nothing for it."""

    artifact_dir: Path = Path(".predictd/artifacts")
    """Content-addressed artifact store, and the manifest of the last loaded model used when
    the database is down at startup."""

    artifact_url: str | None = None
    """An fsspec URL to store artifacts in instead of `PREDICTD_ARTIFACT_DIR` (`s3://bucket/
    prefix`, `gs://`, `az://`; needs `pip install predictd[fsspec]` and the backend's package).
    Downloads are cached in `PREDICTD_ARTIFACT_DIR` and verified like local files."""

    allow_pickle: bool = False
    """Accept joblib/pickle artifacts (`.joblib`, `.pkl`). Loading a pickle runs code from the
    file: enable only for artifacts you built; the registry's sha256 is still verified first."""

    trusted_types: list[str] = Field(default_factory=list)
    """Extra exact type or function names trusted when loading skops artifacts (JSON list),
    beyond predictd's allow-list of scikit-learn, NumPy and SciPy classes. Loading them runs
    their code: list only what you trust; each load relying on one is logged."""

    record: bool = True
    """Record predictions at all. Off only for benchmarks and dry runs: nothing is kept."""

    durability: Durability = "process"
    """When a prediction is answered: `memory` before any I/O (kill -9 may lose queued
    records), `process` after the write to the local spool (a process crash loses nothing),
    `strict` after that write is fsync'ed with group commit (a power cut loses nothing)."""

    spool_dir: Path = Path(".predictd/spool")
    """Local write-ahead spool; each server process claims a locked subdirectory."""

    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    """Spool size limit; reaching it applies `spool_full_policy`."""

    spool_segment_bytes: int = Field(default=64 << 20, ge=1 << 12)
    """Size at which the spool starts a new segment file."""

    spool_full_policy: SpoolFullPolicy = "reject"
    """With a full spool: `reject` answers 503 with Retry-After (nothing answered is lost),
    `shed` answers without recording and counts every such prediction."""

    record_batch: int = Field(default=1000, ge=1)
    """Most rows the recorder writes to the database in one transaction."""

    record_concurrency: int = Field(default=2, ge=1, le=16)
    """Batches written at once, each on its own connection (commits overlap the next COPY)."""

    record_flush_ms: int = Field(default=50, ge=0)
    """Longest a recorded prediction waits for its batch to fill before being shipped."""

    record_queue_max: int = Field(default=50_000, ge=1)
    """Records held in memory for the shipper; beyond it they are read back from the spool
    (in `memory` durability, beyond it `spool_full_policy` applies)."""

    record_retry_max_s: float = Field(default=30.0, gt=0)
    """Longest back-off between attempts while the database is failing."""

    shutdown_delay_s: float = Field(default=5.0, ge=0)
    """After SIGTERM, seconds /ready answers 503 while requests are still served, so load
    balancers stop routing here before the listener closes (every worker under --workers)."""

    shutdown_flush_s: float = Field(default=10.0, ge=0)
    """On shutdown, seconds spent shipping what is queued; the rest stays in the spool."""

    max_batch: int = Field(default=100, ge=1)
    """Most items in one `POST /batch`."""

    max_text_chars: int = Field(default=10_000, ge=1)
    """Longest accepted `text` input."""

    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest accepted request body; larger bodies get 413."""

    body_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """Longest a request body may take to arrive once its headers are in; a slower one gets
    408 `body_timeout`. No concurrency slot is held while a body arrives."""

    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """Longest `predictd serve` waits for a request's headers, from the connection's start or
    its previous answer: then 408 `header_timeout` (or, if nothing came, a plain close) and
    the connection is closed. Headers over 64 KiB get 431; an idle kept-alive connection is
    closed after 5 s."""

    predict_timeout_s: float = Field(default=10.0, gt=0)
    """A model call that takes longer answers 504."""

    inference_threads: int = Field(default=2, ge=1)
    """Worker threads running model calls off the event loop."""

    batch_max: int = Field(default=32, ge=1)
    """Most single predictions gathered into one model call (1 = no micro-batching)."""

    batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    """Longest a prediction waits for others to share its model call; only while requests
    arrive together (a lone request is sent at once)."""

    log_level: str = "INFO"
    """Python log level."""

    log_format: Literal["json", "text"] = "json"
    """`json` (one object a line, with request_id) or `text` for humans."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Read when Settings() is built, not at import: mounted secrets, one file per variable.
        secrets_dir = os.environ.get("PREDICTD_SECRETS_DIR")
        if secrets_dir:
            file_secret_settings = SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator("models", "cors_origins", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("database_url")
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

    @model_validator(mode="after")
    def _redis_cache_needs_redis(self) -> Settings:
        if self.cache == "redis" and self.redis_url is None:
            raise ValueError("PREDICTD_CACHE=redis needs REDIS_URL")
        return self

    @model_validator(mode="after")
    def _hash_needs_a_key(self) -> Settings:
        if self.store_inputs == "hash" and self.input_hash_key is None:
            raise ValueError("PREDICTD_STORE_INPUTS=hash needs PREDICTD_INPUT_HASH_KEY")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrate_on_startup(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


def env_name(field: str) -> str:
    if field.isupper():  # an error from an aliased field is already located by its variable
        return field
    plain = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}
    return plain.get(field, f"PREDICTD_{field.upper()}")


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per invalid setting, named as the operator sets it (its variable)."""
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        field = str(error["loc"][0]) if error["loc"] else None
        lines.append(f"{env_name(field)}: {message}" if field else message)
    return lines


def markdown_table() -> str:
    """The README's configuration table, generated from the field docstrings."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`{default}`"
        if isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{env_name(name)}` | {shown} | {doc} |")
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m predictd.settings` prints the table for the README
    print(markdown_table())
