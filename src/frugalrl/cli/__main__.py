"""`python -m frugalrl.cli ...`: the `frugalrl` command (how the bench starts each run in a fresh process)."""

import sys

from frugalrl.cli import main

sys.exit(main())
