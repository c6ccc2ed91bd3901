"""A pool of worker processes on this machine.

Hand-rolled on ``multiprocessing`` (spawned processes, one pipe each) rather than
``concurrent.futures.ProcessPoolExecutor``: when a worker dies, that pool breaks
every task in flight, so it cannot tell whose video killed it. Here each worker
holds one task at a time, so a death is charged to its own task only: the task is
retried once on a fresh worker, then reported FAILED with the cause.

Workers: the ``workers`` argument, else ``REKOLAB_WORKERS``, else 1. Each
process loads its models on its first task and keeps them (the face pack and
onnxruntime sessions are cached per process). Workers die with the driver
(``PR_SET_PDEATHSIG`` on Linux), so a killed run leaves no process behind.
"""
from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import time

from .environment import worker_env
from .work import Task

__all__ = ["LocalExecutor"]

log = logging.getLogger("rekolab.executors")


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: workers still exit when their pipe closes
        pass


def _worker_main(conn, env: dict) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    os.environ.update(env)
    from .work import run_task

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            conn.send(run_task(task))
        except (BrokenPipeError, OSError):
            return


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Worker:
    def __init__(self, ctx, env):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, env), daemon=True,
                                   name="rekolab-worker")
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.since = 0.0


class LocalExecutor:
    """Worker processes on this machine (see the module docstring)."""

    kind = "local"

    def __init__(self, workers: int | None = None, max_attempts: int = 2):
        self.workers = int(workers or os.environ.get("REKOLAB_WORKERS") or 1)
        self.max_attempts = max_attempts
        self._ctx = mp.get_context("spawn")  # no fork of a driver that holds threads or models
        self._env = worker_env()
        self._pool: list[_Worker] = []
        self._queue: collections.deque[Task] = collections.deque()
        self._attempts: collections.Counter = collections.Counter()
        self._closed = False

    def submit(self, task: Task) -> None:
        self._queue.append(task)
        self._dispatch()

    def pending(self) -> int:
        return len(self._queue) + sum(1 for w in self._pool if w.task is not None)

    def _dispatch(self) -> None:
        while self._queue and not self._closed:
            worker = next((w for w in self._pool if w.task is None), None)
            if worker is None:
                if len(self._pool) >= self.workers:
                    return
                worker = _Worker(self._ctx, self._env)
                self._pool.append(worker)
            task = self._queue.popleft()
            worker.task, worker.since = task, time.time()
            try:
                worker.conn.send(task)
            except (BrokenPipeError, OSError):
                pass  # it died before taking the task: results() retries it

    def results(self, timeout: float | None = None) -> list[dict]:
        self._dispatch()
        busy = [w for w in self._pool if w.task is not None]
        if not busy:
            return []
        waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        multiprocessing.connection.wait(waitables, timeout)
        out = []
        for w in busy:
            result = None
            try:
                if w.conn.poll():
                    result = w.conn.recv()
            except (EOFError, OSError):
                result = None
            if result is not None:
                w.task = None
                out.append(result)
            elif not w.process.is_alive():
                out.extend(self._died(w))
        self._dispatch()
        return out

    def _died(self, worker: _Worker) -> list[dict]:
        task = worker.task
        worker.process.join(1)
        self._pool.remove(worker)
        worker.conn.close()
        self._attempts[task.id] += 1
        cause = (f"the worker process (pid {worker.process.pid}) died ({describe_exit(worker.process.exitcode)}) "
                 f"while analysing it")
        if self._attempts[task.id] < self.max_attempts:
            log.warning("%s: %s; retrying on a new worker", task.video_id, cause)
            self._queue.appendleft(task)
            return []
        return [{"task": task.id, "video_id": task.video_id, "kind": task.kind, "ok": False,
                 "error": f"WorkerCrashed: {cause}, {self._attempts[task.id]} times",
                 "pid": worker.process.pid, "host": os.uname().nodename, "node": None,
                 "started": worker.since, "seconds": time.time() - worker.since}]

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.process.is_alive()]

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        for w in self._pool:
            try:
                if w.task is None:
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._pool:
            w.process.join(2 if w.task is None else 0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(2)
            w.conn.close()
        self._pool.clear()
