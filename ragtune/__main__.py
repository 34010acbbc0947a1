"""`python -m ragtune <command> ...` (see ragtune/cli.py)."""

import sys

from ragtune.cli import main

sys.exit(main())
