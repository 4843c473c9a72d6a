"""`python -m frugalrl.bench ...`: see `frugalrl.bench`."""

import sys

from frugalrl.bench.cli import main

sys.exit(main())
