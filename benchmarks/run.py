"""`make bench`: run the predictd benchmark suite (see benchmarks/suite.py, --help)."""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (`python benchmarks/run.py`): make the `benchmarks` package importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.suite import entry

if __name__ == "__main__":
    entry()
