#!/usr/bin/env python
"""srha-train (``srha_hf.cli.train``), kept as a script: ``python scripts/train.py --help``."""

import sys
from pathlib import Path

# Python puts this folder first on sys.path, where scripts/evaluate.py would shadow the `evaluate` library
# that srha_hf.metrics imports: leave the folder out before importing srha_hf.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from srha_hf.cli.train import *  # noqa: E402,F401,F403 - the tool's names, for code that loads this file
from srha_hf.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
