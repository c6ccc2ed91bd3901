"""The boto3-shaped surface: PascalCase keyword arguments in, plain dicts out,
errors as botocore ``ClientError`` codes.

    import rekolab
    client = rekolab.client(buckets={"media": "/data/videos"})
    job_id = client.start_face_detection(
        Video={"S3Object": {"Bucket": "media", "Name": "clip.mp4"}})["JobId"]
    page = client.get_face_detection(JobId=job_id, MaxResults=100)

Only positional-free keyword calls are accepted, as with boto3.
"""
from __future__ import annotations

import os
from typing import Callable

import pyarrow as pa

import functools

from .errors import Exceptions, RekognitionError, ResourceNotFoundException
from .jobs import JobManager, JobRecord
from .requests import GetRequest, parse_get, parse_start
from .results import face_detection_items, make_token, read_token
from .video import parse_buckets

__all__ = ["Client", "client"]


def _operation(name: str):
    """Name the operation in errors raised below it ("... when calling the X operation")."""
    def wrap(method):
        @functools.wraps(method)
        def call(self, **kwargs):
            try:
                return method(self, **kwargs)
            except RekognitionError as exc:
                if exc.operation_name == name:
                    raise
                raise type(exc)(exc.message, name) from None
        return call
    return wrap


class Client:
    """A local Rekognition Video client. ``buckets`` maps S3 bucket names to local
    folders (merged over ``REKOLAB_BUCKETS``)."""

    exceptions = Exceptions()

    def __init__(self, *, buckets: dict[str, str | os.PathLike] | None = None,
                 max_concurrent_jobs: int | None = None, workers: int | None = None):
        self.buckets = parse_buckets(os.environ.get("REKOLAB_BUCKETS"))
        self.buckets.update({k: str(v) for k, v in (buckets or {}).items()})
        self.jobs = JobManager(max_concurrent_jobs=max_concurrent_jobs, workers=workers)

    def __repr__(self) -> str:
        return f"rekolab.Client(buckets={sorted(self.buckets)})"

    # -- rekolab extension: notifications ----------------------------------------------
    def subscribe(self, callback: Callable[[dict], None], SNSTopicArn: str | None = None):
        """Deliver job-completion messages (the SNS payload as a dict) to ``callback``.

        With ``SNSTopicArn``, only jobs started with that NotificationChannel topic;
        without, every job this client runs. Returns an unsubscribe function."""
        return self.jobs.subscribe(callback, SNSTopicArn)

    # -- shared machinery ------------------------------------------------------------
    def _start(self, operation: str, kwargs: dict) -> dict:
        request, token = parse_start(operation, kwargs)
        return {"JobId": self.jobs.start(request, token, self.buckets)}

    def _page(self, req: GetRequest, start_op: str, render: Callable[[pa.Table], list[dict]],
              list_key: str, sort: Callable[[pa.Table], pa.Table] | None = None,
              options: str = "") -> dict:
        record = self.jobs.record(req.job_id)
        if record.operation != start_op:
            raise ResourceNotFoundException(
                f"Job {req.job_id} is a {record.operation} job, not a {start_op} job; "
                f"call Get{record.operation[5:]} for it", req.operation)
        response = self._envelope(record)
        if record.status == "SUCCEEDED":
            table = self.jobs.table(req.job_id)
            if sort is not None:
                table = sort(table)
            offset = read_token(req.next_token, req.job_id, options) if req.next_token else 0
            page = table.slice(offset, req.max_results)
            response[list_key] = render(page)
            if offset + req.max_results < table.num_rows:
                response["NextToken"] = make_token(req.job_id, offset + req.max_results, options)
        return response

    @staticmethod
    def _envelope(record: JobRecord) -> dict:
        video = record.request["Video"]
        if "Path" in video:  # extension: a local file, shown as an object name
            video = {"S3Object": {"Name": str(video["Path"])[-1024:]}}
        out = {"JobStatus": record.status, "JobId": record.job_id, "Video": video}
        if record.status_message:
            out["StatusMessage"] = record.status_message
        if record.video_metadata:
            out["VideoMetadata"] = dict(record.video_metadata)
        if record.request.get("JobTag"):
            out["JobTag"] = record.request["JobTag"]
        return out

    # -- face detection --------------------------------------------------------------
    @_operation("StartFaceDetection")
    def start_face_detection(self, **kwargs) -> dict:
        """StartFaceDetection. Extension: ``SampleRate`` (frames analysed per second
        of video, default 5)."""
        return self._start("StartFaceDetection", kwargs)

    @_operation("GetFaceDetection")
    def get_face_detection(self, **kwargs) -> dict:
        """GetFaceDetection: ``Faces[]`` sorted by Timestamp, pages of MaxResults."""
        req = parse_get("GetFaceDetection", kwargs)
        return self._page(req, "StartFaceDetection", face_detection_items, "Faces")


_default: Client | None = None


def client(**kwargs) -> Client:
    """A new :class:`Client` (``rekolab.client()`` mirrors ``boto3.client("rekognition")``)."""
    return Client(**kwargs)


def default_client() -> Client:
    """The process-wide client that the notebook API uses."""
    global _default
    if _default is None:
        _default = Client()
    return _default
