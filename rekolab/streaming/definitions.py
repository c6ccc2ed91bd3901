"""Stream processor definitions: constants, fragment numbers, the ``REKOLAB_STREAMS``
parser, the per-processor JSON files under ``<home>/stream_processors/`` (read, write,
update; interrupted sessions read as FAILED) and the validation of CreateStreamProcessor
(tags, regions of interest, labels, S3 key prefixes).

Part of :mod:`rekolab.streaming`; it imports nothing else of the package.
"""
from __future__ import annotations

import re
import threading
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import store
from ..errors import InvalidParameterException, ResourceNotFoundException

if TYPE_CHECKING:  # annotations only
    from .session import _Session

#: Length of a "fragment" (seconds of source presentation time).
FRAGMENT_SECONDS = 2.0
_FRAGMENT_INDEX_DIGITS = 10
#: Frames analysed per second of source time (rekolab extension ``SampleRate``).
DEFAULT_SAMPLE_RATE = 5.0
#: Records waiting for one consumer before the oldest is dropped.
DEFAULT_QUEUE_SIZE = 256
#: Stream processors per region (DG limits: "the default number ... is 10").
DEFAULT_MAX_STREAM_PROCESSORS = 10
DEFAULT_MAX_DURATION_S = 10
FACE_MATCH_FLOOR = 80.0
DEFAULT_MIN_CONFIDENCE = 50.0
LABELS = ("PERSON", "PET", "PACKAGE")

#: COCO class (YOLOX) -> connected-home label.
CONNECTED_HOME_CLASSES: dict[str, str] = {
    "person": "PERSON",
    "cat": "PET", "dog": "PET", "bird": "PET", "horse": "PET", "sheep": "PET", "cow": "PET",
    "suitcase": "PACKAGE", "backpack": "PACKAGE", "handbag": "PACKAGE",
}

_FACE_SEARCH_FACE_KEYS = ("BoundingBox", "Confidence", "ExternalImageId", "FaceId", "ImageId")
_ACTIVE = ("STARTING", "RUNNING", "STOPPING")
SNS_SUBJECT = "Rekognition Stream Processing Event"

_LOCK = threading.RLock()
_SESSIONS: dict[str, "_Session"] = {}  # processor name -> live session in this process


# ============================================================================ fragments


def fragment_number(origin: float, index: int) -> str:
    """The FragmentNumber of the ``index``-th 2-second chunk of a source whose PTS 0 is
    Unix time ``origin``: 13 digits of ``origin`` in ms, then 10 digits of ``index``.

    Digits only, increasing with source position (and, for live sources, with each
    session's start), so a number from a record can be given back as
    ``StartSelector.KVSStreamStartSelector.FragmentNumber``."""
    return f"{int(round(origin * 1000)):013d}{int(index):0{_FRAGMENT_INDEX_DIGITS}d}"


def parse_fragment_number(value: str) -> tuple[int, int]:
    """``(origin_ms, index)`` of a rekolab FragmentNumber."""
    if not re.fullmatch(r"[0-9]+", value or "") or len(value) <= _FRAGMENT_INDEX_DIGITS:
        raise ValueError(value)
    return int(value[:-_FRAGMENT_INDEX_DIGITS]), int(value[-_FRAGMENT_INDEX_DIGITS:])


def parse_streams(value: str | None) -> dict[str, str]:
    """Parse ``REKOLAB_STREAMS`` ("arn=source,arn2=source2"; an ARN has no ``=``)."""
    streams: dict[str, str] = {}
    for part in (value or "").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        arn, sep, source = part.partition("=")
        if not sep or not arn.strip() or not source.strip():
            raise ValueError(f"REKOLAB_STREAMS entry {part!r} is not of the form <kinesis video ARN>=<source>")
        streams[arn.strip()] = source.strip()
    return streams


# ============================================================================ persistence


def _dir() -> Path:
    path = store.home() / "stream_processors"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _def_path(name: str) -> Path:
    # Name matches [a-zA-Z0-9_.\-]+: no "/"; "." and ".." become "..json" / "...json".
    return _dir() / f"{name}.json"


def _sessions_dir(name: str) -> Path:
    return _dir() / f"{name}.sessions"


def _streams_file() -> Path:
    return store.home() / "kinesis_video_streams.json"


def _read_def(name: str, operation: str | None = None) -> dict:
    try:
        return store.read_json(_def_path(name))
    except FileNotFoundError:
        raise ResourceNotFoundException(
            f"Stream processor {name} not found. Create it with CreateStreamProcessor "
            "(rk.create_stream_processor) first", operation or "rekolab") from None


def _write_def(d: dict) -> None:
    store.atomic_write_json(_def_path(d["Name"]), d)


def _update_def(name: str, **changes) -> dict:
    with _LOCK:
        try:
            d = store.read_json(_def_path(name))
        except FileNotFoundError:
            return {}
        d.update(changes)
        d["LastUpdateTimestamp"] = time.time()
        _write_def(d)
        return d


def _owner() -> dict:
    from ..jobs import _OWNER

    return dict(_OWNER)


def _current(d: dict) -> dict:
    """A definition with an interrupted session (its process died) read as FAILED."""
    if d.get("Status") in _ACTIVE and d["Name"] not in _SESSIONS:
        from ..jobs import _owner_alive

        if not _owner_alive(d.get("Owner") or {}):
            return _update_def(d["Name"], Status="FAILED", StatusMessage=(
                f"Session {d.get('SessionId')} was interrupted: the process that ran it "
                f"(pid {(d.get('Owner') or {}).get('pid')}) exited") ) or d
    return d


def _all_defs() -> list[dict]:
    out = []
    for path in _dir().glob("*.json"):
        try:
            out.append(store.read_json(path))
        except (OSError, ValueError):
            continue
    return out


# ============================================================================ validation


def _invalid(message: str, operation: str) -> InvalidParameterException:
    return InvalidParameterException(message, operation)


def _check_tags(tags: Any, op: str) -> None:
    """Tags: botocore's TagKey/TagValue patterns use \\p{L}, which Python's re lacks."""
    from botocore.exceptions import ParamValidationError

    if not isinstance(tags, dict):
        raise ParamValidationError(report="Invalid type for parameter Tags, value: "
                                          f"{tags!r}, type: {type(tags)}, valid types: <class 'dict'>")
    if len(tags) > 200:
        raise _invalid(f"Tags has {len(tags)} entries; at most 200 are allowed", op)
    allowed = set("_.:/=+-@")

    def ok(text: str) -> bool:
        return all(c in allowed or unicodedata.category(c)[0] in "LZN" for c in text)

    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ParamValidationError(report=f"Invalid type for parameter Tags: keys and values must be str, "
                                              f"got {key!r}: {value!r}")
        if not 1 <= len(key) <= 128:
            raise _invalid(f"Tag key {key!r} must be 1 to 128 characters long", op)
        if len(value) > 256:
            raise _invalid(f"Tag value of {key!r} is {len(value)} characters long; at most 256 are allowed", op)
        if key.lower().startswith("aws:"):
            raise _invalid(f"Tag key {key!r} must not start with 'aws:' (reserved)", op)
        if not ok(key) or not ok(value):
            raise _invalid(f"Tag {key!r}: {value!r} has characters outside letters, digits, spaces and "
                           "_.:/=+-@", op)


def _check_regions(regions: list, op: str, field: str) -> None:
    for i, roi in enumerate(regions):
        where = f"{field}[{i}]"
        box, poly = roi.get("BoundingBox"), roi.get("Polygon")
        if (box is None) == (poly is None):
            raise _invalid(f"{where} must have exactly one of BoundingBox or Polygon", op)
        if box is not None:
            missing = [k for k in ("Width", "Height", "Left", "Top") if k not in box]
            if missing:
                raise _invalid(f"{where}.BoundingBox needs {', '.join(missing)}", op)
            if not all(0 <= box[k] <= 1 for k in ("Left", "Top")) or not all(0 < box[k] <= 1 for k in ("Width", "Height")):
                raise _invalid(f"{where}.BoundingBox values are ratios of the frame: Left and Top in [0, 1], "
                               "Width and Height in (0, 1]", op)
            if box["Left"] + box["Width"] > 1 + 1e-6 or box["Top"] + box["Height"] > 1 + 1e-6:
                raise _invalid(f"{where}.BoundingBox runs past the frame (Left + Width or Top + Height > 1)", op)
        else:
            if not 3 <= len(poly) <= 10:
                raise _invalid(f"{where}.Polygon has {len(poly)} points; give 3 to 10", op)
            for j, p in enumerate(poly):
                if "X" not in p or "Y" not in p or not (0 <= p["X"] <= 1 and 0 <= p["Y"] <= 1):
                    raise _invalid(f"{where}.Polygon[{j}] needs X and Y, ratios of the frame in [0, 1]", op)


def _check_labels(labels: list, op: str, field: str) -> None:
    bad = [x for x in labels if x not in LABELS + ("ALL",)]
    if bad:
        raise _invalid(f"{field} has {', '.join(map(repr, bad))}; the labels are PERSON, PET, PACKAGE and ALL", op)


def _key_parts(prefix: str, op: str) -> list[str]:
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts) or "\x00" in prefix:
        raise _invalid(f"S3Destination.KeyPrefix {prefix!r} must not contain '.' or '..' path segments", op)
    return parts


def _validate_create(params: dict) -> tuple[dict, dict]:
    """Validate CreateStreamProcessor; return (canonical request, extensions)."""
    from ..requests import validate_request

    op = "CreateStreamProcessor"
    params = dict(params)
    tags = params.pop("Tags", None)
    extensions = validate_request(op, params)
    for key in extensions:
        params.pop(key, None)
    if tags is not None:
        _check_tags(tags, op)
        params["Tags"] = tags
    kvs = (params["Input"].get("KinesisVideoStream") or {}).get("Arn")
    if not kvs:
        raise _invalid("Input.KinesisVideoStream.Arn is required: the Kinesis video stream ARN that "
                       "rekolab maps to a local source (rk.client(streams={arn: 'clip.mp4'}) or REKOLAB_STREAMS)", op)
    output, settings = params["Output"], params["Settings"]
    if ("KinesisDataStream" in output) == ("S3Destination" in output):
        raise _invalid("Output must have exactly one of KinesisDataStream (face search) or "
                       "S3Destination (label detection)", op)
    if ("FaceSearch" in settings) == ("ConnectedHome" in settings):
        raise _invalid("Settings must have exactly one of FaceSearch or ConnectedHome", op)
    if "FaceSearch" in settings:
        fs = settings["FaceSearch"]
        if not fs.get("CollectionId"):
            raise _invalid("Settings.FaceSearch.CollectionId is required: the collection to search", op)
        if "KinesisDataStream" not in output:
            raise _invalid("A face search stream processor writes to a Kinesis data stream: give "
                           "Output.KinesisDataStream.Arn, not S3Destination (that is for ConnectedHome)", op)
        if not output["KinesisDataStream"].get("Arn"):
            raise _invalid("Output.KinesisDataStream.Arn is required", op)
        for key in ("KmsKeyId", "RegionsOfInterest", "NotificationChannel"):
            if key in params:
                raise _invalid(f"{key} is for label detection (ConnectedHome) stream processors and "
                               "should not be used with a face search processor; remove it", op)
        if "FaceMatchThreshold" in fs:  # "values lower than 80 are set to 80"
            fs = dict(fs, FaceMatchThreshold=max(FACE_MATCH_FLOOR, float(fs["FaceMatchThreshold"])))
            params["Settings"] = {"FaceSearch": fs}
    else:
        ch = settings["ConnectedHome"]
        _check_labels(ch["Labels"], op, "Settings.ConnectedHome.Labels")
        if "S3Destination" not in output:
            raise _invalid("A label detection (ConnectedHome) stream processor writes to S3: give "
                           "Output.S3Destination {Bucket, KeyPrefix}, not KinesisDataStream", op)
        if not output["S3Destination"].get("Bucket"):
            raise _invalid("Output.S3Destination.Bucket is required", op)
        _key_parts(output["S3Destination"].get("KeyPrefix", ""), op)
        if "NotificationChannel" not in params:
            raise _invalid("A label detection (ConnectedHome) stream processor needs NotificationChannel "
                           "{SNSTopicArn}: it publishes its events there", op)
        _check_regions(params.get("RegionsOfInterest") or [], op, "RegionsOfInterest")
    return params, extensions


def _arn(params: dict) -> str:
    kvs = params["Input"]["KinesisVideoStream"]["Arn"].split(":")
    account = params["RoleArn"].split(":")[4]
    return f"arn:{kvs[1]}:rekognition:{kvs[3]}:{account}:streamprocessor/{params['Name']}"


def _kind(d: dict) -> str:
    return "FaceSearch" if "FaceSearch" in d["Request"]["Settings"] else "ConnectedHome"
