"""Write deploy/k8s/components/monitoring/prometheusrule.yaml from deploy/prometheus/rules.yml.

One rule set, two ways of loading it: Prometheus' `rule_files` (compose, any Prometheus) and
the Prometheus Operator's PrometheusRule (Kubernetes). The PrometheusRule is generated, never
edited, so the two cannot drift (severities, thresholds, alerts). Edit rules.yml, then run
`.venv/bin/python scripts/generate_prometheusrule.py`; `--check` exits 1 when the file is stale
(the suite runs it).

Text, not a YAML round-trip: rules.yml's comments and folded expressions carry into the
manifest unchanged, indented under `spec:`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
OUT = ROOT / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules.yml by scripts/generate_prometheusrule.py: edit
# rules.yml and re-run the script (the suite fails when this file is stale).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: predictd
  labels:
    # The label your Prometheus's ruleSelector picks (kube-prometheus-stack's default is its
    # release name).
    release: kube-prometheus-stack
spec:
"""


def render() -> str:
    lines = RULES.read_text().splitlines()
    # rules.yml's leading comment describes that file; the header above describes this one.
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    body = "".join(f"  {line}\n" if line.strip() else "\n" for line in lines)
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
