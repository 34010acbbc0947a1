#!/usr/bin/env python
"""`accelerate launch experiments/run.py --config ...` keeps working: the same as `ragtune run --config ...`.

The run itself lives in ragtune/commands/run.py (see its docstring for what a run writes).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # works without `pip install -e .` too

from ragtune.commands.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
