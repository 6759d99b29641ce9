"""`make audit`: fail on an installed dependency with a known vulnerability that has a fix.

pip-audit (PyPI's advisory data) lists every known vulnerability; one without a fixed release
can't be acted on by upgrading, so it is printed as a warning instead of failing the build.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    run = subprocess.run(
        [str(pip_audit), "--skip-editable", "--format", "json", "--progress-spinner", "off"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"pip-audit did not produce a report (exit {run.returncode}):\n{run.stderr}")
        return 1
    fixable, unfixable = [], []
    for dependency in report["dependencies"]:
        for vuln in dependency.get("vulns", []):
            line = f"{dependency['name']} {dependency['version']}: {vuln['id']}"
            if vuln.get("fix_versions"):
                fixable.append(f"{line} (fixed in {', '.join(vuln['fix_versions'])})")
            else:
                unfixable.append(f"{line} (no fixed release yet)")
    for line in unfixable:
        print(f"warning: {line}")
    for line in fixable:
        print(f"error: {line}")
    print(f"{len(report['dependencies'])} dependencies audited; {len(fixable)} fixable, "
          f"{len(unfixable)} without a fix")  # fmt: skip
    return 1 if fixable else 0


if __name__ == "__main__":
    sys.exit(main())
