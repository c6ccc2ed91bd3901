"""The analysis of one video, or one time segment of it: what every executor runs.

* :func:`stream_analysis` is the job loop: sampled frames are decoded in batches
  of :data:`BATCH_SIZE` on a prefetch thread and each batch goes through the
  operation's analyzer. ``JobManager._run`` streams its output into the job's
  parquet file; :func:`analyze_video` collects it into one Arrow table.
* :func:`finalize_table` applies an analyzer's whole-video decisions (its
  ``finalize(table)``, e.g. one celebrity name per appearance).
* :func:`run_task` is a worker's entry point (a process of the local pool or a
  Ray actor): a :class:`Task` in, a picklable result dict with Arrow IPC bytes out.

A **segment** ``(warm_start, start, end)`` is a slice of the video's sample
positions: the sampled frames are chosen over the *whole* video (the decode plan)
and then partitioned, so a segmented run analyses exactly the frames a single
run does, with the same timestamps. Boundaries are multiples of BATCH_SIZE, so
every model sees the same batches as in a single run. ``warm_start < start``
runs the analyzer over a few frames before the segment first (their rows are
returned too, marked by ``start``), so trackers reach the boundary with the
state a single run has there; :mod:`rekolab.executors.segments` stitches them.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pyarrow as pa

__all__ = ["BATCH_SIZE", "Task", "stream_analysis", "finalize_table", "analyze_video", "run_task",
           "table_to_bytes", "table_from_bytes"]

BATCH_SIZE = 16


def stream_analysis(analyzer, plan, *, stop: threading.Event | None = None,
                    on_frames: Callable[[int], None] | None = None) -> Iterator[pa.RecordBatch]:
    """Run ``analyzer`` over every batch of ``plan``; yield each batch's rows
    (possibly empty) and report the frames done to ``on_frames``. An analyzer may
    ask for larger batches (``analyzer.batch_size``: GPU analyzers do)."""
    batch_size = getattr(analyzer, "batch_size", BATCH_SIZE)
    for batch in plan.batches(batch_size, prefetch=2, stop=stop):
        out = analyzer(batch)
        yield out
        if on_frames is not None:
            on_frames(len(batch))


def finalize_table(analyzer, table: pa.Table) -> pa.Table:
    """The analyzer's whole-video decisions over its streamed rows (if it has any)."""
    finalize = getattr(analyzer, "finalize", None)
    return table if finalize is None else finalize(table)


@dataclass
class Task:
    """One unit of work for a worker.

    ``kind``: ``"video"`` (all sampled frames; a video longer than ``split_s``
    answers with its sample counts instead, so the driver can segment it),
    ``"segment"`` (sample positions ``segment = (warm_start, start, end)``, rows
    not finalized) or ``"finalize"`` (``tables`` holds the merged raw rows).
    ``operations``: ``[(Start* operation, canonical parameters without Video)]``,
    all with the same SampleRate, analysed over one decode of the video.
    ``home``: the rekolab home the task reads (collections, galleries) when it is
    not the worker's own (a job's home, fixed when it started)."""

    id: str
    kind: str
    video_id: str
    path: str
    operations: list
    segment: tuple | None = None
    split_s: float | None = None
    tables: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)
    home: str | None = None


def _sample_rate(operations) -> float:
    from ..video import DEFAULT_SAMPLE_RATE

    return float(operations[0][1].get("SampleRate") or DEFAULT_SAMPLE_RATE)


def analyze_video(path, operations, *, segment: tuple | None = None, stop=None,
                  on_frames=None, plan=None) -> dict:
    """Analyse one video (or one segment of it) with every operation of ``operations``
    over a single decode. Returns ``{"tables": {op: Table}, "models": {op: dict},
    "finalize": {op: bool}, "sampled_frames": int, "frames": int}``; tables are
    finalized unless ``segment`` is given."""
    from ..analysis import analyzer_for
    from ..video import plan as plan_decode

    analyzers = {op: analyzer_for(op, dict(params, Video={"Path": str(path)}))
                 for op, params in operations}
    if plan is None:
        own = [a for a in analyzers.values() if hasattr(a, "decode_plan")]  # alone in its group
        plan = own[0].decode_plan(path) if own else plan_decode(path, _sample_rate(operations))
    sampled = len(plan)
    if segment is not None:
        warm, _, end = segment
        plan = plan.part(warm, end)
    batches: dict[str, list] = {op: [] for op in analyzers}
    frames = 0

    def every(batch):
        return {op: analyzer(batch) for op, analyzer in analyzers.items()}

    def count(n):
        nonlocal frames
        frames += n
        if on_frames is not None:
            on_frames(n)

    for outs in stream_analysis(every, plan, stop=stop, on_frames=count):
        for op, out in outs.items():
            if out.num_rows:
                batches[op].append(out)
    tables = {}
    for op, analyzer in analyzers.items():
        table = pa.Table.from_batches(batches[op], schema=analyzer.schema)
        if segment is None:
            table = finalize_table(analyzer, table)
        elif "SampleIndex" in table.column_names:  # counted from the segment's first frame
            i = table.schema.get_field_index("SampleIndex")
            table = table.set_column(i, "SampleIndex", pa.compute.add(table.column(i), segment[0]))
        tables[op] = table
    return {"tables": tables, "models": {op: a.models() for op, a in analyzers.items()},
            "finalize": {op: hasattr(a, "finalize") for op, a in analyzers.items()},
            "sampled_frames": sampled, "frames": frames}


def table_to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def table_from_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def local_copy(path: str, identity: dict | None = None) -> str:
    """A local file for ``path``: itself, or an fsspec URL (``s3://...``) copied into
    the rekolab home's cache, keyed by the URL and its content identity (ETag), so a
    changed object is fetched again."""
    if path.startswith("file://"):
        return path[7:]
    if "://" not in path:
        return path
    import hashlib

    import fsspec

    from .. import store

    key = hashlib.sha256(f"{path}\n{sorted((identity or {}).items())}".encode()).hexdigest()[:24]
    suffix = os.path.splitext(path)[1][:8]
    cache = store.home() / "cache" / "datasets" / f"{key}{suffix}"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.part")
        from ..errors import InvalidS3ObjectException

        try:
            with fsspec.open(path, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(8 << 20):
                    dst.write(chunk)
            os.replace(tmp, cache)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise InvalidS3ObjectException(f"Unable to get object {path}: {exc}") from None
    return str(cache)


def worker_identity() -> dict:
    node = None
    try:
        import sys

        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                node = ray.get_runtime_context().get_node_id()
    except Exception:  # not inside Ray
        node = None
    return {"pid": os.getpid(), "host": socket.gethostname(), "node": node}


def run_task(task: Task) -> dict:
    """Run one task; never raises (a failure is ``{"ok": False, "error": ...}``)."""
    t0 = time.time()
    result = {"task": task.id, "video_id": task.video_id, "kind": task.kind, **worker_identity(),
              "started": t0}
    try:
        if task.home:
            os.environ["REKOLAB_HOME"] = task.home  # one task at a time per worker process
        result.update(_run(task))
        result["ok"] = True
    except Exception as exc:
        from ..video import VideoDecodeError

        result["ok"] = False
        if isinstance(exc, VideoDecodeError):
            result["error"] = f"Video decoding failed: {exc}"
        else:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
            result["error"] = f"{code or type(exc).__name__}: {_message(exc)}"
        result["traceback"] = traceback.format_exc(limit=6)
    result["seconds"] = time.time() - t0
    return result


def _message(exc) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Message"):
        return response["Error"]["Message"]
    return str(exc)


def _run(task: Task) -> dict:
    from ..video import probe, resolve_video

    if task.kind == "finalize":
        from ..analysis import analyzer_for

        out = {}
        for op, params in task.operations:
            if op not in task.tables:
                continue  # an operation of the group without finalize: merged by the driver
            analyzer = analyzer_for(op, dict(params, Video={"Path": task.path}))
            out[op] = table_to_bytes(finalize_table(analyzer, table_from_bytes(task.tables[op])))
        return {"tables": out}
    path = local_copy(task.path, task.identity)
    video = resolve_video({"Path": path}, {})  # the job's checks: missing, empty, too large
    metadata = probe(video.path)
    out = {"video_metadata": metadata.to_dict()}
    from ..video import plan as plan_decode
    from .policies import own_decode

    if any(own_decode(op) for op, _ in task.operations):  # it plans its own decode, unsplit
        done = analyze_video(video.path, task.operations)
        return {**out, **_picklable(done)}
    plan = plan_decode(video.path, _sample_rate(task.operations))
    if task.kind == "video" and task.split_s and metadata.duration_ms > task.split_s * 1000:
        out["split"] = {"samples": len(plan), "duration_ms": metadata.duration_ms}
        return out
    if task.segment is not None:
        start = task.segment[1]
        out["first"] = {"FrameNumber": int(plan.indices[start]), "Timestamp": int(plan.timestamps_ms[start])}
    done = analyze_video(video.path, task.operations, segment=task.segment, plan=plan)
    return {**out, **_picklable(done)}


def _picklable(done: dict) -> dict:
    """``analyze_video``'s answer with its tables as Arrow IPC bytes."""
    return {**done, "tables": {op: table_to_bytes(t) for op, t in done["tables"].items()}}
