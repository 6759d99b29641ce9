"""The remediation policy: which findings propose which actions, how risky each is, and the
thresholds behind them.

The defaults live here. ``PREDICTD_AGENT_POLICY`` may override them from a YAML or JSON file,
which is treated as untrusted input: a short suffix allow-list and a size limit before it is
read, safe YAML only (no ``!!python/...`` tags; duplicate keys refused rather than the last one
silently winning), and a strict schema (unknown keys and wrong types refused), every refusal an
``InvalidInput`` naming the field. Settings that exist as environment variables win over the
file when they are set: ``PREDICTD_PROMOTE_MARGIN`` and ``PREDICTD_AGENT_AUTO_ROLLBACK``
(see ``resolve``).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from predictd.agent.actions import Risk
from predictd.durations import format_duration, parse_duration, seconds_span
from predictd.errors import InvalidInput
from predictd.settings import AgentSettings
from predictd.strict_json import unique_keys

MAX_BYTES = 64 * 1024
SUFFIXES = (".json", ".yaml", ".yml")
SETTING = "PREDICTD_AGENT_POLICY"
# The monitor's alert rules about one model (monitoring/alerts.py).
AlertRule = Literal["accuracy", "drift", "latency_p99", "error_rate"]


def _span(value: object) -> object:
    """'24h', '7d' as written elsewhere in predictd; a bare number is seconds."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return seconds_span(float(value))
    return value


Span = Annotated[timedelta, BeforeValidator(_span)]


class _Strict(BaseModel):
    # strict: a file saying `min_labelled: "200"` or `enabled: 1` is refused, not coerced.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Rule(_Strict):
    """What every rule has."""

    enabled: bool = True
    risk: Risk = "medium"
    requires_approval: bool = True
    cooldown: Span = timedelta(hours=24)
    """After a proposal of this rule was rejected, failed or (retrain) ran, wait this long
    before proposing it again for the same model (version), so people are not asked every
    pass."""


class RetrainParameters(_Strict):
    """Passed to the retrain action; unset ones leave `predictd train`'s settings
    (PREDICTD_RETRAIN_*) in force. The names are RetrainingSettings' fields."""

    since: Span | None = None
    min_labelled: int | None = Field(default=None, ge=1)
    recent_weight: float | None = Field(default=None, gt=0)
    holdout: float | None = Field(default=None, gt=0, lt=1)

    def as_json(self) -> dict[str, Any]:
        values = self.model_dump(exclude_none=True)
        if self.since is not None:
            values["since"] = format_duration(self.since)
        return values


class RetrainRule(Rule):
    """An open alert of one of ``alert_rules`` proposes retraining the model."""

    alert_rules: list[AlertRule] = ["drift", "accuracy"]  # pydantic copies the default
    parameters: RetrainParameters = RetrainParameters()


class RollbackRule(Rule):
    """A version promoted within ``window`` that scores worse than its predecessor on the same
    labelled requests proposes rolling back."""

    risk: Risk = "high"
    window: Span = timedelta(days=7)
    min_labelled: int = Field(default=100, ge=1)
    max_rows: int = Field(default=5000, ge=1)
    """The newest labelled predictions the predecessor is re-scored on."""


class ShadowRule(Rule):
    """A staging candidate whose training holdout beats production starts shadowing."""

    risk: Risk = "low"
    requires_approval: bool = False


class PromoteRule(Rule):
    """A shadowed candidate that beats production on the same labelled requests proposes
    promoting it."""

    min_labelled: int = Field(default=200, ge=1)


class IncidentRule(Rule):
    """An open alert of one of ``alert_rules`` — trouble retraining cannot fix: slow or
    failing answers — opens an incident: the alert webhook is told, with the evidence."""

    alert_rules: list[AlertRule] = ["error_rate", "latency_p99"]
    risk: Risk = "low"
    requires_approval: bool = False


class Policy(_Strict):
    """The keys of a policy file, all optional; rules are named by the action they propose."""

    promote_margin: float | None = Field(default=None, ge=0, le=1)
    """How much better (accuracy) must win; PREDICTD_PROMOTE_MARGIN wins when set."""
    retrain_model: RetrainRule = RetrainRule()
    rollback_model: RollbackRule = RollbackRule()
    start_shadow: ShadowRule = ShadowRule()
    promote_candidate: PromoteRule = PromoteRule()
    open_incident: IncidentRule = IncidentRule()

    @property
    def margin(self) -> float:
        if self.promote_margin is not None:
            return self.promote_margin
        default: float = AgentSettings.model_fields["promote_margin"].default
        return default


def resolve(policy: Policy, settings: AgentSettings) -> Policy:
    """The policy with the environment's word where it has one: an explicitly set
    PREDICTD_PROMOTE_MARGIN, else the file's ``promote_margin``, else the setting's default;
    an explicitly set PREDICTD_AGENT_AUTO_ROLLBACK decides whether a rollback waits for
    approval, else the file's ``rollback_model.requires_approval``. Idempotent."""
    explicit = settings.model_fields_set
    margin = settings.promote_margin if "promote_margin" in explicit else policy.margin
    rollback = policy.rollback_model
    if "auto_rollback" in explicit:
        rollback = rollback.model_copy(update={"requires_approval": not settings.auto_rollback})
    return policy.model_copy(update={"promote_margin": margin, "rollback_model": rollback})


def load_policy(path: Path | None) -> Policy:
    """The defaults, overridden by the file at ``path`` when one is given."""
    if path is None:
        return Policy()
    if path.suffix.lower() not in SUFFIXES:
        raise _refused(path, f"the name must end in {', '.join(SUFFIXES)}", SETTING)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _refused(path, f"cannot be read ({exc.strerror or exc})", SETTING) from None
    if len(raw) > MAX_BYTES:
        raise _refused(path, f"larger than the limit of {MAX_BYTES // 1024} KiB", SETTING)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refused(path, f"not UTF-8 text (byte {exc.start})", SETTING) from None
    data = _parse_json(path, text) if path.suffix.lower() == ".json" else _parse_yaml(path, text)
    if data is None:
        return Policy()  # an empty file: nothing overridden
    if not isinstance(data, dict):
        raise _refused(path, "the top level must be a mapping of rule names to settings", None)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(path, exc) from None


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=unique_keys, parse_constant=_no_constant)
    except ValueError as exc:  # json.JSONDecodeError is one
        raise _refused(path, f"not valid policy JSON: {exc}", None) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader (only plain data is built), refusing a key given twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen.add(key)  # an unhashable key is SafeLoader's to refuse
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise _refused(path, f"not valid policy YAML: {exc.problem}{where}", None) from None
    except yaml.YAMLError as exc:
        raise _refused(path, f"not valid policy YAML: {exc}", None) from None


def _from_validation(path: Path, exc: ValidationError) -> InvalidInput:
    """One message naming every bad field (the first also as ``field``)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            parent = _model_at(error["loc"][:-1])
            known = ", ".join(parent.model_fields) if parent else ""
            problems.append((field, f"unknown key (known here: {known})"))
        else:
            problems.append((field, error["msg"].removeprefix("Value error, ")))
    message = "; ".join(f"{field}: {msg}" for field, msg in problems[:5])
    return _refused(path, message, problems[0][0])


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The schema model at ``loc`` in a policy, to list the keys it knows."""
    model: type[BaseModel] = Policy
    for part in loc:
        info = model.model_fields.get(str(part))
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _refused(path: Path, problem: str, field: str | None) -> InvalidInput:
    return InvalidInput(f"agent policy {path}: {problem}", field=field)
