"""Parse and validate every request once, against botocore's own service model.

Two layers, as with the real service:

1. **Shape** (what botocore checks before sending): missing required members,
   unknown members, wrong types, values under a ``min`` -> botocore's own
   :class:`~botocore.exceptions.ParamValidationError`, raised by botocore's own
   validator on the Rekognition input shape.
2. **Values** (what the service checks): ``max`` lengths/values, ``pattern`` and
   ``enum`` from the same service model, plus per-operation rules ->
   ``InvalidParameterException`` with a message that says what to fix.

rekolab extensions (e.g. ``SampleRate``, ``Video.Path``) are taken out before
botocore sees the request and validated here.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ParamValidationError

from .errors import InvalidParameterException

__all__ = [
    "service_model",
    "validate_shape_values",
    "validate_request",
    "StartRequest",
    "parse_start",
    "GetRequest",
    "parse_get",
    "EXTENSIONS",
    "DEFAULT_MAX_RESULTS",
    "check_range",
]

DEFAULT_MAX_RESULTS = 1000


@functools.lru_cache(maxsize=1)
def service_model():
    """botocore's Rekognition service model (``service-2.json`` shipped with botocore)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("rekognition")


@functools.lru_cache(maxsize=None)
def _pattern(p: str) -> re.Pattern:
    # The service model's TagKey/TagValue patterns use Java's Unicode classes, which
    # Python's re lacks: \p{L} and \p{N} (letters, numbers) -> \w (both patterns also
    # allow "_"), \p{Z} (separators) -> the Unicode space separators.
    p = (p.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\w")
         .replace(r"\p{Z}", " \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"))
    return re.compile(p)


def validate_shape_values(value: Any, shape, path: str) -> list[str]:
    """Check ``max``, ``pattern``, ``enum`` and numeric ranges of ``value`` against
    a botocore shape (recursively). Returns a list of problems, empty when valid.

    The service matches patterns against the whole value (``fullmatch``)."""
    problems: list[str] = []
    t = shape.type_name
    meta = shape.metadata
    if value is None:
        return problems
    if t == "structure":
        for name, member in shape.members.items():
            if isinstance(value, dict) and name in value:
                problems += validate_shape_values(value[name], member, f"{path}.{name}")
    elif t == "list":
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path} has {len(value)} items; at most {meta['max']} are allowed")
        for i, item in enumerate(value):
            problems += validate_shape_values(item, shape.member, f"{path}[{i}]")
    elif t == "map":
        for k, v in value.items():
            problems += validate_shape_values(k, shape.key, f"{path} key")
            problems += validate_shape_values(v, shape.value, f"{path}[{k!r}]")
    elif t == "string":
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path} is {len(value)} characters long; at most {meta['max']} are allowed")
        if "min" in meta and len(value) < meta["min"]:
            problems.append(f"{path} is {len(value)} characters long; at least {meta['min']} are required")
        if shape.enum and value not in shape.enum:
            problems.append(f"{path} is {value!r}; it must be one of {', '.join(shape.enum)}")
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            problems.append(f"{path} {value!r} does not match the pattern {meta['pattern']}")
    elif t in ("integer", "long", "float", "double"):
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path} must be a finite number, not {value}")
        else:
            if "max" in meta and value > meta["max"]:
                problems.append(f"{path} is {value}; the maximum is {meta['max']}")
            if "min" in meta and value < meta["min"]:
                problems.append(f"{path} is {value}; the minimum is {meta['min']}")
    elif t == "blob":
        # botocore also accepts file-like blobs; their size is checked where they are read.
        if "max" in meta and hasattr(value, "__len__") and len(value) > meta["max"]:
            problems.append(f"{path} is {len(value)} bytes; at most {meta['max']} are allowed")
    return problems


def check_range(value: Any, where: str, lo: float, hi: float, operation: str) -> float:
    """``value`` as a float when it is a finite number in [lo, hi]; else
    ``InvalidParameterException`` naming ``where`` (the field's request path)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameterException(f"{where} must be a number, not {value!r}", operation)
    if not lo <= value <= hi:
        raise InvalidParameterException(f"{where} is {value}; it must be from {lo:g} to {hi:g}", operation)
    return float(value)


# rekolab's extension parameters: name -> (python types, check, description).
def _positive_rate(v) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 120:
        return "SampleRate must be a number of frames per second in (0, 120]"
    return None


def _min_confidence(v) -> str | None:  # celebrity recognition: minimum Confidence to name a face
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 100:
        return "MinConfidence must be a number from 0 to 100"
    return None


def _gallery_path(v) -> str | None:  # celebrity recognition: a gallery folder other than the default
    if not isinstance(v, str) or not v.strip() or len(v) > 4096 or "\x00" in v:
        return "CelebrityGallery must be the path of a celebrity gallery folder (a non-empty string)"
    return None


# -- stream processors: StartStreamProcessor extensions --
def _stream_realtime(v) -> str | None:
    return None if isinstance(v, bool) else "Realtime must be true (read sources at their native rate) or false"


def _stream_sinks(v) -> str | None:
    if (not isinstance(v, list) or len(v) > 8
            or not all(isinstance(p, str) and p.strip() and "\x00" not in p for p in v)):
        return "Sinks must be a list of at most 8 output paths ending in .jsonl or .parquet"
    return None


def _stream_queue_size(v) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100_000:
        return "QueueSize must be an integer from 1 to 100000 (records buffered per consumer)"
    return None


# -- label detection: StartLabelDetection extensions (checked in rekolab/analysis/labels.py) --
def _label_extension(name: str):
    def check(v) -> str | None:
        from .analysis.labels import check_extension

        return check_extension(name, v)
    return check


# -- content moderation: StartContentModeration / DetectModerationLabels extensions --
def _moderation_extension(name: str):
    def check(v) -> str | None:
        from .analysis.moderation import check_extension

        return check_extension(name, v)
    return check


EXTENSIONS: dict[str, dict[str, Any]] = {
    "StartFaceDetection": {"SampleRate": _positive_rate},
    "StartLabelDetection": {"SampleRate": _positive_rate,
                            **{n: _label_extension(n) for n in ("ExtraLabels", "Models", "ClipModel",
                                                                 "DetectorModel")}},
    "StartCelebrityRecognition": {"SampleRate": _positive_rate, "MinConfidence": _min_confidence,
                                  "CelebrityGallery": _gallery_path},
    "RecognizeCelebrities": {"MinConfidence": _min_confidence, "CelebrityGallery": _gallery_path},
    "GetCelebrityInfo": {"CelebrityGallery": _gallery_path},
    "StartFaceSearch": {"SampleRate": _positive_rate},
    # -- DetectLabels: the StartLabelDetection model extensions (rekolab/analysis/image_labels.py) --
    "DetectLabels": {n: _label_extension(n) for n in ("ExtraLabels", "Models", "ClipModel", "DetectorModel")},
    "StartTextDetection": {"SampleRate": _positive_rate},
    # -- stream processors (rekolab/streaming/) --
    "CreateStreamProcessor": {"SampleRate": _positive_rate},
    "StartStreamProcessor": {"Realtime": _stream_realtime, "Sinks": _stream_sinks,
                             "QueueSize": _stream_queue_size},
    # -- content moderation and person tracking (analysis/moderation.py, analysis/persons.py) --
    "StartContentModeration": {"SampleRate": _positive_rate,
                               **{n: _moderation_extension(n) for n in ("Models", "ClipModel")}},
    "DetectModerationLabels": {n: _moderation_extension(n) for n in ("Models", "ClipModel")},
    "StartPersonTracking": {"SampleRate": _positive_rate},
}


def validate_request(operation: str, params: dict) -> dict:
    """Validate ``params`` for ``operation``; return the extensions that were taken out.

    Raises botocore's ParamValidationError for malformed calls and
    InvalidParameterException for values the service would refuse."""
    from botocore.validate import ParamValidator

    params = dict(params)
    extensions = {}
    for name, check in EXTENSIONS.get(operation, {}).items():
        if name in params:
            value = params.pop(name)
            problem = check(value)
            if problem:
                raise InvalidParameterException(problem, operation)
            extensions[name] = value
    video_path = None
    if isinstance(params.get("Video"), dict) and "Path" in params["Video"]:
        video = dict(params["Video"])
        video_path = video.pop("Path")
        params["Video"] = video
        if not isinstance(video_path, str) or not video_path:
            raise ParamValidationError(report="Invalid type for parameter Video.Path: a non-empty str is required")
        if video:
            raise InvalidParameterException(
                "Video must have either S3Object or the rekolab extension Path, not both", operation)
    op = service_model().operation_model(operation)
    report = ParamValidator().validate(params, op.input_shape)
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())
    problems = validate_shape_values(params, op.input_shape, "")
    if problems:
        raise InvalidParameterException(
            "Request has invalid parameters: " + "; ".join(p.lstrip(".") for p in problems), operation)
    if video_path is not None:
        extensions["VideoPath"] = video_path
    return extensions


@dataclass(frozen=True)
class StartRequest:
    """A validated Start* request. ``params`` is the canonical request (PascalCase,
    extensions included), the thing idempotency compares and jobs store."""

    operation: str
    params_json: str  # canonical JSON of the request, ClientRequestToken excluded

    @property
    def params(self) -> dict:
        return json.loads(self.params_json)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.operation}\n{self.params_json}".encode()).hexdigest()

    @property
    def video(self) -> dict:
        return self.params["Video"]

    @property
    def job_tag(self) -> str | None:
        return self.params.get("JobTag")

    @property
    def notification_channel(self) -> dict | None:
        return self.params.get("NotificationChannel")

    @property
    def sample_rate(self) -> float | None:
        return self.params.get("SampleRate")


def parse_start(operation: str, params: dict) -> tuple[StartRequest, str | None]:
    """Validate a Start* call; return the request and its ClientRequestToken."""
    extensions = validate_request(operation, params)
    canonical = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    if "VideoPath" in extensions:
        canonical["Video"] = {"Path": extensions.pop("VideoPath")}
    canonical.update(extensions)
    if not canonical["Video"]:
        raise InvalidParameterException(
            "Video must contain S3Object {Bucket, Name} (or the rekolab extension Path)", operation)
    s3 = canonical["Video"].get("S3Object")
    if s3 is not None and ("Bucket" not in s3 or "Name" not in s3):
        missing = [k for k in ("Bucket", "Name") if k not in s3]
        raise InvalidParameterException(f"Video.S3Object needs {' and '.join(missing)}", operation)
    token = params.get("ClientRequestToken")
    return StartRequest(operation, json.dumps(canonical, sort_keys=True, separators=(",", ":"))), token


@dataclass(frozen=True)
class GetRequest:
    operation: str
    job_id: str
    max_results: int
    next_token: str | None
    sort_by: str | None = None
    aggregate_by: str | None = None


def parse_get(operation: str, params: dict) -> GetRequest:
    """Validate a Get* call. MaxResults above 1000 is capped at 1000, as documented."""
    validate_request(operation, params)
    max_results = min(int(params.get("MaxResults", DEFAULT_MAX_RESULTS)), DEFAULT_MAX_RESULTS)
    return GetRequest(operation, params["JobId"], max_results, params.get("NextToken") or None,
                      params.get("SortBy"), params.get("AggregateBy"))
