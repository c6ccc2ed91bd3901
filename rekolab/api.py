"""Notebook verbs: thin calls on the default :class:`~rekolab.client.Client` that
return :class:`Job` handles.

    import rekolab as rk
    job = rk.start_face_detection("clip.mp4", face_attributes="ALL")
    job.wait()             # progress bar; or `await job` in a cell
    df = job.to_pandas()   # pd.ArrowDtype columns, one row per face per sampled frame
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from .client import Client, default_client

__all__ = ["Job", "start_face_detection", "video_param"]


def video_param(video: Any) -> dict:
    """A path, ``s3://`` URL or Rekognition ``Video`` dict -> a ``Video`` request member."""
    if isinstance(video, dict):
        return video
    if isinstance(video, (str, os.PathLike)):
        return {"Path": os.fspath(video)}
    raise TypeError(f"video must be a path, an s3:// URL or a Video dict, not {type(video).__name__}")


def _params(**kwargs) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


class Job:
    """A handle on a stored-video job; ``rk.Job(job_id)`` reopens one from any
    process (results live under the rekolab home)."""

    def __init__(self, job_id: str, client: Client | None = None):
        self.id = job_id
        self._client = client or default_client()
        self._client.jobs.record(job_id)  # ResourceNotFoundException for an unknown id

    # -- state -----------------------------------------------------------------------
    @property
    def _record(self):
        return self._client.jobs.record(self.id)

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def status_message(self) -> str | None:
        return self._record.status_message

    @property
    def operation(self) -> str:
        return self._record.operation

    @property
    def request(self) -> dict:
        return self._record.request

    @property
    def video_metadata(self) -> dict | None:
        return self._record.video_metadata

    @property
    def models(self) -> dict:
        """Which models and methods produced the results."""
        return self._record.models

    def __repr__(self) -> str:
        r = self._record
        extra = f", rows={r.rows}" if r.rows is not None else ""
        if r.status == "IN_PROGRESS":
            done, total = self._client.jobs.progress(self.id)
            extra = f", frames={done}/{total}" if total else ""
        elif r.status == "FAILED":
            extra = f", message={r.status_message!r}"
        return f"Job({self.id[:12]}…, {r.operation}, {r.status}{extra})"

    # -- waiting ---------------------------------------------------------------------
    def wait(self, timeout: float | None = None, progress: bool = True) -> "Job":
        """Block until the job ends (or ``timeout`` seconds); shows a tqdm progress bar."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=0, unit="frame", desc=self.operation, leave=False)

            def on_progress(done: int, total: int):
                if bar.total != total:
                    bar.total = total
                bar.n = done
                bar.refresh()
        try:
            self._client.jobs.wait(self.id, timeout, on_progress if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        return self

    def __await__(self):
        return asyncio.to_thread(self.wait, None, False).__await__()

    # -- results ---------------------------------------------------------------------
    def to_arrow(self) -> pa.Table:
        """The job's results (waits for the job first). Raises if the job FAILED."""
        record = self._client.jobs.wait(self.id)
        if record.status != "SUCCEEDED":
            raise RuntimeError(f"job {self.id} {record.status}: {record.status_message}")
        return self._client.jobs.table(self.id)

    def to_pandas(self):
        """A DataFrame with ``pd.ArrowDtype`` columns (nested structs stay Arrow)."""
        import pandas as pd

        return self.to_arrow().to_pandas(types_mapper=pd.ArrowDtype)

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write the results to ``path``; the request and VideoMetadata travel in the
        schema metadata (key ``rekolab``)."""
        import pyarrow.parquet as pq

        path = Path(path)
        pq.write_table(self.to_arrow(), path)
        return path


def start_face_detection(video, face_attributes: str | None = None, *, sample_rate: float | None = None,
                         client_request_token: str | None = None, job_tag: str | None = None,
                         notification_channel: dict | None = None, client: Client | None = None) -> Job:
    """Start face detection on a video and return its :class:`Job` at once.

    ``video``: a local path, an ``s3://`` URL, or ``{"S3Object": {...}}``;
    ``face_attributes``: ``"DEFAULT"`` or ``"ALL"``; ``sample_rate``: frames analysed
    per second of video (default 5)."""
    client = client or default_client()
    r = client.start_face_detection(**_params(
        Video=video_param(video), FaceAttributes=face_attributes, SampleRate=sample_rate,
        ClientRequestToken=client_request_token, JobTag=job_tag, NotificationChannel=notification_channel))
    return Job(r["JobId"], client)
