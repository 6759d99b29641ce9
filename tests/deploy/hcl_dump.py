"""Print every .tf file of a directory, parsed, as one JSON object: {file name: blocks}.

Runs inside .venv-checks (scripts/ensure_azure_tools.sh), where the HCL parser lives, so the
parser's dependencies never enter predictd's own environment. Both parsers that install the
``hcl2`` module (python-hcl2, and checkov's bc-python-hcl2) are accepted: their one-item lists
around attribute values and their line-number keys are removed, so the test sees one shape.
A file that does not parse makes this exit non-zero with the parser's message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hcl2  # type: ignore[import-not-found]


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        items = [_plain(v) for v in value]
        return items[0] if len(items) == 1 and not isinstance(items[0], dict) else items
    return value


def main(directory: str) -> int:
    parsed: dict[str, object] = {}
    for path in sorted(Path(directory).glob("*.tf")):
        try:
            with path.open() as handle:
                parsed[path.name] = _plain(hcl2.load(handle))
        except Exception as exc:  # the parser raises lark's errors; report any, by file
            print(f"{path.name}: {exc}", file=sys.stderr)
            return 1
    json.dump(parsed, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
