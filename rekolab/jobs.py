"""Job lifecycle: IN_PROGRESS -> SUCCEEDED | FAILED, on disk under the rekolab home.

* **Start** checks ``ClientRequestToken`` idempotency first (same operation, token
  and parameters -> the same JobId, no re-run, no second notification; other
  parameters -> ``IdempotentParameterMismatchException``), then resolves and probes
  the video (bad input raises at once: the first frame is decoded), then, holding
  the home's start lock (one Start at a time across every process on the home),
  checks the token again and the open-job limit (``LimitExceededException``; default
  20, ``REKOLAB_MAX_JOBS``), counted per home over every live process's queued and
  running jobs, and writes the job's files. So 4 processes sending one token get one
  JobId and one run. The job then queues on a small worker pool
  (``REKOLAB_WORKERS``, default 1: the models use every core already). A queued job
  is IN_PROGRESS, as in Rekognition. A storage failure at Start
  (disk full, read-only home) raises ``InternalServerError`` naming the cause and
  leaves no half-made job folder.
* **Run** decodes sampled frames on a prefetch thread, runs the operation's
  analyzer batch by batch, and streams RecordBatches into a parquet file (an
  analyzer with a ``finalize(table)`` method then rewrites it once, for decisions
  that need the whole job) that is renamed into place only when complete: the job's results are one Arrow table,
  written atomically. Any failure ends the job FAILED with a StatusMessage (a
  truncated video, a full disk: the real cause; a final state the home cannot take
  yet is answered from memory until it can).
* **Where it runs**: on this process's job thread (``REKOLAB_EXECUTOR`` unset or
  ``thread``), or on an executor's worker (``local``: a process pool, ``ray``: Ray
  actors; see :mod:`rekolab.executors.jobs`), which returns the rows as Arrow; this
  process writes them the same way, and everything above and below stays here.
* **Notify**: when a job ends, the SNS-shaped message ``{JobId, Status, API,
  JobTag, Timestamp, Video{S3ObjectName, S3Bucket}}`` goes to the Python callbacks
  subscribed to its ``NotificationChannel.SNSTopicArn`` (or to all topics).
* **Restart**: a job whose owning process died before finishing reads FAILED
  ("interrupted") from then on; it never has half-written results.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from . import store
from .errors import (IdempotentParameterMismatchException, InvalidParameterException,
                     LimitExceededException, RekognitionError, ResourceNotFoundException)
from .executors.jobs import JobRunner, WorkerFailed, job_executor_name
from .executors.work import finalize_table, stream_analysis
from .requests import StartRequest
from .video import DEFAULT_SAMPLE_RATE, VideoDecodeError, VideoMetadata, check_decodable, probe, resolve_video
from .video import plan as plan_decode

__all__ = ["JobManager", "JobRecord", "TOKEN_TTL_S", "DEFAULT_MAX_JOBS"]

log = logging.getLogger("rekolab.jobs")

DEFAULT_MAX_JOBS = 20
TOKEN_TTL_S = 7 * 24 * 3600  # ClientRequestToken and results live 7 days in Rekognition
def _jobs_dir() -> Path:
    return store.home() / "jobs"


def _open_dir(home: Path) -> Path:
    return home / "jobs" / ".open"


def _proc_start(pid: int) -> str | None:
    """A process's start time (Linux /proc), to tell a live owner from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


_OWNER = {"pid": os.getpid(), "start": _proc_start(os.getpid())}


@dataclass
class JobRecord:
    """What ``job.json`` holds. ``request`` is the canonical Start* request."""

    job_id: str
    operation: str
    request: dict
    status: str = "IN_PROGRESS"
    status_message: str | None = None
    video_metadata: dict | None = None
    created_ms: int = 0
    completed_ms: int | None = None
    owner: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    workers: list = field(default_factory=list)  # on an executor: {pid, host, node, kind, seconds} per task
    sampled_frames: int | None = None
    rows: int | None = None
    home: str = ""  # the rekolab home the job lives in, fixed when it starts

    @property
    def path(self) -> Path:
        return (Path(self.home) / "jobs" if self.home else _jobs_dir()) / self.job_id

    def save(self) -> None:
        store.atomic_write_json(self.path / "job.json", self.__dict__)

    @classmethod
    def load(cls, job_id: str, home: str | None = None) -> "JobRecord":
        """The record of ``job_id`` in ``home`` (default: the current rekolab home)."""
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise InvalidParameterException(
                f"JobId {job_id!r} is not a job id: 1-64 characters of [a-zA-Z0-9-_]")
        path = (Path(home) / "jobs" if home else _jobs_dir()) / job_id / "job.json"
        try:
            record = cls(**store.read_json(path))
        except FileNotFoundError:
            raise ResourceNotFoundException(f"The job id {job_id} was not found.") from None
        record.home = str(path.parent.parent.parent)
        return record


_JOB_ID = re.compile(r"[a-zA-Z0-9\-_]{1,64}")


class _Running:
    """In-memory state of a job this process runs."""

    def __init__(self, home: str):
        self.home = home  # where the job's files live, whatever REKOLAB_HOME says later
        self.done = threading.Event()
        self.planned = threading.Event()  # set once ``total`` (sampled frames) is known
        self.total = 0
        self.completed = 0
        self.listeners: list[Callable[[int, int], None]] = []
        self.stop = threading.Event()  # ends decoding (also set when decoding ends)
        self.interrupted = threading.Event()  # set only at interpreter exit

    def advance(self, frames: int) -> None:
        self.completed += frames
        for listener in list(self.listeners):
            listener(self.completed, self.total)


# Jobs this process runs, shared by every JobManager in it (so a second client in
# the same process never mistakes a live job for an interrupted one).
_RUNNING: dict[str, _Running] = {}
_EXECUTORS: "weakref.WeakSet[ThreadPoolExecutor]" = weakref.WeakSet()
_CACHE_SIZE = 8  # results tables (and sorted views of them) kept open per manager


def _interrupt_at_exit() -> None:
    """At interpreter exit, stop running jobs and drop queued ones instead of
    finishing them: a script, a CLI Ctrl-C or a kernel shutdown exits promptly.
    The interrupted jobs read FAILED ("interrupted") and have no results."""
    for running in list(_RUNNING.values()):
        running.interrupted.set()
        running.stop.set()
    for executor in list(_EXECUTORS):
        executor.shutdown(wait=False, cancel_futures=True)


# threading's exit hooks run newest first, so this one runs before the hook
# concurrent.futures registered on import to join its worker threads.
threading._register_atexit(_interrupt_at_exit)


class _Interrupted(Exception):
    pass


class JobManager:
    """Runs and remembers jobs. One per :class:`rekolab.Client`; the notebook API
    shares the default client's manager."""

    def __init__(self, *, max_concurrent_jobs: int | None = None, workers: int | None = None,
                 executor: str | None = None, address: str | None = None):
        self.max_concurrent_jobs = int(max_concurrent_jobs or os.environ.get("REKOLAB_MAX_JOBS")
                                       or DEFAULT_MAX_JOBS)
        self._executor = ThreadPoolExecutor(
            max_workers=int(workers or os.environ.get("REKOLAB_WORKERS") or 1),
            thread_name_prefix="rekolab-job")
        self._lock = threading.RLock()
        _EXECUTORS.add(self._executor)
        self._running = _RUNNING
        self._subscribers: list[tuple[str | None, Callable[[dict], None]]] = []
        # publishers(channel, message): outside transports for NotificationChannel (rekolab/aws: SNS)
        self.publishers: list[Callable[[dict, dict], None]] = []
        self._tables: OrderedDict[tuple, pa.Table] = OrderedDict()
        # where the analysis runs: None = here, on the job thread; else an executor's workers
        name = job_executor_name(executor)
        self.runner = None if name == "thread" else JobRunner(name, workers=workers, address=address)

    # -- notifications ---------------------------------------------------------------
    def subscribe(self, callback: Callable[[dict], None], topic_arn: str | None = None) -> Callable[[], None]:
        """Call ``callback(message)`` when a job ends; ``topic_arn`` limits it to jobs
        whose NotificationChannel names that topic. Returns an unsubscribe function."""
        entry = (topic_arn, callback)
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe():
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)
        return unsubscribe

    def _notify(self, record: JobRecord, video) -> None:
        channel = record.request.get("NotificationChannel") or {}
        message = {
            "JobId": record.job_id,
            "Status": record.status,
            "API": record.operation,
            "Timestamp": record.completed_ms,
            "Video": video.notification_video(),
        }
        if record.request.get("JobTag"):
            message["JobTag"] = record.request["JobTag"]
        with self._lock:
            targets = [cb for topic, cb in self._subscribers
                       if topic is None or topic == channel.get("SNSTopicArn")]
        for cb in targets:
            try:
                cb(dict(message))
            except Exception:  # a broken callback must not break the job
                log.exception("notification callback %r failed", cb)
        for publish in list(self.publishers) if channel.get("SNSTopicArn") else []:
            try:
                publish(dict(channel), dict(message))
            except Exception:
                log.exception("notification publisher %r failed", publish)

    # -- start -----------------------------------------------------------------------
    def start(self, request: StartRequest, token: str | None, buckets: dict[str, str]) -> str:
        """Start a job; the same ``token`` and parameters from any process of this home
        give the one JobId of the one job that runs."""
        if token is not None:
            existing = self._check_token(request, token)
            if existing is not None:
                return existing
        # Resolving may download from S3 and probing reads the file: not under the lock.
        video = resolve_video(request.video, buckets)
        metadata = probe(video.path)
        check_decodable(video.path, metadata)
        home = store.home()
        job_id = secrets.token_hex(32)
        record = JobRecord(job_id=job_id, operation=request.operation, request=request.params,
                           video_metadata=metadata.to_dict(), created_ms=int(time.time() * 1000),
                           owner=_OWNER, home=str(home))
        try:
            # One Start at a time per home (every process): the token check, the
            # open-job count and the new job's files are one atomic step.
            with store.storage_errors(request.operation), store.locked(home / "jobs" / ".start.lock"):
                if token is not None:  # a twin request may have started meanwhile
                    existing = self._check_token(request, token)
                    if existing is not None:
                        return existing
                open_jobs = self._open_jobs(home)
                if open_jobs >= self.max_concurrent_jobs:
                    raise LimitExceededException(
                        f"{open_jobs} open Jobs for User rekolab Maximum limit: {self.max_concurrent_jobs}",
                        request.operation)
                record.save()
                store.atomic_write_json(_open_dir(home) / job_id, {"owner": _OWNER})
                if token is not None:
                    store.atomic_write_json(self._token_path(request.operation, token), {
                        "fingerprint": request.fingerprint, "job_id": job_id, "created": time.time()})
                running = _Running(record.home)
                with self._lock:
                    self._running[job_id] = running
        except BaseException:
            if job_id not in self._running:  # half-made: leave nothing behind
                shutil.rmtree(record.path, ignore_errors=True)
                with contextlib.suppress(OSError):
                    (_open_dir(home) / job_id).unlink(missing_ok=True)
            raise
        self._executor.submit(self._run, record, video, running)
        return job_id

    def _open_jobs(self, home: Path) -> int:
        """Open (queued or running) jobs of every live process on ``home``; markers
        of jobs whose process died are removed."""
        count = 0
        folder = _open_dir(home)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.startswith("."):
                continue
            mine = self._running.get(name)
            if mine is not None:
                count += not mine.done.is_set()
                continue
            try:
                owner = store.read_json(folder / name).get("owner", {})
            except (OSError, ValueError):
                continue  # being written or removed right now
            if _owner_alive(owner):
                count += 1
            else:
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
        return count

    @staticmethod
    def _token_path(operation: str, token: str) -> Path:
        return store.home() / "tokens" / f"{operation}-{token}.json"

    def _check_token(self, request: StartRequest, token: str) -> str | None:
        path = self._token_path(request.operation, token)
        try:
            entry = store.read_json(path)
        except FileNotFoundError:
            return None
        if time.time() - entry["created"] > TOKEN_TTL_S:
            return None  # expired: the token can be used again
        if entry["fingerprint"] != request.fingerprint:
            raise IdempotentParameterMismatchException(
                f"The ClientRequestToken: {token} you have supplied is already in use "
                f"with other parameters (job {entry['job_id']}).", request.operation)
        return entry["job_id"]

    # -- run -------------------------------------------------------------------------
    def _analyze_here(self, record: JobRecord, video, running: _Running, tmp: Path) -> int:
        """The job's analysis on this thread, streamed into ``tmp``; returns its row count."""
        from .analysis import analyzer_for

        analyzer = analyzer_for(record.operation, record.request)
        # An analyzer that needs other frames than the sampled ones (segment
        # detection: every frame) plans its own decode, before it says what ran.
        own_plan = getattr(analyzer, "decode_plan", None)
        plan = (own_plan(video.path) if own_plan is not None
                else plan_decode(video.path, record.request.get("SampleRate") or DEFAULT_SAMPLE_RATE,
                                 VideoMetadata.from_dict(record.video_metadata)))
        record.models = analyzer.models()
        running.total = len(plan)
        running.planned.set()
        record.sampled_frames = len(plan)
        meta = _results_meta(record)
        rows = 0
        with pq.ParquetWriter(tmp, analyzer.schema.with_metadata(meta)) as writer:
            for out in stream_analysis(analyzer, plan, stop=running.stop, on_frames=running.advance):
                if out.num_rows:
                    writer.write_batch(out)
                rows += out.num_rows
        if running.interrupted.is_set():
            raise _Interrupted("Job interrupted: the process exited before it finished")
        if hasattr(analyzer, "finalize"):
            # Whole-job decisions (e.g. one identity per face track) need every
            # row; results are small next to the video, so read them back once.
            table = finalize_table(analyzer, pq.read_table(tmp))
            pq.write_table(table.replace_schema_metadata(meta), tmp)
            rows = table.num_rows
        return rows

    def _analyze_on_executor(self, record: JobRecord, video, running: _Running, tmp: Path) -> int:
        """The job's analysis on an executor's worker(s); its rows are written to ``tmp`` here."""
        def on_total(n: int) -> None:
            running.total = record.sampled_frames = n
            running.planned.set()

        done = self.runner.run(
            video.path, record.operation, record.request, home=record.home, stop=running.stop, on_total=on_total,
            on_frames=running.advance,
            interrupted=lambda: _Interrupted("Job interrupted: the process exited before it finished"))
        record.models, record.sampled_frames, record.workers = done["models"], done["sampled_frames"], done["workers"]
        pq.write_table(done["table"].replace_schema_metadata(_results_meta(record)), tmp)
        return done["table"].num_rows

    def _run(self, record: JobRecord, video, running: _Running) -> None:
        tmp = record.path / "results.parquet.part"
        try:
            analyze = self._analyze_here if self.runner is None else self._analyze_on_executor
            rows = analyze(record, video, running, tmp)
            os.replace(tmp, record.path / "results.parquet")
            record.rows = rows
            record.status = "SUCCEEDED"
        except (_Interrupted, WorkerFailed) as exc:
            record.status, record.status_message = "FAILED", str(exc)
        except VideoDecodeError as exc:
            record.status, record.status_message = "FAILED", f"Video decoding failed: {exc}"
        except RekognitionError as exc:
            record.status, record.status_message = "FAILED", f"{exc.code}: {exc.message}"
        except OSError as exc:
            log.warning("job %s failed on storage: %s", record.job_id, exc)
            record.status, record.status_message = "FAILED", store.storage_message(exc)
        except Exception as exc:
            log.exception("job %s failed", record.job_id)
            record.status = "FAILED"
            record.status_message = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                if record.status != "SUCCEEDED":
                    with contextlib.suppress(OSError):
                        tmp.unlink(missing_ok=True)
                record.completed_ms = int(time.time() * 1000)
                _save_final(record)
            finally:
                try:
                    with contextlib.suppress(OSError):
                        (_open_dir(Path(record.home)) / record.job_id).unlink(missing_ok=True)
                    self._notify(record, video)  # before waiters wake: they may look for it
                finally:  # whatever happens above, waiters must wake up
                    running.planned.set()
                    running.done.set()
                    self._running.pop(record.job_id, None)

    # -- read ------------------------------------------------------------------------
    def record(self, job_id: str) -> JobRecord:
        """The job's record; a job whose owner process died reads FAILED."""
        record = JobRecord.load(job_id)
        if record.status != "IN_PROGRESS" or job_id in self._running:
            return record
        # The job may have ended since the read above: a worker saves the final record
        # before it leaves _running, so a second read sees it (else a Get* racing the
        # job's end would overwrite SUCCEEDED with "interrupted").
        record = JobRecord.load(job_id)
        if record.status != "IN_PROGRESS" or job_id in self._running:
            return record
        unsaved = _UNSAVED.get((record.home, job_id))
        if unsaved is not None:  # ended here, but its home could not be written then
            _save_final(unsaved)
            return unsaved
        if not _owner_alive(record.owner):
            record.status = "FAILED"
            record.status_message = (f"Job interrupted: the process that ran it (pid "
                                     f"{record.owner.get('pid')}) exited before it finished")
            record.completed_ms = int(time.time() * 1000)
            try:
                (record.path / "results.parquet.part").unlink(missing_ok=True)
                record.save()
            except OSError as exc:  # a read-only home still answers
                log.info("job %s: cannot record the interruption: %s", job_id, exc)
        return record

    def table(self, job_id: str, view: str = "",
              make: Callable[[pa.Table], pa.Table] | None = None) -> pa.Table:
        """The results of a SUCCEEDED job (memory-mapped), or a derived ``view`` of
        them built once by ``make`` (e.g. sorted for a Get* option). The last few
        tables and views are kept; results of a finished job never change."""
        key = (job_id, view)
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
                return table
        if view:
            table = make(self.table(job_id))
        else:
            table = pq.read_table(JobRecord.load(job_id).path / "results.parquet", memory_map=True)
        with self._lock:
            self._tables[key] = table
            while len(self._tables) > _CACHE_SIZE:
                self._tables.popitem(last=False)
        return table

    def wait(self, job_id: str, timeout: float | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> JobRecord:
        """Block until the job ends (or ``timeout`` s pass); event-driven, no polling
        for jobs this process runs."""
        running = self._running.get(job_id)
        if running is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            record = self.record(job_id)
            delay = 0.05
            while record.status == "IN_PROGRESS":  # owned by another live process
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                record = self.record(job_id)
            return record
        if on_progress is not None:
            running.listeners.append(on_progress)
            on_progress(running.completed, running.total)
        try:
            running.done.wait(timeout)
        finally:
            if on_progress is not None and on_progress in running.listeners:
                running.listeners.remove(on_progress)
        return _UNSAVED.get((running.home, job_id)) or JobRecord.load(job_id, running.home)

    def planned_total(self, job_id: str, timeout: float | None = None) -> int:
        """The number of sampled frames the job will analyse, once its decode plan is
        made (0 for a job this process does not run, or one that failed first)."""
        running = self._running.get(job_id)
        if running is None:
            return 0
        running.planned.wait(timeout)
        return running.total

    def progress(self, job_id: str) -> tuple[int, int]:
        running = self._running.get(job_id)
        return (running.completed, running.total) if running else (0, 0)


# Final records this process could not write (disk full, read-only home): what
# Get* answers until a later write succeeds, so the real cause is never lost.
_UNSAVED: dict[tuple[str, str], JobRecord] = {}


def _save_final(record: JobRecord) -> None:
    key = (record.home, record.job_id)
    try:
        record.save()
    except OSError as exc:
        log.warning("job %s ended %s but its record cannot be written: %s",
                    record.job_id, record.status, exc)
        _UNSAVED[key] = record
    else:
        _UNSAVED.pop(key, None)


def _owner_alive(owner: dict) -> bool:
    pid = owner.get("pid")
    if not pid:
        return False
    if pid == os.getpid():
        return False  # this process's live jobs are in _RUNNING; any other is a dead predecessor's
    start = _proc_start(pid)
    if start is not None:
        return start == owner.get("start")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _results_meta(record: JobRecord) -> dict:
    """The parquet schema metadata of a job's results."""
    return {b"rekolab": _json_bytes({
        "JobId": record.job_id, "API": record.operation, "Request": record.request,
        "VideoMetadata": record.video_metadata, "Models": record.models})}


def _json_bytes(value) -> bytes:
    import json

    return json.dumps(value, sort_keys=True, default=str).encode()
