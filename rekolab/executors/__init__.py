"""Where analysis runs: a process pool on this machine, or Ray actors on a cluster.

Every executor has one interface: ``submit(task)`` queues a
:class:`~rekolab.executors.work.Task`; ``results(timeout)`` returns the results
finished since the last call (``run_task``'s dicts); ``close()`` stops the workers.
Each worker holds its models for its whole life (loaded on its first task, cached
per process), so a dataset pays model loading once per worker, not per video.
A worker that dies mid-task has that task retried once on a fresh worker; a
second death reports the task FAILED with the cause.

Importing this package imports neither multiprocessing workers nor Ray.
"""
from __future__ import annotations

import os

from .environment import worker_env

__all__ = ["get_executor", "worker_env", "EXECUTORS"]

EXECUTORS = ("local", "ray")


def get_executor(name: str | None = None, *, workers: int | None = None, address: str | None = None):
    """``"local"`` (default; ``REKOLAB_EXECUTOR`` overrides) or ``"ray"``."""
    from ..errors import InvalidParameterException

    name = name or os.environ.get("REKOLAB_EXECUTOR") or "local"
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidParameterException(f"workers must be a positive integer, not {workers!r}")
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor(workers)
    if name == "ray":
        from ._ray import RayExecutor

        return RayExecutor(workers, address)
    raise InvalidParameterException(f"executor {name!r} is not one of {', '.join(EXECUTORS)}")
