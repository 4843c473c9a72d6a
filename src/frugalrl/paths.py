"""Where frugalrl keeps files between runs: one cache root for the testbed base, embeddings and the like."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$FRUGALRL_CACHE`` if set, else ``~/.cache/frugalrl``."""
    env = os.environ.get("FRUGALRL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "frugalrl"
