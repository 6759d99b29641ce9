"""The policy: defaults in code, a YAML or JSON file overriding them, the environment's
settings winning over the file, and a hostile file refused with the bad field named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from predictd.agent.policy import MAX_BYTES, Policy, load_policy, resolve
from predictd.errors import InvalidInput
from predictd.settings import AgentSettings, Settings


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    policy = load_policy(None)
    assert policy == Policy()
    retrain = policy.retrain_model
    assert (retrain.enabled, retrain.risk, retrain.requires_approval) == (True, "medium", True)
    assert retrain.alert_rules == ["drift", "accuracy"]
    assert retrain.cooldown == timedelta(hours=24)
    assert retrain.parameters.as_json() == {}
    rollback = policy.rollback_model
    assert (rollback.risk, rollback.requires_approval) == ("high", True)
    assert (rollback.window, rollback.min_labelled) == (timedelta(days=7), 100)
    assert (policy.start_shadow.risk, policy.start_shadow.requires_approval) == ("low", False)
    promote = policy.promote_candidate
    assert (promote.risk, promote.requires_approval, promote.min_labelled) == ("medium", True, 200)
    assert policy.margin == 0.01  # PREDICTD_PROMOTE_MARGIN's default


def test_a_yaml_file_overrides_what_it_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        """
promote_margin: 0.03
retrain_model:
  cooldown: 12h
  alert_rules: [accuracy]
  parameters: {since: 14d, recent_weight: 3, holdout: 0.25}
rollback_model:
  min_labelled: 50
  window: 2d
start_shadow:
  enabled: false
""",
    )
    policy = load_policy(path)
    assert policy.margin == 0.03
    assert policy.retrain_model.cooldown == timedelta(hours=12)
    assert policy.retrain_model.alert_rules == ["accuracy"]
    assert policy.retrain_model.parameters.as_json() == {
        "since": "14d", "recent_weight": 3.0, "holdout": 0.25,
    }  # fmt: skip
    assert (policy.rollback_model.min_labelled, policy.rollback_model.window) == (
        50, timedelta(days=2),
    )  # fmt: skip
    assert policy.rollback_model.risk == "high"  # not named: the default stays
    assert policy.start_shadow.enabled is False
    assert policy.promote_candidate == Policy().promote_candidate


def test_a_json_file_and_an_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.json", '{"promote_candidate": {"min_labelled": 500}}')
    assert load_policy(path).promote_candidate.min_labelled == 500
    assert load_policy(write(tmp_path, "empty.yml", "# nothing overridden\n")) == Policy()


def test_the_readme_example_is_a_valid_policy(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Remediation policy") :]
    example = section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n\n")]
    policy = load_policy(write(tmp_path, "readme.yaml", example))
    assert policy.retrain_model.alert_rules == ["drift", "accuracy", "error_rate"]
    assert policy.promote_candidate.min_labelled == 500


def test_the_environment_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "policy.yaml",
        "promote_margin: 0.02\nrollback_model: {requires_approval: false}\n",
    )
    policy = load_policy(path)
    # Nothing set in the environment: the file decides.
    untouched = resolve(policy, AgentSettings())
    assert untouched.margin == 0.02
    assert untouched.rollback_model.requires_approval is False
    # Set in the environment: the environment decides, whichever way it points.
    monkeypatch.setenv("PREDICTD_PROMOTE_MARGIN", "0.05")
    monkeypatch.setenv("PREDICTD_AGENT_AUTO_ROLLBACK", "false")
    settings = Settings().agent
    resolved = resolve(policy, settings)
    assert resolved.margin == 0.05
    assert resolved.rollback_model.requires_approval is True
    assert resolve(resolved, settings) == resolved  # idempotent
    auto = resolve(Policy(), AgentSettings(auto_rollback=True))
    assert auto.rollback_model.requires_approval is False
    assert auto.margin == 0.01


HOSTILE = [
    ("unknown.yaml", "retrain_model:\n  cooldwn: 1h\n", "retrain_model.cooldwn",
     "unknown key (known here: enabled, risk, requires_approval, cooldown"),
    ("unknown_top.yaml", "rollback: {}\n", "rollback", "unknown key"),
    ("string_for_int.json", '{"rollback_model": {"min_labelled": "50"}}',
     "rollback_model.min_labelled", "valid integer"),
    ("bool_for_int.yaml", "promote_candidate: {min_labelled: true}\n",
     "promote_candidate.min_labelled", "valid integer"),
    ("int_for_bool.yaml", "start_shadow: {enabled: 1}\n", "start_shadow.enabled", "valid boolean"),
    ("risk.yaml", "start_shadow: {risk: none}\n", "start_shadow.risk", "'low', 'medium' or 'high'"),
    ("margin.yaml", "promote_margin: 2\n", "promote_margin", "less than or equal to 1"),
    ("cooldown.yaml", "retrain_model: {cooldown: soon}\n", "retrain_model.cooldown",
     "use a positive number with s, m, h or d"),
    ("negative.yaml", "retrain_model: {cooldown: -5}\n", "retrain_model.cooldown",
     "positive span"),
    ("endless.yaml", "retrain_model: {cooldown: 800000d}\n", "retrain_model.cooldown",
     "at most 3650 days"),
    ("alert_rule.yaml", "retrain_model: {alert_rules: [drfit]}\n", "retrain_model.alert_rules.0",
     "'accuracy', 'drift', 'latency_p99' or 'error_rate'"),
    ("parameters.yaml", "retrain_model: {parameters: {epochs: 5}}\n",
     "retrain_model.parameters.epochs", "unknown key (known here: since, min_labelled"),
    ("weight.yaml", "retrain_model: {parameters: {recent_weight: 0}}\n",
     "retrain_model.parameters.recent_weight", "greater than 0"),
    ("suffix.txt", "{}", "PREDICTD_AGENT_POLICY", "must end in .json, .yaml, .yml"),
    ("policy.py", "{}", "PREDICTD_AGENT_POLICY", "must end in"),
    ("list.yaml", "- retrain_model\n", None, "top level must be a mapping"),
    ("twice.yaml", "promote_margin: 0.1\npromote_margin: 0.0\n", None, "appears twice"),
    ("twice.json", '{"promote_margin": 0.1, "promote_margin": 0}', None, "appears twice"),
    ("nan.json", '{"promote_margin": NaN}', None, "NaN is not a number"),
    ("broken.yaml", "retrain_model: [\n", None, "not valid policy YAML"),
    ("broken.json", '{"retrain_model": ', None, "not valid policy JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "field", "says"), HOSTILE)
def test_a_bad_file_is_refused_naming_the_field(
    tmp_path: Path, name: str, text: str, field: str | None, says: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(InvalidInput) as refused:
        load_policy(path)
    assert refused.value.field == field
    assert says in refused.value.message
    assert str(path) in refused.value.message  # which file, for whoever reads the log


def test_python_tags_are_not_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(
        tmp_path,
        "evil.yaml",
        f'retrain_model: !!python/object/apply:os.system ["touch {marker}"]\n',
    )
    with pytest.raises(InvalidInput) as refused:
        load_policy(path)
    assert "could not determine a constructor" in refused.value.message
    assert "line 1" in refused.value.message
    assert not marker.exists()


def test_too_big_unreadable_and_not_text(tmp_path: Path) -> None:
    big = write(tmp_path, "big.yaml", "#" * MAX_BYTES + "\n")
    with pytest.raises(InvalidInput, match="larger than the limit of 64 KiB") as refused:
        load_policy(big)
    assert refused.value.field == "PREDICTD_AGENT_POLICY"
    exactly = write(tmp_path, "exactly.yaml", "#" * (MAX_BYTES - 1) + "\n")
    assert load_policy(exactly) == Policy()
    with pytest.raises(InvalidInput, match="cannot be read"):
        load_policy(tmp_path / "missing.yaml")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(InvalidInput, match="cannot be read"):
        load_policy(folder)
    with pytest.raises(InvalidInput, match="not UTF-8"):
        load_policy(
            write(tmp_path, "latin.yaml", "promote_margin: 0.1 # caf\xe9\n".encode("latin-1"))
        )
