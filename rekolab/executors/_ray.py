"""Ray actors as workers: ``executor="ray"``.

* **Address**: the ``address`` argument, else ``REKOLAB_RAY_ADDRESS``, else
  ``RAY_ADDRESS``, else a local Ray started by ``ray.init()``. A Ray that this
  process already initialized is used as it is.
* **Workers**: one actor per worker (``workers``, else the cluster's GPUs, else its
  CPUs), each holding its models for its life. Actors ask for ``num_cpus=1`` and,
  when the cluster has GPUs, ``num_gpus=1``, so Ray places them across nodes.
* **Results** come back as Arrow IPC bytes through Ray's object store; the
  driver writes them, once (``rekolab.datasets``).
* **Failures**: actors have ``max_restarts=1`` and ``max_task_retries=1``, so a
  worker process killed mid-task is restarted and its task re-run by Ray; the
  driver still receives exactly one result per task. A second death reports the
  task FAILED with Ray's error, and a fresh actor replaces the dead one.

One actor runs one task at a time; tasks go to idle actors (Ray's ``ActorPool``
does the same, but cannot say which task a failed result belonged to).
"""
from __future__ import annotations

import logging
import os
import time

from .environment import worker_env
from .work import Task

__all__ = ["RayExecutor", "ray_address"]

log = logging.getLogger("rekolab.executors")


def ray_address(address: str | None = None) -> str | None:
    return address or os.environ.get("REKOLAB_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None


class _RayWorker:
    """The actor: one worker process with its models."""

    def __init__(self, env: dict):
        os.environ.update(env)

    def run(self, task: Task) -> dict:
        from .work import run_task

        return run_task(task)

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    kind = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, max_attempts: int = 2):
        from ..models import require

        ray = self._ray = require("ray", "ray")
        self._owns_ray = False
        if not ray.is_initialized():
            address = ray_address(address)
            options = {}
            host = (address or "").split("://")[-1].rsplit(":", 1)[0]
            if host.startswith("127."):  # a cluster on a loopback address: the driver is there too
                options["_node_ip_address"] = host
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     logging_level=logging.WARNING, **options)
            self._owns_ray = True
        resources = ray.cluster_resources()
        self.gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        self.workers = int(workers or os.environ.get("REKOLAB_WORKERS") or 0) or int(
            resources.get("GPU") or resources.get("CPU") or 1)
        retries = max_attempts - 1
        self._actor_cls = ray.remote(num_cpus=1, num_gpus=self.gpus, max_restarts=retries,
                                     max_task_retries=retries)(_RayWorker)
        self._env = worker_env()
        self._actors = [self._actor_cls.remote(self._env) for _ in range(self.workers)]
        self._idle = list(self._actors)
        self._queue: list[Task] = []
        self._running: dict = {}  # ObjectRef -> (actor, task, started)

    def submit(self, task: Task) -> None:
        self._queue.append(task)
        self._dispatch()

    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            actor, task = self._idle.pop(0), self._queue.pop(0)
            self._running[actor.run.remote(task)] = (actor, task, time.time())

    def results(self, timeout: float | None = None) -> list[dict]:
        self._dispatch()
        if not self._running:
            return []
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            actor, task, started = self._running.pop(ref)
            try:
                out.append(self._ray.get(ref))
                self._idle.append(actor)
            except Exception as exc:  # the actor died twice (or Ray lost the task)
                log.warning("%s: Ray task failed: %s", task.video_id, exc)
                replacement = self._actor_cls.remote(self._env)
                self._actors = [a for a in self._actors if a is not actor] + [replacement]
                self._idle.append(replacement)
                out.append({"task": task.id, "video_id": task.video_id, "kind": task.kind, "ok": False,
                            "error": f"WorkerCrashed: the Ray worker died while analysing it, twice "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})",
                            "pid": None, "host": None, "node": None, "started": started,
                            "seconds": time.time() - started})
        self._dispatch()
        return out

    def worker_pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self._actors])

    def close(self) -> None:
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:
                pass
        self._actors, self._idle, self._running, self._queue = [], [], {}, []
        if self._owns_ray:
            self._ray.shutdown()
