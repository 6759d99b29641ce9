"""The schema as SQLAlchemy Core tables. Alembic owns changes; this mirrors the head revision."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from predictd.db.types import UTCDateTime
from predictd.vocabulary import CONFIDENCE_BINS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

JsonValue = JSON().with_variant(JSONB(), "postgresql")

predictions = Table(
    "predictions",
    metadata,
    Column("id", Uuid(as_uuid=True), primary_key=True),
    Column("ts", UTCDateTime(), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("variant", String(20), nullable=False),
    Column("request_id", String(64)),
    Column("batch_id", Uuid(as_uuid=True)),
    Column("input", JsonValue),
    Column("output", JsonValue),
    Column("confidence", Float),
    Column("probabilities", JsonValue),
    Column("latency_ms", Float, nullable=False),
    Column("cache_hit", Boolean, nullable=False),
    Column("status", String(10), nullable=False),
    Column("error", Text),
    Column("client_ip", String(64)),
    Column("user_agent", String(512)),
    # A shadow prediction's production counterpart (same input), for agreement rates.
    Column("shadow_of", Uuid(as_uuid=True)),
    # Rows arrive in time order, so on PostgreSQL a BRIN index serves time ranges at a
    # fraction of a B-tree's write cost.
    Index("ix_predictions_ts", "ts", postgresql_using="brin"),
    Index("ix_predictions_model_ts", "model_name", "model_version", "ts"),
    Index(
        "ix_predictions_batch_id",
        "batch_id",
        postgresql_where=text("batch_id IS NOT NULL"),
        sqlite_where=text("batch_id IS NOT NULL"),
    ),
    Index(
        "ix_predictions_shadow_of",
        "shadow_of",
        postgresql_where=text("shadow_of IS NOT NULL"),
        sqlite_where=text("shadow_of IS NOT NULL"),
    ),
)

# Upper bounds (ms) of the rollups' latency histogram buckets; the last bucket (one more
# column than bounds) holds everything slower. Part of the schema: changing it is a migration.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000,
)  # fmt: skip
HISTOGRAM_COLUMNS: tuple[str, ...] = tuple(
    f"latency_h{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1)
)
# Confidence in ten equal bins, [0, 0.1) ... [0.9, 1.0]: the dashboard's histogram, and what
# estimated accuracy is computed from without reading single rows.
CONFIDENCE_COLUMNS: tuple[str, ...] = tuple(f"confidence_h{i}" for i in range(CONFIDENCE_BINS))


def _rollup_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", UTCDateTime(), nullable=False),
        Column("model_name", String(200), nullable=False),
        Column("model_version", Integer, nullable=False),
        Column("variant", String(20), nullable=False),
        Column("label", Text, nullable=False),
        Column("count", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("cache_hits", BigInteger, nullable=False),
        Column("confidence_count", BigInteger, nullable=False),
        Column("confidence_sum", Float, nullable=False),
        Column("latency_sum", Float, nullable=False),
        Column("first_ts", UTCDateTime(), nullable=False),
        Column("last_ts", UTCDateTime(), nullable=False),
        *(Column(c, BigInteger, nullable=False) for c in HISTOGRAM_COLUMNS),
        *(Column(c, BigInteger, nullable=False) for c in CONFIDENCE_COLUMNS),
        PrimaryKeyConstraint(
            *("bucket", "model_name", "model_version", "variant", "label"), name=f"pk_{name}"
        ),
        Index(f"ix_{name}_model_bucket", "model_name", "model_version", "bucket"),
    )


# One row per minute x model version x variant x predicted label, maintained by the recorder
# in the transaction of each insert (see recording/rollups.py); analytics read these. The
# same sums per hour serve long windows: a 30-day query reads 720 hours instead of 43,200
# minutes (per version, variant and label).
prediction_rollups = _rollup_table("prediction_rollups")
prediction_rollups_hourly = _rollup_table("prediction_rollups_hourly")

# Ground truth, one row per prediction (a second answer replaces the first). No foreign key:
# feedback may arrive before the recorder has written its prediction.
feedback = Table(
    "feedback",
    metadata,
    Column("prediction_id", Uuid(as_uuid=True), primary_key=True),
    Column("actual", JsonValue, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("revisions", Integer, nullable=False),  # how many times it was sent
    Index("ix_feedback_received_at", "received_at"),
)

# One row per model version and window each time the monitor runs: realised metrics from
# feedback (null until some arrives) beside the label-free estimate.
performance_metrics = Table(
    "performance_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("task", String(20), nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("window_end", UTCDateTime(), nullable=False),
    Column("computed_at", UTCDateTime(), nullable=False),
    Column("predictions", BigInteger, nullable=False),
    Column("labelled", BigInteger, nullable=False),
    Column("metrics", JsonValue),
    Column("estimated", JsonValue),
    Index("ix_performance_metrics_model_name", "model_name", "model_version", "computed_at"),
)

# One row per model version each time drift is measured: per-feature tests of the window's
# inputs (and the model's answers) against the version's reference profile.
drift_reports = Table(
    "drift_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("window_end", UTCDateTime(), nullable=False),
    Column("computed_at", UTCDateTime(), nullable=False),
    Column("status", String(30), nullable=False),  # ok | insufficient_data | no_reference
    Column("rows", BigInteger, nullable=False),
    Column("score", Float),  # share of the tested features that drifted
    Column("drift_detected", Boolean, nullable=False),
    Column("features", JsonValue),
    Column("outputs", JsonValue),
    Column("message", Text, nullable=False),
    Index("ix_drift_reports_model_name", "model_name", "model_version", "computed_at"),
    Index("ix_drift_reports_computed_at", "computed_at"),
)

# Periodic samples of each server's own health (CPU, memory, loop lag, recorder backlog, pool
# use), long format: one row per value, the sampling process in ``labels``.
system_metrics = Table(
    "system_metrics",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", UTCDateTime(), nullable=False),
    Column("name", String(100), nullable=False),
    Column("value", Float, nullable=False),
    Column("labels", JsonValue, nullable=False),
    Index("ix_system_metrics_name", "name", "ts"),
    Index("ix_system_metrics_ts", "ts"),
)

# active -> acknowledged -> resolved. At most one open alert per rule and model, enforced by
# the database, so a condition that persists updates its alert instead of adding more.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(50), nullable=False),
    Column("model_name", String(200), nullable=False),  # "" for rules about the server itself
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("title", String(300), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JsonValue),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", UTCDateTime()),
    Column("resolved_by", String(200)),
    Column("resolved_at", UTCDateTime()),
    Column("resolution_notes", Text),
    Index(
        "uq_alerts_open",
        "rule",
        "model_name",
        unique=True,
        postgresql_where=text("status <> 'resolved'"),
        sqlite_where=text("status <> 'resolved'"),
    ),
    Index("ix_alerts_status", "status", "created_at"),
)

# API keys: only the SHA-256 of a key is kept; the key itself is shown once, at creation.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),  # the key's first characters, to tell keys apart
    Column("scopes", JsonValue, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    # One live key per name; a revoked name may be reused.
    Index(
        "uq_api_keys_live_name",
        "name",
        unique=True,
        postgresql_where=text("revoked_at IS NULL"),
        sqlite_where=text("revoked_at IS NULL"),
    ),
)

# Who did (or was refused) what, written in the transaction of the change; rows leave only
# through `db cleanup --audit-days`.
audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", UTCDateTime(), nullable=False),
    Column("key_name", String(200)),  # null: nobody authenticated
    Column("scope", String(20)),  # the scope the action needs
    Column("action", String(100), nullable=False),
    Column("target", String(300)),
    Column("before", JsonValue),
    Column("after", JsonValue),
    Column("allowed", Boolean, nullable=False),
    Column("request_id", String(64)),
    # Refusals are counted per client address and minute (one row, `times` of them).
    Column("client", String(64)),
    Column("times", Integer, nullable=False, server_default=text("1")),
    Index("ix_audit_log_ts", "ts"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(50), nullable=False),
    Column("algorithm", String(200)),
    Column("task", String(20), nullable=False),
    Column("input_kind", String(20), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("feature_names", JsonValue),
    Column("classes", JsonValue),
    Column("metrics", JsonValue),
    Column("training_samples", Integer),
    Column("stage", String(20), nullable=False),
    Column("description", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("promoted_at", UTCDateTime()),
    Column("hyperparameters", JsonValue),
    Column("tags", JsonValue),
    Column("parent_version", Integer),
    Column("reference_profile", JsonValue),
    # {"uri", "sha256", "format", "rows"} of the data the version was fitted (validated) on,
    # stored content-addressed beside the artifact; null when none was registered.
    Column("training_data", JsonValue),
    Column("validation_data", JsonValue),
    # How `predictd train` made this version: data window, row counts, holdout scores.
    Column("training_run", JsonValue),
    UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
    # At most one production version per name, enforced by the database.
    Index(
        "uq_model_versions_production",
        "name",
        unique=True,
        postgresql_where=text("stage = 'production'"),
        sqlite_where=text("stage = 'production'"),
    ),
)

# What the remediation agent proposes: pending -> approved | rejected -> running -> succeeded |
# failed, or pending -> expired. At most one open proposal per model and action type, enforced
# by the database; an executor holds a lease while running so a crashed one is taken over.
agent_actions = Table(
    "agent_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_type", String(30), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", Integer),
    Column("parameters", JsonValue, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", JsonValue),  # the alert and the metrics behind the proposal
    Column("source_alert_id", Integer),
    Column("risk", String(10), nullable=False),  # low | medium | high
    Column("requires_approval", Boolean, nullable=False),
    Column("status", String(20), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("reviewed_by", String(200)),
    Column("reviewed_at", UTCDateTime()),
    Column("review_comment", Text),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("executed_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("result", JsonValue),
    Column("error", Text),
    Index(
        "uq_agent_actions_open",
        "model_name",
        "action_type",
        unique=True,
        postgresql_where=text("status IN ('pending', 'approved', 'running')"),
        sqlite_where=text("status IN ('pending', 'approved', 'running')"),
    ),
    Index("ix_agent_actions_status", "status", "created_at"),
)

# When each periodic task (the monitor pass) last started, and on which replica: the row is
# claimed by one statement, so of N replicas on one schedule exactly one runs each interval.
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("last_run_at", UTCDateTime(), nullable=False),
    Column("run_by", String(200), nullable=False),
)
