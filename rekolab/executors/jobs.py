"""Start* jobs on an executor: ``REKOLAB_EXECUTOR=local|ray`` or ``rk.client(executor=...)``.

``JobManager._run`` keeps everything a job is (job.json, tokens, limits,
notifications, IN_PROGRESS -> SUCCEEDED | FAILED, "interrupted" at exit) and asks
a :class:`JobRunner` only for the job's rows: the video goes to a worker as a
:class:`~rekolab.executors.work.Task`, as in a dataset run. With more than one
worker, a video longer than ``segment_s`` (``REKOLAB_SEGMENT_S``, default 600)
whose operation has a segmentation policy is split into segments that run in
parallel, merged and finalized exactly as :mod:`rekolab.datasets` does it. The
driver (the job's process) writes the results; a worker that dies is retried by
the executor, then the job FAILS with the cause.

One executor per :class:`JobManager`, made on the first job (so a client that
never starts a job starts no worker); a pump thread routes results to the jobs
waiting for them, so jobs of several threads share the workers.
"""
from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import Future
from typing import Callable

from .work import Task, table_from_bytes, table_to_bytes

__all__ = ["JobRunner", "JOB_EXECUTORS", "WorkerFailed", "job_executor_name"]

JOB_EXECUTORS = ("thread", "local", "ray")
DEFAULT_SEGMENT_S = 600.0


class WorkerFailed(Exception):
    """The task failed on its worker (the worker's error, after the executor's retry)."""


def job_executor_name(name: str | None = None) -> str:
    """``name``, else ``REKOLAB_EXECUTOR``, else ``"thread"`` (in-process); checked."""
    from ..errors import InvalidParameterException

    name = name or os.environ.get("REKOLAB_EXECUTOR") or "thread"
    if name not in JOB_EXECUTORS:
        raise InvalidParameterException(f"executor {name!r} is not one of {', '.join(JOB_EXECUTORS)}")
    return name


class JobRunner:
    """Runs one job's analysis on a shared executor (see the module docstring)."""

    def __init__(self, name: str, *, workers: int | None = None, address: str | None = None,
                 segment_s: float | None = None):
        self.name, self._workers, self._address = name, workers, address
        self.segment_s = float(segment_s or os.environ.get("REKOLAB_SEGMENT_S") or DEFAULT_SEGMENT_S)
        self._executor = None
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}
        self._pump: threading.Thread | None = None

    @property
    def executor(self):
        with self._lock:
            if self._executor is None:
                from . import get_executor

                self._executor = get_executor(self.name, workers=self._workers, address=self._address)
            return self._executor

    def _submit(self, task: Task) -> Future:
        executor = self.executor
        future: Future = Future()
        with self._lock:
            self._futures[task.id] = future
            executor.submit(task)
            if self._pump is None or not self._pump.is_alive():
                self._pump = threading.Thread(target=self._route, name="rekolab-job-executor", daemon=True)
                self._pump.start()
        return future

    def _route(self) -> None:
        while True:
            with self._lock:
                if not self._futures:
                    self._pump = None
                    return
                try:
                    results = self._executor.results(timeout=0.2)
                except Exception as exc:  # the executor itself broke: every waiting job fails
                    results = [{"task": t, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                               for t in self._futures]
                futures = [(self._futures.pop(r["task"], None), r) for r in results]
            for future, result in futures:
                if future is not None:
                    future.set_result(result)

    def _wait(self, futures: list[Future], stop: threading.Event, interrupted: Callable[[], Exception]):
        for future in futures:
            while True:
                if stop.is_set():
                    raise interrupted()
                try:
                    result = future.result(timeout=0.2)
                    break
                except TimeoutError:
                    continue
            if not result["ok"]:
                raise WorkerFailed(result["error"])
            yield result

    def run(self, path: str, operation: str, params: dict, *, home: str, stop: threading.Event,
            interrupted: Callable[[], Exception], on_total: Callable[[int], None],
            on_frames: Callable[[int], None]) -> dict:
        """Analyse ``path`` with ``operation``: ``{"table", "models", "sampled_frames",
        "workers", "segments"}``. Raises :class:`WorkerFailed` with the worker's error,
        or ``interrupted()`` once ``stop`` is set."""
        from .segments import merge_group, plan_segments, policy_for

        operations = [(operation, {k: v for k, v in params.items() if k != "Video"})]
        policy = policy_for(operation)
        split_s = self.segment_s if policy is not None and self.executor.workers > 1 else None
        workers = []

        def task(kind, **kw) -> Future:
            return self._submit(Task(id=uuid.uuid4().hex, kind=kind, video_id=os.path.basename(path),
                                     path=str(path), operations=operations, home=home, **kw))

        def seen(result):
            workers.append({k: result.get(k) for k in ("pid", "host", "node", "kind", "seconds")})
            return result

        (first,) = map(seen, self._wait([task("video", split_s=split_s)], stop, interrupted))
        segments, source = [None], first
        if "split" in first:
            split = first["split"]
            on_total(split["samples"])
            rate = params.get("SampleRate") or 5.0
            segments = plan_segments(split["samples"], split["duration_ms"], self.segment_s, rate,
                                     bool(policy["identity"]))
            futures = [task("segment", segment=seg) for seg in segments]
            parts = []
            for seg, result in zip(segments, self._wait(futures, stop, interrupted)):
                source = source if parts else result  # models and sample count: any segment's
                seen(result)
                on_frames(seg[2] - seg[1])
                parts.append(({op: table_from_bytes(b) for op, b in result["tables"].items()},
                              result["first"], result.get("finalize", {})))
            merged, needs = merge_group(parts, [(operation, policy["identity"])])
            table = merged[operation]
            if needs[operation]:  # whole-video decisions, once, on a worker holding the models
                (done,) = self._wait([task("finalize", tables={operation: table_to_bytes(table)})],
                                     stop, interrupted)
                table = table_from_bytes(seen(done)["tables"][operation])
        else:
            on_total(first["sampled_frames"])
            on_frames(first["sampled_frames"])
            table = table_from_bytes(first["tables"][operation])
        return {"table": table, "models": (source.get("models") or {}).get(operation, {}),
                "sampled_frames": source["sampled_frames"], "workers": workers, "segments": len(segments)}

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.close()
