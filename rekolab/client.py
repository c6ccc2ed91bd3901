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

import functools
import os
import threading
from typing import Callable

import pyarrow as pa

from .errors import Exceptions, InternalServerError, RekognitionError, ResourceNotFoundException
from .jobs import JobManager, JobRecord
from .requests import GetRequest, parse_get, parse_start
from .results import face_detection_items, make_token, read_token
from .store import storage_message
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
            except OSError as exc:  # the home's storage (disk full, read-only): a code, not a raw error
                raise InternalServerError(storage_message(exc), name) from None
        return call
    return wrap


class Client:
    """A local Rekognition Video client. ``buckets`` maps S3 bucket names to local
    folders (merged over ``REKOLAB_BUCKETS``)."""

    exceptions = Exceptions()

    def __init__(self, *, buckets: dict[str, str | os.PathLike] | None = None,
                 max_concurrent_jobs: int | None = None, workers: int | None = None,
                 streams: dict | None = None):
        self.buckets = parse_buckets(os.environ.get("REKOLAB_BUCKETS"))
        self.buckets.update({k: str(v) for k, v in (buckets or {}).items()})
        self.jobs = JobManager(max_concurrent_jobs=max_concurrent_jobs, workers=workers)
        # streams: Kinesis video stream ARN -> source (file, URL, camera, iterable); see streaming.py
        from .streaming import StreamProcessorManager, jobs_publisher
        self.stream_processors = StreamProcessorManager(streams, jobs_publisher(self.jobs))

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
            table = (self.jobs.table(req.job_id, f"sort:{options}", sort) if sort is not None
                     else self.jobs.table(req.job_id))
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

    # -- face collections and face search (rekolab/collections.py, analysis/face_search.py) --
    @staticmethod
    def _collection_call(operation: str, kwargs: dict):
        """Validate a collection request; return the rekolab.collections module.
        (Requests with an Image go through images.normalize_image_request first.)"""
        from . import collections
        from .requests import validate_request

        validate_request(operation, kwargs)
        return collections

    @_operation("CreateCollection")
    def create_collection(self, **kwargs) -> dict:
        """CreateCollection: ``{StatusCode, CollectionArn, FaceModelVersion}``; the
        collection is tied to the face pack in use (FaceModelVersion = its name)."""
        c = self._collection_call("CreateCollection", kwargs)
        return c.create_collection(kwargs["CollectionId"], kwargs.get("Tags"), "CreateCollection")

    @_operation("DescribeCollection")
    def describe_collection(self, **kwargs) -> dict:
        """DescribeCollection: ``{FaceCount, FaceModelVersion, CollectionARN, CreationTimestamp, UserCount}``."""
        c = self._collection_call("DescribeCollection", kwargs)
        return c.describe_collection(kwargs["CollectionId"], "DescribeCollection")

    @_operation("ListCollections")
    def list_collections(self, **kwargs) -> dict:
        """ListCollections: ids sorted by name, pages of MaxResults (default 1000)."""
        c = self._collection_call("ListCollections", kwargs)
        return c.list_collections(kwargs.get("MaxResults"), kwargs.get("NextToken") or None)

    @_operation("DeleteCollection")
    def delete_collection(self, **kwargs) -> dict:
        """DeleteCollection: ``{StatusCode: 200}``; the faces are gone for good."""
        c = self._collection_call("DeleteCollection", kwargs)
        return c.delete_collection(kwargs["CollectionId"], "DeleteCollection")

    @_operation("IndexFaces")
    def index_faces(self, **kwargs) -> dict:
        """IndexFaces: detect (at most the 100 largest faces), filter by QualityFilter
        (default AUTO), keep MaxFaces, embed and store. ``FaceRecords`` largest first;
        ``UnindexedFaces`` with Reasons. Image.Bytes or Image.S3Object (a bucket root)."""
        from .images import normalize_image_request

        op = "IndexFaces"
        kwargs = normalize_image_request(kwargs, op)  # Image.Bytes -> bytes, once, before validation
        c = self._collection_call(op, kwargs)
        c.check_searchable(kwargs["CollectionId"], op)  # unknown collection: before decoding
        bgr, sha = c.load_image(kwargs["Image"], self.buckets, op)
        return c.index_faces(kwargs["CollectionId"], bgr, sha, kwargs.get("ExternalImageId"),
                             kwargs.get("MaxFaces"), kwargs.get("QualityFilter", "AUTO"),
                             kwargs.get("DetectionAttributes"), op)

    @_operation("ListFaces")
    def list_faces(self, **kwargs) -> dict:
        """ListFaces: faces sorted by FaceId, pages of MaxResults (default 1000)."""
        c = self._collection_call("ListFaces", kwargs)
        return c.list_faces(kwargs["CollectionId"], kwargs.get("MaxResults"), kwargs.get("NextToken") or None,
                            kwargs.get("FaceIds"), kwargs.get("UserId"), "ListFaces")

    @_operation("DeleteFaces")
    def delete_faces(self, **kwargs) -> dict:
        """DeleteFaces: ``DeletedFaces`` (absent when none) and ``UnsuccessfulFaceDeletions``."""
        c = self._collection_call("DeleteFaces", kwargs)
        return c.delete_faces(kwargs["CollectionId"], kwargs["FaceIds"], "DeleteFaces")

    @_operation("SearchFaces")
    def search_faces(self, **kwargs) -> dict:
        """SearchFaces: a stored face against its collection (itself excluded);
        FaceMatchThreshold default 80, MaxFaces default 4096."""
        c = self._collection_call("SearchFaces", kwargs)
        return c.search_faces(kwargs["CollectionId"], kwargs["FaceId"],
                              float(kwargs.get("FaceMatchThreshold", c.DEFAULT_FACE_MATCH_THRESHOLD)),
                              int(kwargs.get("MaxFaces", c.MAX_SEARCH_FACES)), "SearchFaces")

    @_operation("SearchFacesByImage")
    def search_faces_by_image(self, **kwargs) -> dict:
        """SearchFacesByImage: the largest face of the image against the collection;
        QualityFilter default NONE; no face -> InvalidParameterException."""
        from .images import normalize_image_request

        op = "SearchFacesByImage"
        kwargs = normalize_image_request(kwargs, op)  # Image.Bytes -> bytes, once, before validation
        c = self._collection_call(op, kwargs)
        c.check_searchable(kwargs["CollectionId"], op)
        bgr, _ = c.load_image(kwargs["Image"], self.buckets, op)
        return c.search_faces_by_image(kwargs["CollectionId"], bgr,
                                       float(kwargs.get("FaceMatchThreshold", c.DEFAULT_FACE_MATCH_THRESHOLD)),
                                       int(kwargs.get("MaxFaces", c.MAX_SEARCH_FACES)),
                                       kwargs.get("QualityFilter", "NONE"), op)

    @_operation("StartFaceSearch")
    def start_face_search(self, **kwargs) -> dict:
        """StartFaceSearch: faces of a stored video against a collection. The collection
        must exist (ResourceNotFoundException) and use the face pack in use.
        Extension: ``SampleRate`` (frames analysed per second, default 5)."""
        from . import collections

        request, token = parse_start("StartFaceSearch", kwargs)  # validated once
        collections.check_searchable(request.params["CollectionId"], "StartFaceSearch")
        return {"JobId": self.jobs.start(request, token, self.buckets)}

    @_operation("GetFaceSearch")
    def get_face_search(self, **kwargs) -> dict:
        """GetFaceSearch: ``Persons[]`` (every detected face, matched or not), SortBy
        TIMESTAMP (default) or INDEX, pages of MaxResults."""
        from .analysis.face_search import face_search_items, sort_face_search

        req = parse_get("GetFaceSearch", kwargs)
        sort_by = req.sort_by or "TIMESTAMP"
        return self._page(req, "StartFaceSearch", face_search_items, "Persons",
                          sort=sort_face_search(sort_by), options=f"SortBy={sort_by}")

    # -- celebrity recognition (rekolab/celebrities.py, analysis/celebrities.py) --------
    @_operation("StartCelebrityRecognition")
    def start_celebrity_recognition(self, **kwargs) -> dict:
        """StartCelebrityRecognition against the celebrity gallery (an empty gallery is
        InvalidParameterException). Extensions: ``SampleRate`` (default 5),
        ``MinConfidence`` (0-100, default 50), ``CelebrityGallery`` (a gallery folder;
        default ``<rekolab home>/celebrities``)."""
        from .celebrities import check_start

        request, token = parse_start("StartCelebrityRecognition", kwargs)  # validated once
        return {"JobId": self.jobs.start(check_start(request), token, self.buckets)}

    @_operation("GetCelebrityRecognition")
    def get_celebrity_recognition(self, **kwargs) -> dict:
        """GetCelebrityRecognition: ``Celebrities[]`` (recognized faces only), SortBy
        TIMESTAMP (default) or ID, pages of MaxResults."""
        from .results.celebrities import celebrity_items, sort_celebrities

        req = parse_get("GetCelebrityRecognition", kwargs)
        sort_by = req.sort_by or "TIMESTAMP"
        sort = None if sort_by == "TIMESTAMP" else (lambda table: sort_celebrities(table, sort_by))
        return self._page(req, "StartCelebrityRecognition", celebrity_items, "Celebrities",
                          sort=sort, options=f"SortBy={sort_by}")

    @_operation("GetCelebrityInfo")
    def get_celebrity_info(self, **kwargs) -> dict:
        """GetCelebrityInfo: ``{Urls, Name, KnownGender}`` of a gallery Id
        (ResourceNotFoundException for an Id the gallery does not have)."""
        from .celebrities import celebrity_info

        return celebrity_info(kwargs)

    @_operation("RecognizeCelebrities")
    def recognize_celebrities(self, **kwargs) -> dict:
        """RecognizeCelebrities: ``{CelebrityFaces, UnrecognizedFaces}`` for one image
        (Image.Bytes up to 5 MB, or Image.S3Object in a bucket root, JPEG or PNG).
        Extensions: ``MinConfidence``, ``CelebrityGallery``."""
        from .celebrities import recognize_celebrities

        return recognize_celebrities(kwargs, self.buckets)


    # -- label detection (rekolab/analysis/labels.py, results/labels.py) ----------------
    @_operation("StartLabelDetection")
    def start_label_detection(self, **kwargs) -> dict:
        """StartLabelDetection: CLIP zero-shot labels over the taxonomy plus YOLOX boxes
        (Instances); see docs/labels.md. Extensions: ``SampleRate`` (default 5),
        ``ExtraLabels`` (open vocabulary: up to 100 more label names), ``Models``
        (``["CLIP", "DETECTOR"]``: which to run; named = required), ``ClipModel``
        (``{Arch, Pretrained, Checkpoint}``), ``DetectorModel`` (``{Path}``)."""
        from .analysis.labels import check_start

        request, token = parse_start("StartLabelDetection", kwargs)
        check_start(request.params)
        return {"JobId": self.jobs.start(request, token, self.buckets)}

    @_operation("GetLabelDetection")
    def get_label_detection(self, **kwargs) -> dict:
        """GetLabelDetection: ``Labels[]``, SortBy TIMESTAMP (default) or NAME, AggregateBy
        TIMESTAMPS (default) or SEGMENTS, pages of MaxResults; ``LabelModelVersion`` names
        the models that ran, ``GetRequestMetadata`` echoes SortBy and AggregateBy."""
        from .results.labels import label_detection_items, label_view

        req = parse_get("GetLabelDetection", kwargs)
        sort_by = req.sort_by or "TIMESTAMP"
        aggregate_by = req.aggregate_by or "TIMESTAMPS"
        response = self._page(req, "StartLabelDetection", label_detection_items, "Labels",
                              sort=lambda table: label_view(table, req.job_id, sort_by, aggregate_by),
                              options=f"SortBy={sort_by};AggregateBy={aggregate_by}")
        version = self.jobs.record(req.job_id).models.get("LabelModelVersion")
        if version:
            response["LabelModelVersion"] = version
        response["GetRequestMetadata"] = {"SortBy": sort_by, "AggregateBy": aggregate_by}
        return response

    # -- stream processors (rekolab/streaming.py) ----------------------------------------
    @_operation("CreateStreamProcessor")
    def create_stream_processor(self, **kwargs) -> dict:
        """CreateStreamProcessor: ``{StreamProcessorArn}``. Face search = KinesisDataStream
        output + FaceSearch settings; label detection = S3Destination + NotificationChannel
        + ConnectedHome settings. The Name is idempotent. Extension: ``SampleRate``."""
        return self.stream_processors.create(kwargs)

    @_operation("DescribeStreamProcessor")
    def describe_stream_processor(self, **kwargs) -> dict:
        """DescribeStreamProcessor: status, request fields, timestamps."""
        return self.stream_processors.describe(kwargs)

    @_operation("ListStreamProcessors")
    def list_stream_processors(self, **kwargs) -> dict:
        """ListStreamProcessors: ``{Name, Status}`` sorted by name, pages of MaxResults (default 1000)."""
        return self.stream_processors.list(kwargs)

    @_operation("StartStreamProcessor")
    def start_stream_processor(self, **kwargs) -> dict:
        """StartStreamProcessor: ``{SessionId}``; the session runs in the background.
        Extensions: ``Realtime`` (default true), ``Sinks`` (.jsonl/.parquet paths),
        ``QueueSize``. Records go to the sinks and to ``rk.StreamProcessor(name).session``."""
        return self.stream_processors.start(kwargs)[0]

    @_operation("StopStreamProcessor")
    def stop_stream_processor(self, **kwargs) -> dict:
        """StopStreamProcessor: STOPPING now, STOPPED when the session has ended."""
        return self.stream_processors.stop(kwargs)

    @_operation("UpdateStreamProcessor")
    def update_stream_processor(self, **kwargs) -> dict:
        """UpdateStreamProcessor: label settings, regions of interest, data sharing, ParametersToDelete."""
        return self.stream_processors.update(kwargs)

    @_operation("DeleteStreamProcessor")
    def delete_stream_processor(self, **kwargs) -> dict:
        """DeleteStreamProcessor: only a STOPPED or FAILED processor."""
        return self.stream_processors.delete(kwargs)

_default: Client | None = None


def client(**kwargs) -> Client:
    """A new :class:`Client` (``rekolab.client()`` mirrors ``boto3.client("rekognition")``)."""
    return Client(**kwargs)


_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide client that the notebook API uses."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default
