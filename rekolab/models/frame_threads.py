"""The frames of a batch run side by side on the CPU, one onnxruntime thread each.

onnxruntime runs one call's operators on a pool of one thread per core. rekolab's
per-frame graphs are small (SCRFD 500m, YOLOX-nano, NudeNet 320n, MobileFaceNet), and
on them that pool spends much of each call handing work between its threads. Two
frames at once, each on one thread of its own session, keep 2 cores busier: measured
on the 2-core CPU (2026-12-02, ms per frame, one frame per call unless marked):

======================  ==============  ==========================
graph                   one call,       two calls at once,
                        2 threads       1 thread each
======================  ==============  ==========================
YOLOX-nano 416x416      22.0-23.1       13.8-15.7
SCRFD 500m 640x384      11.3-13.7       9.6-10.5
NudeNet 320n, 4 frames  28.3            20.7
======================  ==============  ==========================

The outputs are the same to the bit: onnxruntime's CPU kernels split the work
between threads without changing any sum's order (compared on those graphs, and by
``tests/test_frame_threads.py`` and ``tests/test_backend.py`` through the jobs' own code).

* :func:`frame_map` runs ``fn`` over items on up to :func:`frame_threads` threads and
  returns the results in order. Inside ``fn``, an onnxruntime :class:`OnnxModel` runs on
  :func:`narrow_session`, a one-thread session of the same file; everywhere else it
  keeps its shared session and that session's thread pool.
* ``REKOLAB_FRAME_THREADS``: how many (default: the cores this process may use, at
  most 4; ``1`` turns it off). A nested :func:`frame_map` (called from inside ``fn``)
  runs in its caller's thread.
* Only for onnxruntime on the CPU: torch modules and CUDA sessions take whole batches
  instead (``OnnxModel.frame_parallel``).
"""
from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

from . import on_release, require, session_options

__all__ = ["frame_threads", "frame_map", "in_frame_thread", "narrow_session"]

#: The default's cap: past a few cores, one frame per core means batches of more
#: frames than an analyzer usually asks for (4-16), and nothing here measured it.
MAX_DEFAULT_THREADS = 4

_local = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def frame_threads() -> int:
    """Frames run at once by :func:`frame_map` (``REKOLAB_FRAME_THREADS``)."""
    raw = os.environ.get("REKOLAB_FRAME_THREADS", "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ValueError(f"REKOLAB_FRAME_THREADS must be a whole number, got {raw!r}") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_THREADS))


def in_frame_thread() -> bool:
    """True inside a function :func:`frame_map` runs on its threads."""
    return getattr(_local, "active", False)


def _pool(n: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(n)
        if pool is None:
            pool = _pools[n] = ThreadPoolExecutor(n, thread_name_prefix="rekolab-frame")
        return pool


def _marked(fn, item):
    _local.active = True  # the pool's threads only ever run frame work
    return fn(item)


def frame_map(fn, items, *, parallel: bool = True) -> list:
    """``[fn(item) for item in items]``, up to :func:`frame_threads` at once when
    ``parallel`` (pass ``model.frame_parallel``); in order. When ``fn`` raises, the
    items not started are dropped, the ones running end, and the exception of the
    first failed item (in item order) is raised here; so is a Ctrl-C."""
    items = list(items)
    n = frame_threads() if parallel else 1
    if n < 2 or len(items) < 2 or in_frame_thread():
        return [fn(item) for item in items]
    pool = _pool(n)
    futures: list[Future] = []
    try:
        for item in items:
            futures.append(pool.submit(_marked, fn, item))
    except RuntimeError:
        # The interpreter is exiting (concurrent.futures takes no new work then) while
        # a job thread is still in a batch: that batch ends in this thread, so the job
        # stops as interrupted, not with this error.
        _drop(futures)
        return [fn(item) for item in items]
    try:
        return [f.result() for f in futures]
    except BaseException:
        _drop(futures)
        raise


def _drop(futures: list[Future]) -> None:
    """Cancel what has not started and wait for what has."""
    for f in futures:
        f.cancel()
    wait(futures)


_narrow_lock = threading.Lock()


def narrow_session(path: str):
    """A one-thread CPU onnxruntime session of ``path`` (rekolab's options otherwise),
    shared by the frame threads (a session runs concurrent calls); made once, even
    when the first batch's threads all ask at once."""
    with _narrow_lock:
        return _narrow_session(path)


@functools.lru_cache(maxsize=32)
def _narrow_session(path: str):
    ort = require("onnxruntime", "faces")
    options = session_options()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def _forget_pools() -> None:
    """In a forked child the pools' threads do not exist: make new ones on first use."""
    global _pools_lock, _narrow_lock
    _pools.clear()
    _pools_lock = threading.Lock()
    _narrow_lock = threading.Lock()


on_release(_narrow_session.cache_clear)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)
