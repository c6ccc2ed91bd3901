"""What a worker process (local or a Ray actor) is started with, so it sees what the
driver sees. Its own module so that the executors import it, not the package."""
from __future__ import annotations

import os

__all__ = ["worker_env"]


def worker_env() -> dict[str, str]:
    """The environment a worker needs to see what the driver sees (home, models, offline)."""
    keep = ("REKOLAB_", "HF_HUB_OFFLINE", "OMP_NUM_THREADS")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}
