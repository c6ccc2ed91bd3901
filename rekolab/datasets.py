"""Dataset runs: many videos, one resumable run, one partitioned parquet dataset.

    run = rk.analyze("clips/**/*.mp4", operations=["faces", "labels"], out="runs/exp1", workers=2)
    run.wait()                   # one progress bar: videos done / failed, frames per second
    run.to_pandas("faces")       # one table with a `video` column
    run.failures()               # FAILED videos with their StatusMessage

**Inputs**: a glob (``**`` recursive), a folder (every video file under it), one
file, an fsspec URL or prefix (``s3://bucket/prefix/``, needs s3fs), a list of
any of these, or a pandas DataFrame / Arrow table with a ``path`` column (its
other columns are carried into :meth:`DatasetRun.manifest` and ``to_pandas``).

**Operations**: ``faces``, ``labels``, ``celebrities``, ``search`` (face search),
any Start* name registered in :mod:`rekolab.analysis` (``StartFaceDetection``) or
its snake-case name (``face_detection``); a list, or ``{name: {Parameter: value}}``
with the Start* request's parameters (PascalCase or snake_case; no Video).

**Output** (``out``, a local folder)::

    out/<operation>/video=<id>/part-0.parquet   rows exactly as the single-video job's
    out/_rekolab/run.json                       operations, canonical parameters, versions
    out/_rekolab/videos/<id>.json               per video: status, identity, timings, worker

Files and folders starting with ``_`` are not data to pyarrow, DuckDB's hive
reader or Polars. A video's partitions are written in a temporary folder under
``out/_rekolab/tmp`` and renamed into place, then its record is written: a killed
run never leaves half a partition. A partition without a SUCCEEDED record (a crash
between the two steps) is removed when the run is opened again.

**Resume**: a video is skipped when its record is SUCCEEDED and its content
identity is unchanged: size, mtime and the SHA-256 of its first and last MiB (a
remote object: its ETag, or size and mtime when there is none). Parameters are
run-wide: an ``out`` folder holding a run with other parameters is refused unless
``new_run=True`` (which deletes that run's outputs first).
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import store
from .errors import InvalidParameterException, InvalidS3ObjectException

__all__ = ["analyze", "DatasetRun", "VIDEO_EXTENSIONS", "operation_table"]

log = logging.getLogger("rekolab.datasets")

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                              ".mts", ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".mxf"})
#: Short names of Start* operations (used when the operation is registered).
ALIASES = {
    "faces": "StartFaceDetection", "labels": "StartLabelDetection",
    "celebrities": "StartCelebrityRecognition", "search": "StartFaceSearch",
    "segments": "StartSegmentDetection", "text": "StartTextDetection",
    "moderation": "StartContentModeration", "persons": "StartPersonTracking",
}
_GLOB = re.compile(r"[*?\[]")
_META = "_rekolab"
_RUN_VERSION = 1
_MIB = 1 << 20


# -- operations ------------------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def operation_table() -> dict[str, tuple[str, str]]:
    """Every accepted operation name -> ``(Start* operation, output folder name)``,
    built from :mod:`rekolab.analysis`'s registry (a new analyzer is picked up as is)."""
    from .analysis import _ANALYZERS

    folder = {op: _snake(op[len("Start"):]) for op in _ANALYZERS}
    folder.update({op: alias for alias, op in ALIASES.items() if op in _ANALYZERS})
    table = {}
    for op in _ANALYZERS:
        for name in (op, _snake(op[len("Start"):]), folder[op]):
            table[name] = (op, folder[op])
    return table


def _pascal(key: str) -> str:
    return key if key[:1].isupper() else "".join(p[:1].upper() + p[1:] for p in key.split("_"))


def _canonical_number(value):
    """2.0 and 2 are the same parameter (a CLI gives floats, Python code ints)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical_number(v) for v in value]
    return value


def resolve_operations(operations, sample_rate: float | None = None) -> dict[str, tuple[str, dict]]:
    """``{folder: (Start* operation, canonical parameters)}``, validated by the
    Start* request's own rules (unknown parameters and bad values raise now)."""
    from .requests import EXTENSIONS, parse_start

    if isinstance(operations, str):
        operations = [operations]
    if isinstance(operations, dict):
        items = list(operations.items())
    elif isinstance(operations, (list, tuple)) and operations:
        items = [(name, {}) for name in operations]
    else:
        raise InvalidParameterException(
            "operations must be a non-empty list of operation names or a {name: parameters} dict")
    table = operation_table()
    out: dict[str, tuple[str, dict]] = {}
    for name, params in items:
        if not isinstance(name, str) or name not in table:
            known = sorted({folder for _, folder in table.values()})
            raise InvalidParameterException(
                f"unknown operation {name!r}; use one of {', '.join(known)} or a Start* operation name")
        op, folder = table[name]
        if folder in out:
            raise InvalidParameterException(f"operation {name!r} is given twice")
        if not isinstance(params, dict):
            raise InvalidParameterException(f"the parameters of {name!r} must be a dict, not {type(params).__name__}")
        params = {_pascal(k): v for k, v in (params or {}).items()}
        if "Video" in params:
            raise InvalidParameterException(f"{name}: Video comes from the dataset's inputs, not the parameters")
        if sample_rate is not None and "SampleRate" not in params and "SampleRate" in EXTENSIONS.get(op, {}):
            params["SampleRate"] = sample_rate  # operations that sample (segment detection reads every frame)
        request, _ = parse_start(op, {"Video": {"Path": "dataset-video.mp4"}, **params})
        canonical = {k: _canonical_number(v) for k, v in request.params.items()
                     if k not in ("Video", "JobTag", "NotificationChannel")}
        out[folder] = (op, canonical)
    return out


# -- inputs ----------------------------------------------------------------------------------


@dataclass
class VideoInput:
    id: str
    uri: str
    extra: dict = field(default_factory=dict)


def _is_video(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _video_id(uri: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.splitext(os.path.basename(uri.rstrip("/")))[0])[:48]
    return f"{stem or 'video'}-{hashlib.sha256(uri.encode()).hexdigest()[:10]}"


def _expand_remote(spec: str) -> list[str]:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(spec)
        if _GLOB.search(root):
            found = fs.glob(root)
        elif fs.isdir(root):
            found = [p for p in fs.find(root) if _is_video(p)]
        elif fs.exists(root):
            found = [root]
        else:
            found = []
    except ImportError as exc:
        raise InvalidParameterException(f"reading {spec} needs an fsspec filesystem: {exc}") from None
    except Exception as exc:
        raise InvalidS3ObjectException(f"unable to list {spec}: {type(exc).__name__}: {exc}") from None
    return [p if "://" in p else fs.unstrip_protocol(p) for p in found]


def _expand(spec) -> list[str]:
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise InvalidParameterException(f"an input must be a path, glob or URL, not {spec!r}")
    if spec.startswith("file://"):
        spec = spec[7:]
    if "://" in spec:
        return _expand_remote(spec)
    spec = os.path.expanduser(spec)
    if _GLOB.search(spec):
        found = [p for p in globlib.glob(spec, recursive=True) if os.path.isfile(p)]
    elif os.path.isdir(spec):
        found = [str(p) for p in Path(spec).rglob("*") if p.is_file() and _is_video(p.name)]
    elif os.path.exists(spec):
        found = [spec]
    else:
        raise InvalidParameterException(f"input {spec!r} does not exist (no such file, folder or glob match)")
    return [os.path.abspath(p) for p in found]


def collect_inputs(inputs, path_column: str = "path") -> list[VideoInput]:
    """The videos of ``inputs`` (see the module docstring), in a stable order."""
    rows: list[tuple[str, dict]] = []
    if hasattr(inputs, "to_pylist") or hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):
        table = inputs if isinstance(inputs, pa.Table) else pa.Table.from_pandas(inputs, preserve_index=False)
        if path_column not in table.column_names:
            raise InvalidParameterException(
                f"the input table has no {path_column!r} column (columns: {', '.join(table.column_names)})")
        if "video" in table.column_names:
            raise InvalidParameterException("the input table's column 'video' is reserved for the video id")
        for row in table.to_pylist():
            path = row.pop(path_column)
            for uri in _expand(path):
                rows.append((uri, row))
    else:
        specs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not specs:
            raise InvalidParameterException("inputs is empty: give a glob, folder, URL, list or table of videos")
        for spec in specs:
            rows += [(uri, {}) for uri in sorted(_expand(spec))]
    seen: dict[str, VideoInput] = {}
    for uri, extra in rows:
        if uri not in seen:
            seen[uri] = VideoInput(_video_id(uri), uri, extra)
    if not seen:
        raise InvalidParameterException(f"the inputs {inputs!r} match no video file")
    return list(seen.values())


def content_identity(uri: str) -> dict:
    """What says a video is unchanged (see the module docstring)."""
    if "://" in uri:
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
        etag = info.get("ETag") or info.get("etag") or info.get("md5")
        out = {"size": int(info.get("size") or 0)}
        if etag:
            out["etag"] = str(etag).strip('"')
        else:
            out["mtime"] = str(info.get("LastModified") or info.get("mtime") or info.get("created") or "")
        return out
    st = os.stat(uri)
    h = hashlib.sha256()
    with open(uri, "rb") as f:
        h.update(f.read(_MIB))
        if st.st_size > 2 * _MIB:
            f.seek(-_MIB, os.SEEK_END)
        h.update(f.read(_MIB))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_head_tail": h.hexdigest()}


# -- the run ---------------------------------------------------------------------------------


def _fingerprint(operations: dict) -> str:
    text = json.dumps({k: list(v) for k, v in operations.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class DatasetRun:
    """A dataset run (see the module docstring); returned by :func:`rekolab.analyze`.

    The work happens on a background thread of this process; ``wait()`` blocks
    (with a progress bar). ``DatasetRun.open(out)`` reads a finished run."""

    def __init__(self, out: Path, operations: dict, videos: list[VideoInput], run_info: dict):
        self.out = out
        self.operations = operations
        self.videos = videos
        self.info = run_info
        self._done = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.counts = {"done": 0, "failed": 0, "skipped": 0, "total": len(videos)}
        self.frames = 0
        self.started = time.time()
        self.error: BaseException | None = None
        self._executor = None
        self._thread: threading.Thread | None = None

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def open(cls, out) -> "DatasetRun":
        """A handle on the run stored in ``out`` (for reading its results)."""
        out = Path(out)
        try:
            info = store.read_json(out / _META / "run.json")
        except FileNotFoundError:
            raise InvalidParameterException(f"{out} holds no rekolab dataset run") from None
        ops = {k: (v["Operation"], v["Parameters"]) for k, v in info["Operations"].items()}
        run = cls(out, ops, [], info)
        run._done.set()
        return run

    def _records(self) -> list[dict]:
        folder = self.out / _META / "videos"
        records = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                records.append(store.read_json(path))
            except (OSError, ValueError):
                continue
        order = {v.id: i for i, v in enumerate(self.videos)}
        records.sort(key=lambda r: (order.get(r["video"], len(order)), r["video"]))
        return records

    def _operation(self, operation: str | None) -> str:
        if operation is None:
            if len(self.operations) != 1:
                raise InvalidParameterException(
                    f"this run has several operations ({', '.join(self.operations)}); name one")
            return next(iter(self.operations))
        table = operation_table()
        folder = table[operation][1] if operation in table else operation
        if folder not in self.operations:
            raise InvalidParameterException(
                f"operation {operation!r} is not in this run ({', '.join(self.operations)})")
        return folder

    def to_arrow(self, operation: str | None = None):
        """The committed rows of ``operation`` as a ``pyarrow.dataset.Dataset``
        (hive-partitioned: the ``video`` column is the partition key)."""
        import pyarrow.dataset as ds

        folder = self._operation(operation)
        files = [str(self.out / folder / f"video={r['video']}" / "part-0.parquet")
                 for r in self._records() if r["status"] == "SUCCEEDED"]
        base = self.out / folder
        partitioning = ds.partitioning(pa.schema([("video", pa.string())]), flavor="hive")
        if not files:
            return ds.dataset([], schema=self._schema(folder).append(pa.field("video", pa.string())))
        return ds.dataset(files, format="parquet", partitioning=partitioning, partition_base_dir=str(base))

    def _schema(self, folder: str) -> pa.Schema:
        import importlib

        from .analysis import _ANALYZERS

        op = self.operations[folder][0]
        module, _, name = _ANALYZERS[op].partition(":")
        return getattr(importlib.import_module(module), name).schema

    def to_pandas(self, operation: str | None = None):
        """One DataFrame of ``operation``'s rows with a ``video`` column (first), plus
        the input table's extra columns; ``pd.ArrowDtype`` columns."""
        import pandas as pd

        table = self.to_arrow(operation).to_table()
        video = table.column("video")
        table = table.drop(["video"]).add_column(0, "video", video)
        df = table.to_pandas(types_mapper=pd.ArrowDtype)
        extras = [dict(video=r["video"], **r.get("extra", {})) for r in self._records() if r.get("extra")]
        if extras:
            df = df.merge(pd.DataFrame(extras).convert_dtypes(dtype_backend="pyarrow"), on="video", how="left")
        return df

    def manifest(self):
        """One row per video: status, message, path, identity, timings, worker and node
        ids, rows per operation, and the input table's extra columns."""
        import pandas as pd

        rows = []
        for r in self._records():
            row = {k: r.get(k) for k in ("video", "path", "status", "status_message", "attempts",
                                         "started", "completed", "seconds", "sampled_frames", "segments")}
            row["workers"] = [w.get("pid") for w in r.get("workers", [])]
            row["nodes"] = sorted({w.get("node") for w in r.get("workers", []) if w.get("node")})
            row["hosts"] = sorted({w.get("host") for w in r.get("workers", []) if w.get("host")})
            for folder, n in (r.get("rows") or {}).items():
                row[f"rows_{folder}"] = n
            row.update(r.get("extra") or {})
            rows.append(row)
        return pd.DataFrame(rows)

    def failures(self):
        """The FAILED videos: ``video``, ``path``, ``status_message``."""
        m = self.manifest()
        if m.empty:
            return m
        return m[m["status"] == "FAILED"][["video", "path", "status_message"]].reset_index(drop=True)

    @property
    def status(self) -> str:
        """IN_PROGRESS while videos are being analysed; then SUCCEEDED (every video
        SUCCEEDED), PARTIAL (some FAILED) or FAILED (the run itself stopped)."""
        if not self._done.is_set():
            return "IN_PROGRESS"
        if self.error is not None:
            return "FAILED"
        records = self._records()
        return "PARTIAL" if any(r["status"] == "FAILED" for r in records) else "SUCCEEDED"

    def __repr__(self) -> str:
        c = self.counts
        return (f"DatasetRun({self.out}, {', '.join(self.operations)}, {self.status}: "
                f"{c['done']} done, {c['skipped']} skipped, {c['failed']} failed of {c['total']})")

    # -- waiting ---------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, progress: bool = True) -> "DatasetRun":
        """Block until every video is done or failed; one tqdm bar (videos done,
        failed count and frames per second). Ctrl-C stops the run (resumable)."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.counts["total"], unit="video", desc="analyze")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._done.wait(0.25):
                if bar is not None:
                    self._update_bar(bar)
                if deadline is not None and time.monotonic() > deadline:
                    break
        except KeyboardInterrupt:
            self.stop()
            raise
        finally:
            if bar is not None:
                self._update_bar(bar)
                bar.close()
        if self.error is not None:
            raise self.error
        return self

    def _update_bar(self, bar) -> None:
        c = self.counts
        bar.n = c["done"] + c["failed"] + c["skipped"]
        elapsed = max(time.time() - self.started, 1e-6)
        bar.set_postfix(failed=c["failed"], fps=f"{self.frames / elapsed:.1f}", refresh=False)
        bar.refresh()

    def stop(self) -> None:
        """Stop the run: running videos are abandoned (a later run redoes them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    # -- running ---------------------------------------------------------------------------
    def _start(self, executor, segment_s: float | None) -> None:
        self._executor = executor
        self._thread = threading.Thread(target=self._main, args=(executor, segment_s),
                                        name="rekolab-dataset", daemon=True)
        self._thread.start()

    def _main(self, executor, segment_s) -> None:
        try:
            _Scheduler(self, executor, segment_s).execute()
        except BaseException as exc:  # the run stops; finished videos stay committed
            log.exception("dataset run %s stopped", self.out)
            self.error = exc
        finally:
            try:
                executor.close()
            finally:
                self._done.set()


class _Scheduler:
    """Turns videos into tasks, merges segment results, commits each video once."""

    def __init__(self, run: DatasetRun, executor, segment_s):
        from .executors.segments import own_decode, policy_for

        self.run, self.executor = run, executor
        # operations grouped by SampleRate: each group is one decode of the video
        # (an operation that plans its own decode is a group of its own)
        groups: dict[Any, list] = {}
        for folder, (op, params) in run.operations.items():
            key = ("own", op) if own_decode(op) else params.get("SampleRate")
            groups.setdefault(key, []).append((folder, op, params))
        self.groups = list(groups.values())
        self.policies = {folder: policy_for(op) for folder, (op, _) in run.operations.items()}
        self.segment_s = segment_s if (segment_s and executor.workers > 1) else None
        self.tasks: dict[str, tuple] = {}
        self.state: dict[str, dict] = {}

    def execute(self) -> None:
        run = self.run
        (run.out / _META / "tmp").mkdir(parents=True, exist_ok=True)
        for video in run.videos:
            previous = _read_record(run.out, video.id)
            try:
                identity = content_identity(video.uri)
            except Exception as exc:
                identity = {"error": str(exc)}
            if previous and previous.get("status") == "SUCCEEDED" and previous.get("identity") == identity:
                run.counts["skipped"] += 1
                if previous.get("extra") != video.extra:  # the input table's columns are the current ones
                    store.atomic_write_json(_record_path(run.out, video.id), {**previous, "extra": video.extra})
                continue
            st = self.state[video.id] = {
                "video": video, "identity": identity, "started": time.time(), "groups": len(self.groups),
                "tables": {}, "models": {}, "errors": [], "workers": [], "segments": {}, "sampled": None,
                "attempts": (previous or {}).get("attempts", 0) + 1, "metadata": None, "failed": set()}
            for g, group in enumerate(self.groups):
                self._submit(st, "video", g, split_s=self._split_s(group))
        while self.state and not run._stop.is_set():
            for result in self.executor.results(timeout=0.5):
                self._handle(result)

    def _split_s(self, group) -> float | None:
        if self.segment_s is None or any(self.policies[f] is None for f, _, _ in group):
            return None
        return self.segment_s

    def _submit(self, st: dict, kind: str, g: int, *, split_s=None, segment=None, index=None, tables=None):
        from .executors.work import Task

        group = self.groups[g]
        video = st["video"]
        task = Task(id=uuid.uuid4().hex, kind=kind, video_id=video.id, path=video.uri,
                    operations=[(op, params) for _, op, params in group], segment=segment,
                    split_s=split_s, tables=tables or {}, identity=st["identity"])
        self.tasks[task.id] = (video.id, g, kind, index)
        self.executor.submit(task)

    def _handle(self, result: dict) -> None:
        from .executors.segments import merge_group, plan_segments
        from .executors.work import table_from_bytes

        key = self.tasks.pop(result["task"], None)
        if key is None or key[0] not in self.state:
            return  # a video already given up on
        video_id, g, kind, index = key
        st = self.state[video_id]
        group = self.groups[g]
        st["workers"].append({k: result.get(k) for k in ("pid", "host", "node", "kind", "seconds")})
        if g in st["failed"]:
            return  # another task of this group failed already
        if not result["ok"]:
            st["errors"].append(result["error"])
            st["failed"].add(g)
            self._finish_group(st)
            return
        st["metadata"] = result.get("video_metadata") or st["metadata"]
        self.run.frames += result.get("frames", 0)
        names = {op: folder for folder, op, _ in group}
        if "split" in result:
            split = result["split"]
            rate = group[0][2].get("SampleRate") or 5.0
            stateful = any(self.policies[f]["identity"] for f, _, _ in group)
            segments = plan_segments(split["samples"], split["duration_ms"], self.segment_s, rate, stateful)
            st["segments"][g] = [None] * len(segments)
            for i, seg in enumerate(segments):
                self._submit(st, "segment", g, segment=seg, index=i)
            return
        tables = {op: table_from_bytes(data) for op, data in result["tables"].items()}
        st["models"].update({names[op]: m for op, m in (result.get("models") or {}).items()})
        st["sampled"] = result.get("sampled_frames", st["sampled"])
        if kind == "segment":
            parts = st["segments"][g]
            parts[index] = (tables, result["first"], result.get("finalize", {}))
            if any(p is None for p in parts):
                return
            merged, needs = merge_group(parts, [(op, self.policies[folder]["identity"]) for folder, op, _ in group])
            if any(needs.values()):
                from .executors.work import table_to_bytes

                # whole-video decisions run once, over the merged rows, on a worker
                # (it holds the models the decision needs, e.g. a celebrity gallery)
                st.setdefault("merged", {})[g] = {op: t for op, t in merged.items() if not needs[op]}
                self._submit(st, "finalize", g, tables={op: table_to_bytes(t) for op, t in merged.items()
                                                        if needs[op]})
                return
            tables = merged
        if kind == "finalize":
            tables = {**st.get("merged", {}).get(g, {}), **tables}
        for op, table in tables.items():
            st["tables"][names[op]] = table
        self._finish_group(st)

    def _finish_group(self, st: dict) -> None:
        st["groups"] -= 1
        if st["groups"] > 0:
            return
        video = st["video"]
        self.state.pop(video.id)
        record = {
            "video": video.id, "path": video.uri, "identity": st["identity"], "extra": video.extra,
            "started": st["started"], "completed": time.time(), "seconds": time.time() - st["started"],
            "attempts": st["attempts"], "workers": st["workers"], "video_metadata": st["metadata"],
            "sampled_frames": st["sampled"], "models": st["models"],
            "segments": max([len(s) for s in st["segments"].values()], default=1),
            "driver": {"host": socket.gethostname(), "pid": os.getpid()},
        }
        if st["errors"]:
            record.update(status="FAILED", status_message=st["errors"][0])
            self.run.counts["failed"] += 1
        else:
            try:
                record["rows"] = _commit(self.run.out, video.id, st["tables"], self.run.operations, record)
                record.update(status="SUCCEEDED", status_message=None)
                self.run.counts["done"] += 1
            except OSError as exc:
                record.update(status="FAILED", status_message=f"writing the results failed: {exc}")
                self.run.counts["failed"] += 1
        store.atomic_write_json(_record_path(self.run.out, video.id), record)


def _record_path(out: Path, video_id: str) -> Path:
    return out / _META / "videos" / f"{video_id}.json"


def _read_record(out: Path, video_id: str) -> dict | None:
    try:
        return store.read_json(_record_path(out, video_id))
    except (FileNotFoundError, ValueError):
        return None


def _commit(out: Path, video_id: str, tables: dict, operations: dict, record: dict) -> dict:
    """Write a video's partitions in a temporary folder, then rename each into place."""
    import pyarrow.parquet as pq

    tmp = out / _META / "tmp" / uuid.uuid4().hex
    rows = {}
    try:
        for folder, table in tables.items():
            op, params = operations[folder]
            meta = {b"rekolab": json.dumps({
                "Video": video_id, "Path": record["path"], "API": op, "Request": params,
                "VideoMetadata": record["video_metadata"], "Models": record["models"].get(folder)},
                sort_keys=True, default=str).encode()}
            part = tmp / folder / "part-0.parquet"
            part.parent.mkdir(parents=True)
            pq.write_table(table.replace_schema_metadata(meta), part)
            rows[folder] = table.num_rows
        for folder in tables:
            target = out / folder / f"video={video_id}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # an older result of this video (it changed) or an orphan
                old = tmp / f"old-{folder}"
                os.replace(target, old)
            os.replace(tmp / folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _prepare_out(out: Path, operations: dict, new_run: bool, executor: str) -> dict:
    """Create or reopen ``out``'s run: refuse other parameters unless ``new_run``."""
    from . import __version__

    info_path = out / _META / "run.json"
    fingerprint = _fingerprint(operations)
    try:
        info = store.read_json(info_path)
    except FileNotFoundError:
        info = None
    if info is not None and info.get("Fingerprint") != fingerprint:
        if not new_run:
            theirs = {k: v.get("Parameters") for k, v in info.get("Operations", {}).items()}
            raise InvalidParameterException(
                f"{out} holds a dataset run with other operations or parameters ({json.dumps(theirs, sort_keys=True)}); "
                "pass new_run=True to replace it, or choose another out folder")
        for folder in info.get("Operations", {}):
            shutil.rmtree(out / folder, ignore_errors=True)
        shutil.rmtree(out / _META, ignore_errors=True)
        info = None
    if info is None:
        info = {"Version": _RUN_VERSION, "Fingerprint": fingerprint, "Created": time.time(),
                "Rekolab": __version__,
                "Operations": {k: {"Operation": op, "Parameters": p} for k, (op, p) in operations.items()}}
    info.setdefault("Runs", []).append({"Started": time.time(), "Executor": executor,
                                        "Host": socket.gethostname(), "Pid": os.getpid()})
    store.atomic_write_json(info_path, info)
    _remove_uncommitted(out, operations)
    return info


def _remove_uncommitted(out: Path, operations: dict) -> None:
    """Partitions renamed into place by a run killed before it wrote their record."""
    shutil.rmtree(out / _META / "tmp", ignore_errors=True)
    for folder in operations:
        for part in (out / folder).glob("video=*") if (out / folder).is_dir() else []:
            record = _read_record(out, part.name[len("video="):])
            if record is None or record.get("status") != "SUCCEEDED":
                shutil.rmtree(part, ignore_errors=True)


def analyze(inputs, operations: Any = ("faces",), out: str | os.PathLike = "rekolab-run", *,
            executor: str | None = None, workers: int | None = None, address: str | None = None,
            sample_rate: float | None = None, segment_s: float | None = 600.0, new_run: bool = False,
            path_column: str = "path") -> DatasetRun:
    """Analyse every video of ``inputs`` with ``operations`` into the dataset ``out``.

    Returns a :class:`DatasetRun` at once (the work runs in the background; call
    ``wait()``). ``executor``: ``"local"`` (worker processes here; default, or
    ``REKOLAB_EXECUTOR``) or ``"ray"`` (``address`` / ``REKOLAB_RAY_ADDRESS`` /
    ``RAY_ADDRESS``); ``workers``: worker count (default ``REKOLAB_WORKERS``, else 1
    locally, else one per GPU or CPU of the Ray cluster); ``sample_rate``: frames
    per second for every sampling operation without its own SampleRate; ``segment_s``:
    with more than one worker, videos longer than this are split into segments of
    about this length that run in parallel (None: never). Bad inputs, unknown
    operations, bad parameters and an ``out`` holding another run raise before
    any work starts."""
    from .executors import EXECUTORS, get_executor

    ops = resolve_operations(operations, sample_rate)
    name = executor or os.environ.get("REKOLAB_EXECUTOR") or "local"
    if name == "thread" and not executor:  # the jobs' in-process default: a dataset runs on workers
        name = "local"
    if name not in EXECUTORS:
        raise InvalidParameterException(f"executor {name!r} is not one of {', '.join(EXECUTORS)}")
    if segment_s is not None and not (isinstance(segment_s, (int, float)) and segment_s > 0):
        raise InvalidParameterException(f"segment_s must be a positive number of seconds or None, not {segment_s!r}")
    videos = collect_inputs(inputs, path_column)
    out = Path(out).expanduser()
    if "://" in str(out):
        raise InvalidParameterException("out must be a local folder (remote outputs are not supported yet)")
    info = _prepare_out(out, ops, new_run, name)
    run = DatasetRun(out, ops, videos, info)
    run._start(get_executor(name, workers=workers, address=address), segment_s)
    return run
