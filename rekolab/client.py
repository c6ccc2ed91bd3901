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
import uuid
from typing import Callable

import pyarrow as pa
from botocore.exceptions import ClientError

from .errors import (ERROR_CODES, Exceptions, InternalServerError, RekognitionError, ResourceNotFoundException,
                     UnsupportedOperationException, error_class)
from .jobs import JobManager, JobRecord
from .requests import GetRequest, parse_get, parse_start
from .results import face_detection_items, make_token, read_token
from .store import storage_message
from .video import parse_buckets

__all__ = ["Client", "client"]


def _operation(name: str):
    """Run one operation through the client's shared machinery (:meth:`Client._call`):
    botocore's events (so ``botocore.stub.Stubber`` works), errors named after the
    operation ("... when calling the X operation"), ``ResponseMetadata``."""
    def wrap(method):
        @functools.wraps(method)
        def call(self, **kwargs):
            return self._call(name, method, kwargs)
        return call
    return wrap


def _not_implemented(operation: str):
    def method(self, **kwargs):
        raise UnsupportedOperationException(
            f"rekolab does not implement {operation}; the operations it implements are listed in "
            "its README (What is implemented)", operation)
    return method


class Client:
    """A local Rekognition Video client. ``buckets`` maps S3 bucket names to local
    folders (merged over ``REKOLAB_BUCKETS``)."""

    exceptions = Exceptions()

    def __init__(self, *, buckets: dict[str, str | os.PathLike] | None = None,
                 max_concurrent_jobs: int | None = None, workers: int | None = None,
                 executor: str | None = None, streams: dict | None = None, region_name: str | None = None,
                 endpoint_url: str | None = None, config=None, aws_outputs: bool | None = None,
                 **boto3_arguments):
        unknown = set(boto3_arguments) - _BOTO3_ARGUMENTS
        if unknown:
            raise TypeError(f"rekolab.Client() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        self.buckets = parse_buckets(os.environ.get("REKOLAB_BUCKETS"))
        self.buckets.update({k: str(v) for k, v in (buckets or {}).items()})
        # executor: where Start* jobs analyse ("thread" here, "local" processes, "ray"); REKOLAB_EXECUTOR
        self.jobs = JobManager(max_concurrent_jobs=max_concurrent_jobs, workers=workers, executor=executor)
        # streams: Kinesis video stream ARN -> source (file, URL, camera, iterable); see rekolab/streaming/
        from .streaming import StreamProcessorManager, jobs_publisher
        self.stream_processors = StreamProcessorManager(streams, jobs_publisher(self.jobs))
        self.meta = _client_meta(region_name, endpoint_url, config)
        # aws_outputs: SNS notifications and Kinesis records go to real endpoints (rekolab/aws/);
        # on in `rekolab serve`, opt-in here (REKOLAB_AWS_OUTPUTS=1), so offline use never dials out.
        if aws_outputs is None:
            aws_outputs = os.environ.get("REKOLAB_AWS_OUTPUTS", "") in ("1", "true", "yes")
        self.aws_outputs = bool(aws_outputs)
        if self.aws_outputs:
            from .aws import sns_publisher
            self.jobs.publishers.append(sns_publisher())
            self.stream_processors.aws_outputs = True

    def __repr__(self) -> str:
        return f"rekolab.Client(buckets={sorted(self.buckets)})"

    # -- rekolab extension: notifications ----------------------------------------------
    def subscribe(self, callback: Callable[[dict], None], SNSTopicArn: str | None = None):
        """Deliver job-completion messages (the SNS payload as a dict) to ``callback``.

        With ``SNSTopicArn``, only jobs started with that NotificationChannel topic;
        without, every job this client runs. Returns an unsubscribe function."""
        return self.jobs.subscribe(callback, SNSTopicArn)

    # -- shared machinery ------------------------------------------------------------
    def _call(self, operation: str, method: Callable, kwargs: dict) -> dict:
        """One operation as botocore's ``_make_api_call`` runs it: the
        ``before-parameter-build`` and ``before-call`` events (a handler answering
        ``before-call``, e.g. Stubber, replaces the call), errors named after the
        operation, then ``ResponseMetadata``."""
        model = self.meta.service_model.operation_model(operation)
        context = {"client_region": self.meta.region_name, "client_config": self.meta.config}
        events = self.meta.events
        responses = events.emit(f"provide-client-params.rekognition.{operation}", params=kwargs,
                                model=model, context=context)
        kwargs = next((r[1] for r in responses if r[1] is not None), kwargs)
        events.emit(f"before-parameter-build.rekognition.{operation}", params=kwargs, model=model, context=context)
        _, stubbed = events.emit_until_response(f"before-call.rekognition.{operation}", model=model,
                                                params=kwargs, request_signer=None, context=context)
        if stubbed is not None:
            http, parsed = stubbed
            if http.status_code >= 300:
                error = parsed.get("Error", {})
                raise ClientError(parsed, operation) if error.get("Code") not in ERROR_CODES else \
                    error_class(error["Code"])(error.get("Message", ""), operation)
            return parsed
        try:
            result = method(self, **kwargs)
        except RekognitionError as exc:
            if exc.operation_name == operation:
                raise
            raise type(exc)(exc.message, operation) from None
        except OSError as exc:  # the home's storage (disk full, read-only): a code, not a raw error
            raise InternalServerError(storage_message(exc), operation) from None
        request_id = str(uuid.uuid4())
        return {**result, "ResponseMetadata": {
            "RequestId": request_id, "HTTPStatusCode": 200, "RetryAttempts": 0,
            "HTTPHeaders": {"x-amzn-requestid": request_id, "content-type": "application/x-amz-json-1.1"}}}

    def __getattr__(self, name: str):
        """An operation rekolab does not implement is still a method (as in boto3):
        calling it raises ``UnsupportedOperationException``, a ``ClientError``."""
        operation = _METHOD_TO_API.get(name)
        if operation is None or name.startswith("_"):
            raise AttributeError(f"'Client' object has no attribute {name!r}")

        def call(**kwargs):
            return self._call(operation, _not_implemented(operation), kwargs)
        call.__name__ = name
        return call

    def can_paginate(self, operation_name: str) -> bool:
        """True for the operations botocore has a paginator for (as boto3's)."""
        return _METHOD_TO_API.get(operation_name) in _paginator_configs()

    def get_paginator(self, operation_name: str):
        """botocore's own :class:`~botocore.paginate.Paginator` over this client's method."""
        from botocore.exceptions import OperationNotPageableError
        from botocore.paginate import Paginator

        if not self.can_paginate(operation_name):
            raise OperationNotPageableError(operation_name=operation_name)
        api = _METHOD_TO_API[operation_name]
        return Paginator(getattr(self, operation_name), _paginator_configs()[api],
                         self.meta.service_model.operation_model(api))

    def close(self) -> None:
        """As boto3's ``close()``: nothing to release here (no connections); jobs keep running."""

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

    # -- celebrity recognition (rekolab/celebrity_ops.py, analysis/celebrities.py) ------
    @_operation("StartCelebrityRecognition")
    def start_celebrity_recognition(self, **kwargs) -> dict:
        """StartCelebrityRecognition against the celebrity gallery (an empty gallery is
        InvalidParameterException). Extensions: ``SampleRate`` (default 5),
        ``MinConfidence`` (0-100, default 50), ``CelebrityGallery`` (a gallery folder;
        default ``<rekolab home>/celebrities``)."""
        from .celebrity_ops import check_start

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
        from .celebrity_ops import celebrity_info

        return celebrity_info(kwargs)

    @_operation("RecognizeCelebrities")
    def recognize_celebrities(self, **kwargs) -> dict:
        """RecognizeCelebrities: ``{CelebrityFaces, UnrecognizedFaces}`` for one image
        (Image.Bytes up to 5 MB, or Image.S3Object in a bucket root, JPEG or PNG).
        Extensions: ``MinConfidence``, ``CelebrityGallery``."""
        from .celebrity_ops import recognize_celebrities

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

    # -- stream processors (rekolab/streaming/) -------------------------------------------
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

    # -- image operations (rekolab/image_ops.py, analysis/faces.py, analysis/image_labels.py) --
    @_operation("DetectFaces")
    def detect_faces(self, **kwargs) -> dict:
        """DetectFaces: ``{FaceDetails}`` of the 100 largest faces; ``Attributes``
        DEFAULT (default), ALL, or named attributes (DEFAULT's keys plus those)."""
        from . import image_ops

        return image_ops.detect_faces(kwargs, self.buckets)

    @_operation("CompareFaces")
    def compare_faces(self, **kwargs) -> dict:
        """CompareFaces: ``{SourceImageFace, FaceMatches, UnmatchedFaces}``;
        SimilarityThreshold default 80, QualityFilter default NONE."""
        from . import image_ops

        return image_ops.compare_faces(kwargs, self.buckets)

    @_operation("DetectLabels")
    def detect_labels(self, **kwargs) -> dict:
        """DetectLabels: ``Labels`` (GENERAL_LABELS) and ``ImageProperties``
        (IMAGE_PROPERTIES); MinConfidence default 55, MaxLabels default 1000. Extensions
        as StartLabelDetection: ``ExtraLabels``, ``Models``, ``ClipModel``, ``DetectorModel``."""
        from . import image_ops

        return image_ops.detect_labels(kwargs, self.buckets)

    # -- users (rekolab/users.py) -------------------------------------------------------
    @staticmethod
    def _users_call(operation: str, kwargs: dict):
        from . import users
        from .requests import validate_request

        validate_request(operation, kwargs)
        return users

    @_operation("CreateUser")
    def create_user(self, **kwargs) -> dict:
        """CreateUser: a user (no faces yet, status CREATED) in a collection."""
        return self._users_call("CreateUser", kwargs).create_user(kwargs)

    @_operation("DeleteUser")
    def delete_user(self, **kwargs) -> dict:
        """DeleteUser: its faces are disassociated and stay in the collection."""
        return self._users_call("DeleteUser", kwargs).delete_user(kwargs)

    @_operation("ListUsers")
    def list_users(self, **kwargs) -> dict:
        """ListUsers: ``{Users[{UserId, UserStatus}]}`` sorted by UserId, pages of MaxResults (default 500)."""
        return self._users_call("ListUsers", kwargs).list_users(kwargs)

    @_operation("AssociateFaces")
    def associate_faces(self, **kwargs) -> dict:
        """AssociateFaces: up to 100 faces per user; UserMatchThreshold default 75."""
        return self._users_call("AssociateFaces", kwargs).associate_faces(kwargs)

    @_operation("DisassociateFaces")
    def disassociate_faces(self, **kwargs) -> dict:
        """DisassociateFaces: ``{DisassociatedFaces, UnsuccessfulFaceDisassociations, UserStatus}``."""
        return self._users_call("DisassociateFaces", kwargs).disassociate_faces(kwargs)

    @_operation("SearchUsers")
    def search_users(self, **kwargs) -> dict:
        """SearchUsers by FaceId or UserId; UserMatchThreshold default 80."""
        return self._users_call("SearchUsers", kwargs).search_users(kwargs)

    @_operation("SearchUsersByImage")
    def search_users_by_image(self, **kwargs) -> dict:
        """SearchUsersByImage: the image's largest face against the users' vectors."""
        from . import image_ops

        return image_ops.search_users_by_image(kwargs, self.buckets)

    # -- tags (rekolab/tags.py) ---------------------------------------------------------
    @staticmethod
    def _tags_call(operation: str, kwargs: dict):
        from . import tags
        from .requests import validate_request

        validate_request(operation, kwargs)
        return tags

    @_operation("TagResource")
    def tag_resource(self, **kwargs) -> dict:
        """TagResource on a collection or stream processor ARN (at most 50 tags)."""
        return self._tags_call("TagResource", kwargs).tag_resource(kwargs)

    @_operation("UntagResource")
    def untag_resource(self, **kwargs) -> dict:
        """UntagResource: remove TagKeys (absent keys are ignored)."""
        return self._tags_call("UntagResource", kwargs).untag_resource(kwargs)

    @_operation("ListTagsForResource")
    def list_tags_for_resource(self, **kwargs) -> dict:
        """ListTagsForResource: ``{Tags}``."""
        return self._tags_call("ListTagsForResource", kwargs).list_tags_for_resource(kwargs)

    # -- segment detection (rekolab/analysis/segments.py, shots.py, results/segments.py) --
    @_operation("StartSegmentDetection")
    def start_segment_detection(self, **kwargs) -> dict:
        """StartSegmentDetection: SHOT and TECHNICAL_CUE segments on every frame of the
        video (see docs/segments.md). Filters are checked before the job starts."""
        from .analysis.segments import check_start

        request, token = parse_start("StartSegmentDetection", kwargs)
        check_start(request.params)
        return {"JobId": self.jobs.start(request, token, self.buckets)}

    @_operation("GetSegmentDetection")
    def get_segment_detection(self, **kwargs) -> dict:
        """GetSegmentDetection: ``Segments[]`` in the order of the requested SegmentTypes,
        each type by time; ``VideoMetadata`` and ``AudioMetadata`` lists and
        ``SelectedSegmentTypes`` (with model versions) on every page."""
        from .results.segments import segment_items

        req = parse_get("GetSegmentDetection", kwargs)
        response = self._page(req, "StartSegmentDetection", segment_items, "Segments")
        record = self.jobs.record(req.job_id)
        response["VideoMetadata"] = [response["VideoMetadata"]] if "VideoMetadata" in response else []
        response["AudioMetadata"] = list(record.models.get("AudioMetadata", []))
        response["SelectedSegmentTypes"] = list(record.models.get("SelectedSegmentTypes", []))
        return response

    # -- text detection (rekolab/analysis/text.py, models/ocr.py, results/text.py) --------
    @_operation("StartTextDetection")
    def start_text_detection(self, **kwargs) -> dict:
        """StartTextDetection: PP-OCRv4 lines and words on the sampled frames (see
        docs/text.md). Extension: ``SampleRate`` (frames analysed per second, default 5)."""
        from .analysis.text import check_start

        request, token = parse_start("StartTextDetection", kwargs)
        check_start(request.params)
        return {"JobId": self.jobs.start(request, token, self.buckets)}

    @_operation("GetTextDetection")
    def get_text_detection(self, **kwargs) -> dict:
        """GetTextDetection: ``TextDetections[]`` by Timestamp (lines, then their
        words, per frame), pages of MaxResults; ``TextModelVersion``."""
        from .results.text import text_detection_items

        req = parse_get("GetTextDetection", kwargs)
        response = self._page(req, "StartTextDetection", text_detection_items, "TextDetections")
        version = self.jobs.record(req.job_id).models.get("TextModelVersion")
        if version:
            response["TextModelVersion"] = version
        return response

    @_operation("DetectText")
    def detect_text(self, **kwargs) -> dict:
        """DetectText: lines and words of one image (Image.Bytes or Image.S3Object,
        JPEG or PNG), the same OCR and Filters as StartTextDetection."""
        from .analysis.text import detect_text_image

        return detect_text_image(kwargs, self.buckets)

    # -- content moderation (rekolab/analysis/moderation.py, results/moderation.py) -------
    @_operation("StartContentModeration")
    def start_content_moderation(self, **kwargs) -> dict:
        """StartContentModeration: NudeNet for the nudity branch of the v7 taxonomy, CLIP
        zero-shot for the other categories when a CLIP model can run (docs/moderation.md).
        Extensions: ``SampleRate`` (default 5), ``Models`` (``["NUDENET", "CLIP"]``; named =
        required), ``ClipModel`` (``{Arch, Pretrained, Checkpoint}``)."""
        from .analysis.moderation import check_start

        request, token = parse_start("StartContentModeration", kwargs)
        check_start(request.params)
        return {"JobId": self.jobs.start(request, token, self.buckets)}

    @_operation("GetContentModeration")
    def get_content_moderation(self, **kwargs) -> dict:
        """GetContentModeration: ``ModerationLabels[]``, SortBy TIMESTAMP (default) or NAME,
        AggregateBy TIMESTAMPS (default) or SEGMENTS, ``ModerationModelVersion``,
        ``GetRequestMetadata``."""
        from .results.moderation import moderation_items, moderation_view

        req = parse_get("GetContentModeration", kwargs)
        sort_by = req.sort_by or "TIMESTAMP"
        aggregate_by = req.aggregate_by or "TIMESTAMPS"
        response = self._page(req, "StartContentModeration", moderation_items, "ModerationLabels",
                              sort=moderation_view(sort_by, aggregate_by),
                              options=f"SortBy={sort_by};AggregateBy={aggregate_by}")
        version = self.jobs.record(req.job_id).models.get("ModerationModelVersion")
        if version:
            response["ModerationModelVersion"] = version
        response["GetRequestMetadata"] = {"SortBy": sort_by, "AggregateBy": aggregate_by}
        return response

    @_operation("DetectModerationLabels")
    def detect_moderation_labels(self, **kwargs) -> dict:
        """DetectModerationLabels: the same models and mapping as StartContentModeration on
        one image (Image.Bytes up to 5 MB or Image.S3Object, JPEG or PNG); MinConfidence
        default 50. HumanLoopConfig and ProjectVersion (custom adapters) are refused.
        Extensions: ``Models``, ``ClipModel``."""
        from .analysis.moderation import detect_moderation_labels
        from .errors import InvalidParameterException
        from .images import load_image, normalize_image_request
        from .requests import validate_request

        op = "DetectModerationLabels"
        kwargs = normalize_image_request(kwargs, op)
        extensions = validate_request(op, kwargs)
        for unsupported in ("HumanLoopConfig", "ProjectVersion"):
            if unsupported in kwargs:
                raise InvalidParameterException(
                    f"{unsupported} is not supported by rekolab (no Amazon A2I human review or custom "
                    "moderation adapters here); remove it", op)
        bgr, _ = load_image(kwargs["Image"], self.buckets, op)
        params = {**extensions, **({"MinConfidence": kwargs["MinConfidence"]} if "MinConfidence" in kwargs else {})}
        return detect_moderation_labels(bgr, params)

    # -- person tracking (rekolab/analysis/persons.py, results/persons.py) --------------
    @_operation("StartPersonTracking")
    def start_person_tracking(self, **kwargs) -> dict:
        """StartPersonTracking: YOLOX person boxes tracked by ByteTrack, one Index per person
        (face embeddings rejoin a person across cuts), the face inside each box as Face
        (docs/persons.md). Extension: ``SampleRate`` (default 5)."""
        return self._start("StartPersonTracking", kwargs)

    @_operation("GetPersonTracking")
    def get_person_tracking(self, **kwargs) -> dict:
        """GetPersonTracking: ``Persons[]``, SortBy TIMESTAMP (default) or INDEX, pages of MaxResults."""
        from .results.persons import person_items, sort_persons

        req = parse_get("GetPersonTracking", kwargs)
        sort_by = req.sort_by or "TIMESTAMP"
        return self._page(req, "StartPersonTracking", person_items, "Persons",
                          sort=None if sort_by == "TIMESTAMP" else sort_persons(sort_by),
                          options=f"SortBy={sort_by}")


# -- boto3 parity: meta, operation names, paginators ------------------------------------
# boto3.client's own arguments that the in-process client accepts (and has no use for:
# there is no connection, no signing).
_BOTO3_ARGUMENTS = {"api_version", "use_ssl", "verify", "aws_access_key_id", "aws_secret_access_key",
                    "aws_session_token", "aws_account_id"}


def _operation_names() -> dict[str, str]:
    from botocore import xform_name

    from .requests import service_model

    return {xform_name(op): op for op in service_model().operation_names}


_METHOD_TO_API = _operation_names()


@functools.lru_cache(maxsize=1)
def _paginator_configs() -> dict:
    import botocore.session

    return botocore.session.get_session().get_paginator_model("rekognition")._paginator_config


def _client_meta(region_name: str | None, endpoint_url: str | None, config):
    """botocore's own ``ClientMeta``: region, service model, an event emitter."""
    from botocore.client import ClientMeta
    from botocore.config import Config
    from botocore.hooks import HierarchicalEmitter

    from .requests import service_model

    region = (region_name or (config.region_name if config is not None else None)
              or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    client_config = (config or Config()).merge(Config(region_name=region))
    return ClientMeta(HierarchicalEmitter(), client_config, endpoint_url or "rekolab://in-process",
                      service_model(), dict(_METHOD_TO_API), "aws")

_default: Client | None = None


def client(service_name: str = "rekognition", region_name: str | None = None, **kwargs) -> Client:
    """A new :class:`Client`. ``rekolab.client("rekognition", region_name=..., endpoint_url=...,
    aws_access_key_id=...)`` takes ``boto3.client``'s arguments (plus rekolab's: ``buckets``,
    ``streams``, ``max_concurrent_jobs``, ``workers``, ``executor``, ``aws_outputs``)."""
    if service_name != "rekognition":
        from botocore.exceptions import UnknownServiceError

        raise UnknownServiceError(service_name=service_name, known_service_names="rekognition")
    return Client(region_name=region_name, **kwargs)


_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide client that the notebook API uses."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default
