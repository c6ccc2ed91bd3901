"""Stream processors: Rekognition Video's streaming API, run locally.

    import rekolab as rk
    proc = rk.create_stream_processor("door-cam", source="clip.mp4",
                                      face_search={"CollectionId": "cast", "FaceMatchThreshold": 85})
    async for record in proc.start(stop_selector={"MaxDurationInSeconds": 30}):
        ...      # Kinesis-shaped face search records, one per analysed frame

    client.create_stream_processor(Name=..., Input=..., Output=..., Settings=..., RoleArn=...)
    client.start_stream_processor(Name=...)  -> {"SessionId": ...}

The seven operations (Create/Describe/List/Start/Stop/Update/DeleteStreamProcessor)
take and return what boto3's Rekognition client does, validated against botocore's
own service model. Differences from the service, all documented in docs/streaming.md:

* **Input.** Instead of a Kinesis video stream, a processor reads a *source*: a local
  file, an HTTP(S) URL, an RTSP/RTMP/SRT URL, a camera, or any (async) iterable of
  frames (:mod:`rekolab.video.live`). ``Input.KinesisVideoStream.Arn`` is still
  required; the ARN is mapped to a source by ``rk.client(streams={arn: source})``,
  by ``REKOLAB_STREAMS="arn=/path/clip.mp4,arn2=rtsp://cam/1"``, or by the notebook
  verb's ``source=`` (which remembers path/URL/camera sources under the home).
* **Output.** Face search records (Kinesis Data Streams shape) are *yielded* to
  whoever iterates the session (``async for`` / ``for``), and written to optional
  JSON Lines / parquet sinks. A label processor's S3Destination is a folder under
  the rekolab home: ``<home>/s3/<Bucket>/<KeyPrefix>/<Name>/<SessionId>/``; its SNS
  events are yielded too, and sent to ``client.subscribe`` callbacks.
* **Time.** Fragments are 2-second chunks of the source's presentation time; see
  :func:`fragment_number`.

State is kept under ``<home>/stream_processors/``: ``<Name>.json`` per processor
(atomic writes) and ``<Name>.sessions/<SessionId>.json`` per finished session.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import store
from .errors import (InvalidParameterException, LimitExceededException, ResourceInUseException,
                     ResourceNotFoundException)

__all__ = [
    "StreamProcessor",
    "StreamSession",
    "StreamProcessorManager",
    "create_stream_processor",
    "fragment_number",
    "parse_fragment_number",
    "parse_streams",
    "CONNECTED_HOME_CLASSES",
    "FRAGMENT_SECONDS",
    "DEFAULT_SAMPLE_RATE",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_MAX_STREAM_PROCESSORS",
]

log = logging.getLogger("rekolab.streaming")

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
    from .jobs import _OWNER

    return dict(_OWNER)


def _current(d: dict) -> dict:
    """A definition with an interrupted session (its process died) read as FAILED."""
    if d.get("Status") in _ACTIVE and d["Name"] not in _SESSIONS:
        from .jobs import _owner_alive

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
    from .requests import validate_request

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


# ============================================================================ the manager


class StreamProcessorManager:
    """The stream-processor half of a :class:`rekolab.Client` (``client.stream_processors``).

    ``streams`` maps Kinesis video stream ARNs to sources for this client (any source
    spec, iterables included); it is looked up before ``REKOLAB_STREAMS`` and the
    mappings the notebook verb remembered under the home."""

    def __init__(self, streams: dict | None = None, publish: Callable[[str | None, dict], None] | None = None):
        self.streams: dict[str, Any] = dict(streams or {})
        self._publish = publish
        # rekolab/aws: face search records also to Output.KinesisDataStream, label events to the
        # SNS topic and the S3Destination files to the real bucket
        self.aws_outputs = False

    # -- sources ---------------------------------------------------------------------
    def map_stream(self, arn: str, source: Any, persist: bool = True) -> None:
        """Map a Kinesis video ARN to a source; path/URL/camera sources are also
        remembered under the rekolab home (for later sessions and processes)."""
        from .video.live import is_persistable

        if isinstance(source, (str, os.PathLike)):
            text = os.fspath(source)
            if "://" not in text and not text.startswith("camera:"):
                source = str(Path(text).expanduser().resolve())
        self.streams[arn] = source
        if persist and is_persistable(source):
            value = f"camera:{source}" if isinstance(source, int) else os.fspath(source)
            with _LOCK:
                try:
                    mapping = store.read_json(_streams_file())
                except FileNotFoundError:
                    mapping = {}
                if mapping.get(arn) != value:
                    mapping[arn] = value
                    store.atomic_write_json(_streams_file(), mapping)

    def source_for(self, arn: str) -> Any | None:
        if arn in self.streams:
            return self.streams[arn]
        env = parse_streams(os.environ.get("REKOLAB_STREAMS"))
        if arn in env:
            return env[arn]
        try:
            return store.read_json(_streams_file()).get(arn)
        except FileNotFoundError:
            return None

    # -- operations ------------------------------------------------------------------
    def create(self, params: dict) -> dict:
        op = "CreateStreamProcessor"
        request, extensions = _validate_create(params)
        name = request["Name"]
        canonical = {k: v for k, v in request.items() if k != "Name"}
        arn = _arn(request)
        with _LOCK:
            try:
                existing = store.read_json(_def_path(name))
            except FileNotFoundError:
                existing = None
            if existing is not None:
                if existing["Request"] == canonical and existing.get("Extensions", {}) == extensions:
                    return {"StreamProcessorArn": existing["StreamProcessorArn"]}  # Name is idempotent
                raise ResourceInUseException("Stream processor name already in use.", op)
            others = _all_defs()
            kvs = request["Input"]["KinesisVideoStream"]["Arn"]
            kds = request["Output"].get("KinesisDataStream", {}).get("Arn")
            for other in others:
                if other["Request"]["Input"]["KinesisVideoStream"]["Arn"] == kvs:
                    raise ResourceInUseException(
                        f"Kinesis video stream {kvs} is already the input of stream processor "
                        f"{other['Name']}; a Kinesis video stream can feed one stream processor", op)
                if kds and other["Request"]["Output"].get("KinesisDataStream", {}).get("Arn") == kds:
                    raise ResourceInUseException(
                        f"Kinesis data stream {kds} is already the output of stream processor "
                        f"{other['Name']}; a Kinesis data stream takes one stream processor's output", op)
            region = arn.split(":")[3]
            limit = int(os.environ.get("REKOLAB_MAX_STREAM_PROCESSORS") or DEFAULT_MAX_STREAM_PROCESSORS)
            in_region = sum(1 for o in others if o["StreamProcessorArn"].split(":")[3] == region)
            if in_region >= limit:
                raise LimitExceededException(f"Stream processor limit exceeded for account, limit - {limit}", op)
            now = time.time()
            _write_def({"Name": name, "StreamProcessorArn": arn, "Request": canonical, "Extensions": extensions,
                        "Status": "STOPPED", "CreationTimestamp": now, "LastUpdateTimestamp": now})
        return {"StreamProcessorArn": arn}

    def describe(self, params: dict) -> dict:
        from .requests import validate_request

        op = "DescribeStreamProcessor"
        validate_request(op, params)
        d = _current(_read_def(params["Name"], op))
        req = d["Request"]
        out = {
            "Name": d["Name"],
            "StreamProcessorArn": d["StreamProcessorArn"],
            "Status": d["Status"],
            "CreationTimestamp": datetime.fromtimestamp(d["CreationTimestamp"], timezone.utc),
            "LastUpdateTimestamp": datetime.fromtimestamp(d["LastUpdateTimestamp"], timezone.utc),
            "Input": req["Input"],
            "Output": req["Output"],
            "RoleArn": req["RoleArn"],
            "Settings": req["Settings"],
        }
        message = d.get("StatusMessage")
        session = _SESSIONS.get(d["Name"])
        if session is not None and session.session_id == d.get("SessionId"):
            message = session.status_message() or message
        if message:
            out["StatusMessage"] = message
        for key in ("NotificationChannel", "KmsKeyId", "RegionsOfInterest", "DataSharingPreference"):
            if key in req:
                out[key] = req[key]
        return out

    def list(self, params: dict) -> dict:
        from .requests import validate_request
        from .results import make_token, read_token

        op = "ListStreamProcessors"
        validate_request(op, params)
        max_results = min(int(params.get("MaxResults", 1000)), 1000)
        names = sorted(d["Name"] for d in _all_defs())
        offset = read_token(params["NextToken"], "ListStreamProcessors") if params.get("NextToken") else 0
        page = names[offset:offset + max_results]
        out: dict = {"StreamProcessors": []}
        for name in page:
            try:
                d = _current(store.read_json(_def_path(name)))
            except FileNotFoundError:
                continue  # deleted meanwhile
            out["StreamProcessors"].append({"Name": name, "Status": d["Status"]})
        if offset + max_results < len(names):
            out["NextToken"] = make_token("ListStreamProcessors", offset + max_results)
        return out

    def start(self, params: dict, loop: asyncio.AbstractEventLoop | None = None,
              subscriber: "_Subscriber | None" = None) -> tuple[dict, "_Session"]:
        from .requests import validate_request

        op = "StartStreamProcessor"
        extensions = validate_request(op, params)
        sinks = [_make_sink(p, op) for p in extensions.get("Sinks", [])]
        name = params["Name"]
        d = _current(_read_def(name, op))
        kind = _kind(d)
        if kind == "FaceSearch" and self.aws_outputs:  # rekolab/aws: PutRecords to the real stream
            from .aws import KinesisSink
            sinks.append(KinesisSink(d["Request"]["Output"]["KinesisDataStream"]["Arn"]))
        start_sel = params.get("StartSelector")
        kvs_sel = (start_sel or {}).get("KVSStreamStartSelector") if start_sel is not None else None
        if start_sel is not None:
            if not kvs_sel or (("ProducerTimestamp" in kvs_sel) == ("FragmentNumber" in kvs_sel)):
                raise _invalid("StartSelector.KVSStreamStartSelector needs exactly one of ProducerTimestamp "
                               "(Unix time in milliseconds) or FragmentNumber", op)
            if "FragmentNumber" in kvs_sel:
                try:
                    parse_fragment_number(kvs_sel["FragmentNumber"])
                except ValueError:
                    raise _invalid(
                        f"FragmentNumber {kvs_sel['FragmentNumber']!r} is not one rekolab produced: rekolab "
                        f"fragment numbers are 13 digits of the source origin in ms followed by "
                        f"{_FRAGMENT_INDEX_DIGITS} digits of the 2-second fragment index; take one from a "
                        "record's InputInformation.KinesisVideo.FragmentNumber", op) from None
        elif kind == "ConnectedHome":
            raise _invalid("StartSelector is required for a label detection (ConnectedHome) stream processor: "
                           'give {"KVSStreamStartSelector": {"ProducerTimestamp": 0}} to start at the beginning '
                           "of the source (or a later Unix time in ms, or a FragmentNumber)", op)
        stop_sel = params.get("StopSelector")
        if stop_sel is not None or kind == "ConnectedHome":
            max_duration = float((stop_sel or {}).get("MaxDurationInSeconds", DEFAULT_MAX_DURATION_S))
        else:
            max_duration = None  # a face search processor runs until stopped or the source ends
        arn = d["Request"]["Input"]["KinesisVideoStream"]["Arn"]
        spec = self.source_for(arn)
        if spec is None:
            raise _invalid(
                f"Kinesis video stream {arn} is not mapped to a source. Map it with "
                f"rk.client(streams={{{arn!r}: 'clip.mp4'}}), REKOLAB_STREAMS='{arn}=/path/clip.mp4' or "
                "rk.create_stream_processor(..., source=...)", op)
        if kind == "FaceSearch":
            from .collections import check_searchable

            check_searchable(d["Request"]["Settings"]["FaceSearch"]["CollectionId"], op)
        with _LOCK:
            d = _current(_read_def(name, op))
            if d["Status"] not in ("STOPPED", "FAILED"):
                raise ResourceInUseException(
                    f"Stream processor {name} is {d['Status']}; it can be started only when it is "
                    "STOPPED or FAILED (stop it with StopStreamProcessor and wait for STOPPED)", op)
            session_id = str(uuid.uuid4())
            request = {"Name": name}
            for key in ("StartSelector", "StopSelector"):
                if key in params:
                    request[key] = params[key]
            session = _Session(
                self, d, session_id, request, kvs_sel, max_duration, spec, loop,
                realtime=bool(extensions.get("Realtime", True)),
                queue_size=int(extensions.get("QueueSize", DEFAULT_QUEUE_SIZE)), sinks=sinks)
            if subscriber is not None:
                session.subscribe(subscriber)
            _SESSIONS[name] = session  # before the status: a STARTING processor with no session reads FAILED
            _update_def(name, Status="STARTING", StatusMessage=None, SessionId=session_id, Owner=_owner())
            session.launch()
        return {"SessionId": session_id}, session

    def stop(self, params: dict) -> dict:
        from .requests import validate_request

        op = "StopStreamProcessor"
        validate_request(op, params)
        name = params["Name"]
        with _LOCK:
            d = _current(_read_def(name, op))
            if d["Status"] not in ("STARTING", "RUNNING"):
                raise ResourceInUseException("Processor not available for stopping stream.", op)
            _update_def(name, Status="STOPPING")
            session = _SESSIONS.get(name)
        if session is not None:
            session.request_stop()
        return {}

    def update(self, params: dict) -> dict:
        from .requests import validate_request

        op = "UpdateStreamProcessor"
        validate_request(op, params)
        name = params["Name"]
        d = _current(_read_def(name, op))
        kind = _kind(d)
        ch_update = (params.get("SettingsForUpdate") or {}).get("ConnectedHomeForUpdate")
        rois = params.get("RegionsOfInterestForUpdate")
        deletes = list(params.get("ParametersToDelete") or [])
        sharing = params.get("DataSharingPreferenceForUpdate")
        if ch_update is None and rois is None and not deletes and sharing is None:
            raise _invalid("Nothing to update: give SettingsForUpdate, RegionsOfInterestForUpdate, "
                           "DataSharingPreferenceForUpdate or ParametersToDelete", op)
        if kind == "FaceSearch" and (ch_update is not None or rois is not None or deletes):
            raise _invalid("SettingsForUpdate.ConnectedHomeForUpdate, RegionsOfInterestForUpdate and "
                           "ParametersToDelete apply to label detection (ConnectedHome) stream processors; "
                           f"{name} is a face search processor (only DataSharingPreferenceForUpdate applies)", op)
        if ch_update is not None:
            if "Labels" in ch_update:
                _check_labels(ch_update["Labels"], op, "SettingsForUpdate.ConnectedHomeForUpdate.Labels")
            if "MinConfidence" in ch_update and "ConnectedHomeMinConfidence" in deletes:
                raise _invalid("ConnectedHomeForUpdate.MinConfidence and ParametersToDelete "
                               "ConnectedHomeMinConfidence contradict each other; give one", op)
        if rois is not None:
            _check_regions(rois, op, "RegionsOfInterestForUpdate")
            if "RegionsOfInterest" in deletes:
                raise _invalid("RegionsOfInterestForUpdate and ParametersToDelete RegionsOfInterest "
                               "contradict each other; give one", op)
        with _LOCK:
            d = _current(_read_def(name, op))
            previous = d["Status"]
            if previous not in ("STOPPED", "FAILED"):
                raise ResourceInUseException(
                    f"Stream processor {name} is {previous}; it can be updated only when it is STOPPED or FAILED", op)
            _update_def(name, Status="UPDATING")
            try:
                req = d["Request"]
                if kind == "ConnectedHome":
                    ch = dict(req["Settings"]["ConnectedHome"])
                    if ch_update is not None:
                        ch.update({k: v for k, v in ch_update.items() if k in ("Labels", "MinConfidence")})
                    if "ConnectedHomeMinConfidence" in deletes:
                        ch.pop("MinConfidence", None)
                    req["Settings"] = {"ConnectedHome": ch}
                    if rois is not None:
                        req["RegionsOfInterest"] = rois
                    if "RegionsOfInterest" in deletes:
                        req.pop("RegionsOfInterest", None)
                if sharing is not None:
                    req["DataSharingPreference"] = sharing
            finally:
                _update_def(name, Request=d["Request"], Status=previous)
        return {}

    def delete(self, params: dict) -> dict:
        from .requests import validate_request

        op = "DeleteStreamProcessor"
        validate_request(op, params)
        name = params["Name"]
        with _LOCK:
            d = _current(_read_def(name, op))
            if d["Status"] not in ("STOPPED", "FAILED"):
                raise ResourceInUseException("Cannot delete stream processor.", op)
            _def_path(name).unlink(missing_ok=True)
            shutil.rmtree(_sessions_dir(name), ignore_errors=True)
        return {}

    def publish(self, topic_arn: str | None, message: dict) -> None:
        """Send a label processor's SNS event message to the client's subscribers."""
        if self._publish is not None:
            try:
                self._publish(topic_arn, message)
            except Exception:
                log.exception("publishing a stream processor event failed")
        if self.aws_outputs and topic_arn:
            from .aws.sns import publish_async
            publish_async(topic_arn, json.dumps(message), subject="Rekognition Stream Processing Event")


def jobs_publisher(jobs) -> Callable[[str | None, dict], None]:
    """Deliver stream processor events to the callbacks of ``client.subscribe``
    (the job manager's subscriber list, filtered by SNSTopicArn)."""
    def publish(topic_arn: str | None, message: dict) -> None:
        with jobs._lock:
            targets = [cb for topic, cb in jobs._subscribers if topic is None or topic == topic_arn]
        for cb in targets:
            try:
                cb(dict(message))
            except Exception:  # a broken callback must not break the session
                log.exception("notification callback %r failed", cb)
    return publish


# ============================================================================ consumers


_END = object()


class _Subscriber:
    """One consumer's bounded queue: when full, the **oldest** record is dropped and
    counted in ``dropped`` (a live stream cannot wait for a slow reader)."""

    def __init__(self, maxsize: int = DEFAULT_QUEUE_SIZE):
        self.maxsize = max(1, int(maxsize))
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.dropped = 0
        self.closed = False

    def put(self, item: dict) -> None:
        with self._cond:
            if self.closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            waiters = list(self._waiters)
        self._wake(waiters)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            waiters = list(self._waiters)
        self._wake(waiters)

    @staticmethod
    def _wake(waiters) -> None:
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                pass

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self.closed, timeout):
                raise TimeoutError
            return self._items.popleft() if self._items else _END

    async def aget(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            event = asyncio.Event()
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if self.closed:
                    return _END
                entry = (loop, event)
                self._waiters.append(entry)
            try:
                await event.wait()
            finally:
                with self._cond:
                    if entry in self._waiters:
                        self._waiters.remove(entry)


class _FrameBuffer:
    """Sampled frames between the reader and the analyser. Real time: at most
    ``size`` wait and the oldest is skipped when analysis lags (counted). Not real
    time: the reader waits for the analyser (nothing skipped)."""

    def __init__(self, size: int, drop: bool, stop: threading.Event):
        self.size, self.drop, self.stop = size, drop, stop
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self.skipped = 0

    def put(self, item, force: bool = False) -> None:
        with self._cond:
            if not force:
                if self.drop:
                    if len(self._items) >= self.size:
                        self._items.popleft()
                        self.skipped += 1
                else:
                    while len(self._items) >= self.size and not self.stop.is_set():
                        self._cond.wait(0.1)
            self._items.append(item)
            self._cond.notify_all()

    def get(self):
        with self._cond:
            while not self._items:
                if self.stop.is_set():  # a live source may block in its read: do not wait for it
                    return _END
                self._cond.wait(0.1)
            item = self._items.popleft()
            self._cond.notify_all()
            return item


# ============================================================================ sinks


def _make_sink(path: str, op: str) -> "_Sink":
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _JsonLinesSink(path)
    if suffix in (".parquet", ".pq"):
        return _ParquetSink(path)
    raise _invalid(f"Sinks: {path!r} must end in .jsonl (JSON Lines) or .parquet", op)


class _Sink:
    def __init__(self, path: str):
        self.template = os.fspath(path)
        self.path: Path | None = None

    def open(self, name: str, session_id: str) -> None:
        self.path = Path(self.template.replace("{Name}", name).replace("{SessionId}", session_id)).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict, meta: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _JsonLinesSink(_Sink):
    """One JSON record per line, appended and flushed as records come."""

    def open(self, name: str, session_id: str) -> None:
        super().open(name, session_id)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict, meta: dict) -> None:
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


_PARQUET_ROWS = 64


class _ParquetSink(_Sink):
    """Row groups of 64 records: SessionId, EventType, FragmentNumber, FrameTimestamp
    (the frame's Unix time, s), Faces, MatchedFaces, Record (the record as JSON).
    Written to ``<path>.part`` and renamed into place when the session ends."""

    def open(self, name: str, session_id: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().open(name, session_id)
        self.schema = pa.schema([
            ("SessionId", pa.string()), ("EventType", pa.string()), ("FragmentNumber", pa.string()),
            ("FrameTimestamp", pa.float64()), ("Faces", pa.int32()), ("MatchedFaces", pa.int32()),
            ("Record", pa.string())])
        self._tmp = self.path.with_name(self.path.name + ".part")
        self._writer = pq.ParquetWriter(self._tmp, self.schema)
        self._rows: list[dict] = []

    def write(self, record: dict, meta: dict) -> None:
        self._rows.append({"Record": json.dumps(record, separators=(",", ":")), **meta})
        if len(self._rows) >= _PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)


# ============================================================================ analysers


@dataclass
class _Frame:
    image: np.ndarray  # BGR uint8
    pts_s: float  # seconds from the source origin
    fragment: int  # fragment index
    server_ts: float  # Unix time the fragment's first frame arrived
    received: float


class _FaceSearchAnalyser:
    """SCRFD faces -> DEFAULT FaceDetail (5 basic landmarks) -> embeddings ->
    ``search_embeddings`` in the collection, one record per analysed frame."""

    def __init__(self, settings: dict):
        from .models.faces import face_pack

        self.pack = face_pack()
        self.collection_id = settings["CollectionId"]
        self.threshold = max(FACE_MATCH_FLOOR, float(settings.get("FaceMatchThreshold", FACE_MATCH_FLOOR)))

    def models(self) -> dict:
        return {"FacePack": self.pack.name, "Detector": type(self.pack.detector).__name__,
                "Recognizer": type(self.pack.recognizer).__name__ if self.pack.recognizer else None,
                "Attributes": self.pack.attributes.methods("DEFAULT")}

    def __call__(self, frame: _Frame, session: "_Session") -> list[dict]:
        from .analysis.face_attributes import BASIC_LANDMARKS, describe_faces
        from .collections import search_embeddings
        from .results.schema import DEFAULT_FACE_KEYS

        img = frame.image
        boxes, scores, kps = self.pack.detect(img)
        responses = []
        if len(boxes):
            details = describe_faces(img, boxes, kps, scores, self.pack.attributes, "DEFAULT")
            matches = search_embeddings(self.collection_id, self.pack.embed(img, kps),
                                        face_match_threshold=self.threshold)
            for detail, found in zip(details, matches):
                face = {k: detail[k] for k in DEFAULT_FACE_KEYS if k in detail}
                if "Landmarks" in face:
                    face["Landmarks"] = [p for p in face["Landmarks"] if p["Type"] in BASIC_LANDMARKS]
                responses.append({"DetectedFace": face, "MatchedFaces": [
                    {"Similarity": m["Similarity"],
                     "Face": {k: m["Face"][k] for k in _FACE_SEARCH_FACE_KEYS if k in m["Face"]}}
                    for m in found]})
        return [{"InputInformation": {"KinesisVideo": session.kinesis_video(frame)},
                 "StreamProcessorInformation": {"Status": "RUNNING"},
                 "FaceSearchResponse": responses}]


class _ConnectedHomeAnalyser:
    """YOLOX (COCO-80) boxes -> PERSON / PET / PACKAGE (:data:`CONNECTED_HOME_CLASSES`),
    kept at ``MinConfidence`` (score x 100, default 50) and inside RegionsOfInterest;
    one LABEL_DETECTED event for the first occurrence of each label per session,
    then one STREAM_PROCESSING_COMPLETE event."""

    def __init__(self, settings: dict, regions: list[dict]):
        from .models.yolox import YoloxDetector

        wanted = set(settings["Labels"])
        self.labels = set(LABELS) if "ALL" in wanted else wanted
        self.min_confidence = float(settings.get("MinConfidence", DEFAULT_MIN_CONFIDENCE))
        self.detector = YoloxDetector(score_threshold=max(self.min_confidence / 100.0, 0.01))
        self.regions = regions
        self.first: dict[str, dict] = {}
        self.frames = 0

    def models(self) -> dict:
        return {"Detector": f"YOLOX ({self.detector.name})",
                "Labels": {label: sorted(k for k, v in CONNECTED_HOME_CLASSES.items() if v == label)
                           for label in sorted(self.labels)},
                "MinConfidence": self.min_confidence}

    def __call__(self, frame: _Frame, session: "_Session") -> list[dict]:
        self.frames += 1
        dets = self.detector.detect(frame.image)
        h, w = frame.image.shape[:2]
        best: dict[str, tuple[float, np.ndarray, str]] = {}
        for box, score, name in zip(dets.boxes_xyxy, dets.scores, dets.class_names):
            label = CONNECTED_HOME_CLASSES.get(name)
            confidence = float(score) * 100.0
            if label not in self.labels or label in self.first or confidence < self.min_confidence:
                continue
            rel = np.array([box[0] / w, box[1] / h, box[2] / w, box[3] / h], np.float64)
            if self.regions and not _in_regions(rel, self.regions):
                continue
            if label not in best or confidence > best[label][0]:
                best[label] = (confidence, rel, name)
        events = []
        for label in [x for x in LABELS if x in best]:
            confidence, rel, name = best[label]
            event = session.label_event(frame, label, rel, confidence, name)
            self.first[label] = {"Confidence": confidence, "CocoClass": name, "OffsetSeconds": frame.pts_s,
                                 "FrameTimestamp": session.origin + frame.pts_s, "EventId": event["eventId"]}
            events.append(event)
        return events


def _in_regions(box: np.ndarray, regions: list[dict]) -> bool:
    """More than half of the box (x1, y1, x2, y2 ratios) inside one region: a 16x16
    grid of points over the box, tested against each box or polygon region."""
    xs = np.linspace(box[0], box[2], 16)
    ys = np.linspace(box[1], box[3], 16)
    gx, gy = np.meshgrid(xs, ys)
    px, py = gx.ravel(), gy.ravel()
    for roi in regions:
        if "BoundingBox" in roi:
            b = roi["BoundingBox"]
            inside = ((px >= b["Left"]) & (px <= b["Left"] + b["Width"])
                      & (py >= b["Top"]) & (py <= b["Top"] + b["Height"]))
        else:
            inside = _in_polygon(px, py, [(p["X"], p["Y"]) for p in roi["Polygon"]])
        if inside.mean() > 0.5:
            return True
    return False


def _in_polygon(px: np.ndarray, py: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    inside = np.zeros(px.shape, bool)
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x2 - x1) * (py - y1) / (y2 - y1) + x1
        inside ^= crosses & (px < x_at)
    return inside


# ============================================================================ a session


class _Sampler:
    """Keep the first frame at or after each ``k / rate`` seconds from the first frame."""

    def __init__(self, rate: float):
        self.rate = rate
        self.next_t: float | None = None

    def want(self, t: float) -> bool:
        if self.next_t is None:
            self.t0 = t
        elif t < self.next_t - 1e-6:
            return False
        k = math.floor((t - self.t0) * self.rate + 1e-6) + 1
        self.next_t = self.t0 + k / self.rate
        return True


class _Session:
    """One StartStreamProcessor session, run on two threads: a reader (source ->
    sampled frames, paced in real time) and an analyser (frames -> records ->
    sinks and consumers)."""

    def __init__(self, manager: StreamProcessorManager, definition: dict, session_id: str, request: dict,
                 kvs_selector: dict | None, max_duration: float | None, spec: Any,
                 loop: asyncio.AbstractEventLoop | None, *, realtime: bool, queue_size: int, sinks: list):
        self.manager = manager
        self.definition = definition
        self.name = definition["Name"]
        self.kind = _kind(definition)
        self.session_id = session_id
        self.request = request
        self.kvs_selector = kvs_selector
        self.max_duration = max_duration
        self.spec = spec
        self.loop = loop
        self.realtime = realtime
        self.queue_size = queue_size
        self.sinks = sinks
        self.sample_rate = float(definition.get("Extensions", {}).get("SampleRate") or DEFAULT_SAMPLE_RATE)
        self.stream_arn = definition["Request"]["Input"]["KinesisVideoStream"]["Arn"]
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.subscribers: list[_Subscriber] = []
        self._sub_lock = threading.Lock()
        self.status = "STARTING"
        self.error: str | None = None
        self.origin = 0.0
        self.frames_read = 0
        self.frames_analysed = 0
        self.records = 0
        self.dropped_closed = 0  # drops of consumers that already left
        self.first_pts: float | None = None
        self.last_pts: float | None = None
        self.buffer = _FrameBuffer(2 if realtime else 4, drop=realtime, stop=self.stop_event)
        self.models: dict = {}
        self.started = time.time()
        self.ended: float | None = None
        self.s3_dir: Path | None = None
        self.s3_prefix = ""
        self.stop_reason = "the end of the source"
        self.first_detections: dict = {}
        self._source = None

    # -- consumers ---------------------------------------------------------------------
    def subscribe(self, sub: _Subscriber) -> _Subscriber:
        with self._sub_lock:
            if self.done.is_set():
                sub.close()
            else:
                self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._sub_lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)
                self.dropped_closed += sub.dropped
        sub.close()

    @property
    def records_dropped(self) -> int:
        with self._sub_lock:
            return self.dropped_closed + sum(s.dropped for s in self.subscribers)

    @property
    def frames_skipped(self) -> int:
        return self.buffer.skipped

    def status_message(self) -> str | None:
        parts = []
        if self.error:
            parts.append(self.error)
        notes = []
        if self.records_dropped:
            notes.append(f"{self.records_dropped} records dropped for slow consumers (oldest first)")
        if self.frames_skipped:
            notes.append(f"{self.frames_skipped} sampled frames skipped because analysis ran slower than real time")
        if notes:
            parts.append(f"Session {self.session_id}: " + "; ".join(notes))
        return ". ".join(parts) or None

    # -- lifecycle ---------------------------------------------------------------------
    def launch(self) -> None:
        threading.Thread(target=self._run, name=f"rekolab-stream-{self.name}", daemon=True).start()

    def request_stop(self) -> None:
        self.stop_reason = "StopStreamProcessor"
        self.stop_event.set()

    def _set_status(self, status: str) -> None:
        self.status = status
        with _LOCK:
            d = store.read_json(_def_path(self.name)) if _def_path(self.name).exists() else None
            if d is not None and d.get("SessionId") == self.session_id and d.get("Status") != "STOPPING":
                _update_def(self.name, Status=status)

    def _emit(self, record: dict) -> None:
        meta = _record_meta(record, self)
        for sink in self.sinks:
            sink.write(record, meta)
        with self._sub_lock:
            subs = list(self.subscribers)
        for sub in subs:
            sub.put(record)
        self.records += 1
        if self.kind == "ConnectedHome":
            self.manager.publish(self.definition["Request"].get("NotificationChannel", {}).get("SNSTopicArn"),
                                 record)
            if self.s3_dir is not None:
                store.atomic_write_json(self.s3_dir / "events" / f"{record['eventId']}.json", record)

    def _run(self) -> None:
        from .video.live import SourceError, open_source

        analyser = None
        reader = None
        opened_sinks = []
        try:
            req = self.definition["Request"]
            if self.kind == "ConnectedHome":
                dest = req["Output"]["S3Destination"]
                parts = _key_parts(dest.get("KeyPrefix", ""), "StartStreamProcessor")
                self.s3_prefix = "/".join(parts + [self.name, self.session_id])
                self.s3_dir = store.home() / "s3" / dest["Bucket"] / Path(*parts) / self.name / self.session_id
                self.s3_dir.mkdir(parents=True, exist_ok=True)
            for sink in self.sinks:
                sink.open(self.name, self.session_id)
                opened_sinks.append(sink)
            self._source = open_source(self.spec, self.loop)
            self._source.open()
            if self.kind == "FaceSearch":
                analyser = _FaceSearchAnalyser(req["Settings"]["FaceSearch"])
            else:
                analyser = _ConnectedHomeAnalyser(req["Settings"]["ConnectedHome"], req.get("RegionsOfInterest") or [])
            self.models = analyser.models()
            if self.kind == "FaceSearch" and not self.stop_event.is_set():
                self._set_status("RUNNING")  # label processors stay STARTING while they run
            reader = threading.Thread(target=self._read, name=f"rekolab-stream-read-{self.name}", daemon=True)
            reader.start()
            while True:
                item = self.buffer.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                if self.stop_event.is_set():
                    continue  # drain without analysing; the reader is ending
                for record in analyser(item, self):
                    self._emit(record)
                self.frames_analysed += 1
        except (SourceError, OSError) as exc:
            self.error = f"Source error: {exc}"
        except Exception as exc:  # a model or collection problem: FAILED, never a crash
            log.exception("stream processor %s session %s failed", self.name, self.session_id)
            self.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        finally:
            self.stop_event.set()
            if reader is not None:
                reader.join(timeout=5)  # a live source blocked in a read is left to its daemon thread
            if self.kind == "ConnectedHome":
                self.first_detections = analyser.first if analyser is not None else {}
                try:  # the end-of-session event, also after a failure
                    self._emit(self.complete_event(self.error, self.first_detections))
                except Exception as exc:
                    self.error = self.error or f"{type(exc).__name__}: {exc}"
            for sink in opened_sinks:
                try:
                    sink.close()
                except Exception as exc:
                    self.error = self.error or f"Sink {sink.path} failed: {exc}"
            if self._source is not None:
                try:
                    self._source.close()
                except Exception:
                    pass
            self._finish()

    def _finish(self) -> None:
        """Write the session summaries, then the final status (so whoever sees STOPPED
        or FAILED finds the summaries written); always end the session for its
        consumers, even if writing fails."""
        try:
            self.ended = time.time()
            self.status = "FAILED" if self.error else "STOPPED"
            message = self.status_message()
            with _LOCK:
                try:
                    summary = self.summary()
                    store.atomic_write_json(_sessions_dir(self.name) / f"{self.session_id}.json", summary)
                    if self.s3_dir is not None:  # the "detailed session summary" of the S3 output
                        store.atomic_write_json(self.s3_dir / "summary.json",
                                                {**summary, "FirstDetections": self.first_detections})
                except Exception:
                    log.exception("could not write the session summary")
                if self.s3_dir is not None and self.manager.aws_outputs:  # rekolab/aws: the real bucket too
                    from .aws.s3 import upload_folder
                    try:
                        upload_folder(self.s3_dir, self.definition["Request"]["Output"]["S3Destination"]["Bucket"],
                                      self.s3_prefix)
                    except Exception as exc:
                        self.error = self.error or f"S3Destination: {exc}"
                        self.status, message = "FAILED", self.status_message()
                if _def_path(self.name).exists():
                    d = store.read_json(_def_path(self.name))
                    if d.get("SessionId") == self.session_id:
                        _update_def(self.name, Status=self.status, StatusMessage=message)
        except Exception:
            log.exception("stream processor %s session %s: finishing failed", self.name, self.session_id)
        finally:
            with _LOCK:
                if _SESSIONS.get(self.name) is self:
                    del _SESSIONS[self.name]
            with self._sub_lock:
                self.done.set()
                subs = list(self.subscribers)
            for sub in subs:
                sub.close()

    def summary(self) -> dict:
        return {
            "SessionId": self.session_id, "Name": self.name, "StartStreamProcessorRequest": self.request,
            "Status": self.status, "StatusMessage": self.status_message(), "Source": _describe(self.spec),
            "Realtime": self.realtime, "SampleRate": self.sample_rate, "StartedAt": self.started,
            "EndedAt": self.ended, "StoppedBy": None if self.error else self.stop_reason,
            "FramesRead": self.frames_read, "FramesAnalysed": self.frames_analysed,
            "FramesSkipped": self.frames_skipped, "Records": self.records, "RecordsDropped": self.records_dropped,
            "ProcessedVideoDurationMillis": self.processed_ms(), "Models": self.models,
            "Sinks": [str(s.path) for s in self.sinks if s.path is not None],
        }

    def processed_ms(self) -> int:
        if self.first_pts is None or self.last_pts is None:
            return 0
        return int(round((self.last_pts - self.first_pts) * 1000))

    # -- reading -------------------------------------------------------------------------
    def _start_position(self, source) -> tuple[float, float | None]:
        """(seek seconds for a file, producer-time floor for a live source)."""
        sel = self.kvs_selector
        if not sel:
            return 0.0, None
        if "ProducerTimestamp" in sel:
            target = sel["ProducerTimestamp"] / 1000.0
        else:
            origin_ms, index = parse_fragment_number(sel["FragmentNumber"])
            if source.seekable and origin_ms != int(round(source.origin * 1000)):
                raise _source_error(
                    f"StartSelector FragmentNumber {sel['FragmentNumber']} was not produced from this source "
                    f"(its fragments start with {int(round(source.origin * 1000)):013d})")
            target = origin_ms / 1000.0 + index * FRAGMENT_SECONDS
        if not source.seekable:
            return 0.0, target
        start_s = max(0.0, target - source.origin)
        if source.duration_s is not None and start_s >= source.duration_s:
            raise _source_error(
                f"StartSelector points {start_s:.3f} s into the source, after its end ({source.duration_s:.3f} s); "
                f"its ProducerTimestamps run from {int(round(source.origin * 1000))} ms")
        return start_s, None

    def _read(self) -> None:
        source = self._source
        try:
            start_s, live_floor = self._start_position(source)
            sampler = _Sampler(self.sample_rate)
            wall0 = None
            fragment, fragment_server = None, 0.0
            last_def_check = time.monotonic()
            for f in source.frames(start_s, self.stop_event):
                if self.stop_event.is_set():
                    break
                now = time.monotonic()
                if now - last_def_check > 0.5:  # a StopStreamProcessor from another process
                    last_def_check = now
                    if self._stop_requested_on_disk():
                        self.request_stop()
                        break
                if source.origin is not None and self.origin == 0.0:
                    self.origin = source.origin
                if live_floor is not None and self.origin + f.pts_s < live_floor:
                    continue
                if self.first_pts is None:
                    self.first_pts = f.pts_s
                    wall0 = time.monotonic()
                elapsed = f.pts_s - self.first_pts
                if self.max_duration is not None and elapsed >= self.max_duration:
                    self.stop_reason = f"StopSelector MaxDurationInSeconds ({self.max_duration:g} s)"
                    break
                if self.realtime and not source.live:
                    while not self.stop_event.is_set():
                        wait = wall0 + elapsed - time.monotonic()
                        if wait <= 0:
                            break
                        time.sleep(min(wait, 0.1))
                    if self.stop_event.is_set():
                        break
                self.frames_read += 1
                self.last_pts = f.pts_s
                index = int(math.floor(f.pts_s / FRAGMENT_SECONDS + 1e-9))
                if index != fragment:
                    fragment, fragment_server = index, f.received
                if not sampler.want(f.pts_s):
                    continue
                self.buffer.put(_Frame(f.image(), f.pts_s, index, fragment_server, f.received))
        except BaseException as exc:
            from .video.live import SourceError

            if not isinstance(exc, SourceError):  # e.g. an exception raised by a frame iterator
                exc = SourceError(f"reading the source failed: {type(exc).__name__}: {exc}")
            self.buffer.put(exc, force=True)
        finally:
            self.buffer.put(_END, force=True)

    def _stop_requested_on_disk(self) -> bool:
        try:
            d = store.read_json(_def_path(self.name))
        except (OSError, ValueError):
            return False
        return d.get("SessionId") == self.session_id and d.get("Status") == "STOPPING"

    # -- record shapes -------------------------------------------------------------------
    def _fragment_times(self, frame: _Frame) -> tuple[str, float, float]:
        start = frame.fragment * FRAGMENT_SECONDS
        return (fragment_number(self.origin, frame.fragment), round(self.origin + start, 3),
                round(frame.pts_s - start, 3))

    def kinesis_video(self, frame: _Frame) -> dict:
        number, producer, offset = self._fragment_times(frame)
        return {"StreamArn": self.stream_arn, "FragmentNumber": number,
                "ServerTimestamp": round(frame.server_ts, 3), "ProducerTimestamp": producer,
                "FrameOffsetInSeconds": offset}

    def _envelope(self, event_type: str) -> dict:
        return {"eventNamespace": {"type": event_type}, "eventId": str(uuid.uuid4()),
                "tags": dict(self.definition["Request"].get("Tags") or {}), "sessionId": self.session_id,
                "startStreamProcessorRequest": self.request}

    def label_event(self, frame: _Frame, label: str, rel: np.ndarray, confidence: float, coco: str) -> dict:
        number, producer, offset = self._fragment_times(frame)
        label_id = str(uuid.uuid4())
        bucket = self.definition["Request"]["Output"]["S3Destination"]["Bucket"]
        frame_key = f"{self.s3_prefix}/frames/{number}-{int(round(offset * 1000)):05d}.jpg"
        crop_key = f"{self.s3_prefix}/crops/{label_id}.jpg"
        _write_jpeg(self.s3_dir / "frames" / Path(frame_key).name, frame.image)
        h, w = frame.image.shape[:2]
        x1, y1 = max(0, int(rel[0] * w)), max(0, int(rel[1] * h))
        x2, y2 = min(w, int(math.ceil(rel[2] * w))), min(h, int(math.ceil(rel[3] * h)))
        _write_jpeg(self.s3_dir / "crops" / f"{label_id}.jpg", frame.image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)])
        event = {"inputInformation": {"kinesisVideo": {"streamArn": self.stream_arn}}}
        event.update(self._envelope("LABEL_DETECTED"))
        event["labels"] = [{
            "id": label_id, "name": label,
            "frameImageUri": f"s3://{bucket}/{frame_key}", "croppedImageUri": f"s3://{bucket}/{crop_key}",
            "videoMapping": {"kinesisVideoMapping": {
                "fragmentNumber": number, "serverTimestamp": int(round(frame.server_ts * 1000)),
                "producerTimestamp": int(round(producer * 1000)), "frameOffsetMillis": int(round(offset * 1000))}},
            "boundingBox": {"left": float(rel[0]), "top": float(rel[1]),
                            "height": float(rel[3] - rel[1]), "width": float(rel[2] - rel[0])},
        }]
        order = ["inputInformation", "eventNamespace", "labels", "eventId", "tags", "sessionId",
                 "startStreamProcessorRequest"]
        return {k: event[k] for k in order}

    def complete_event(self, error: str | None, first: dict) -> dict:
        seconds = self.processed_ms() / 1000.0
        found = ", ".join(f"{k} at {v['OffsetSeconds']:.2f} s" for k, v in first.items()) or "no labels"
        if error:
            message = f"Stream processing failed after {seconds:.1f} s of video: {error}"
        else:
            message = (f"Stream processing completed: {seconds:.1f} s of video, {self.frames_analysed} frames "
                       f"analysed, stopped by {self.stop_reason}; first detections: {found}")
        event = {"inputInformation": {"kinesisVideo": {"streamArn": self.stream_arn,
                                                       "processedVideoDurationMillis": self.processed_ms()}}}
        event.update(self._envelope("STREAM_PROCESSING_COMPLETE"))
        event["streamProcessingResults"] = {"message": message}
        order = ["inputInformation", "eventNamespace", "streamProcessingResults", "eventId", "tags", "sessionId",
                 "startStreamProcessorRequest"]
        return {k: event[k] for k in order}


def _source_error(message: str):
    from .video.live import SourceError

    return SourceError(message)


def _describe(spec: Any) -> str:
    from .video.live import describe_source

    return describe_source(spec)


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"cannot encode {path.name}")
    store.atomic_write_bytes(path, data.tobytes())


def _record_meta(record: dict, session: _Session) -> dict:
    """The flat columns of a record in the parquet sink."""
    if "FaceSearchResponse" in record:
        kv = record["InputInformation"]["KinesisVideo"]
        return {"SessionId": session.session_id, "EventType": "FACE_SEARCH", "FragmentNumber": kv["FragmentNumber"],
                "FrameTimestamp": kv["ProducerTimestamp"] + kv["FrameOffsetInSeconds"],
                "Faces": len(record["FaceSearchResponse"]),
                "MatchedFaces": sum(1 for r in record["FaceSearchResponse"] if r["MatchedFaces"])}
    mapping = record["labels"][0]["videoMapping"]["kinesisVideoMapping"] if record.get("labels") else None
    return {"SessionId": session.session_id, "EventType": record["eventNamespace"]["type"],
            "FragmentNumber": mapping["fragmentNumber"] if mapping else None,
            "FrameTimestamp": (mapping["producerTimestamp"] + mapping["frameOffsetMillis"]) / 1000.0 if mapping else None,
            "Faces": None, "MatchedFaces": None}


# ============================================================================ notebook surface


class StreamSession:
    """A stream processing session: iterate it (``async for`` or ``for``) for records.

    Face search processors yield Kinesis Data Streams records (one per analysed
    frame); label processors yield their SNS event messages (LABEL_DETECTED, then
    STREAM_PROCESSING_COMPLETE). Iteration ends when the session ends (stop(),
    StopSelector, end of source, or a failure: then ``status`` is FAILED and
    ``status_message`` says why).

    Each handle has its own bounded queue (``queue_size`` records): when the consumer
    falls behind, the oldest records are dropped and counted in ``dropped``. A handle
    made without a queue (``proc.session`` on a running session) gets one when its
    iteration starts, so a handle nobody reads drops (and reports) nothing."""

    def __init__(self, session: _Session, subscriber: _Subscriber | None, client):
        self._session = session
        self._sub = subscriber  # None: subscribe when iteration starts
        self._sub_guard = threading.Lock()
        self._client = client
        self.session_id = session.session_id
        self.name = session.name

    def __repr__(self) -> str:
        s = self._session
        extra = f", dropped={self.dropped}" if self.dropped else ""
        return (f"StreamSession({self.name!r}, {self.session_id[:8]}…, {self.status}, "
                f"frames={s.frames_analysed}, records={s.records}{extra})")

    # -- state ---------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._session.status

    @property
    def status_message(self) -> str | None:
        return self._session.status_message()

    @property
    def dropped(self) -> int:
        """Records this consumer lost because it read slower than they came."""
        return self._sub.dropped if self._sub is not None else 0

    @property
    def frames_skipped(self) -> int:
        """Sampled frames skipped because analysis ran slower than real time."""
        return self._session.frames_skipped

    @property
    def done(self) -> bool:
        return self._session.done.is_set()

    @property
    def output_dir(self) -> Path | None:
        """The local S3Destination folder of a label processor's session."""
        return self._session.s3_dir

    def summary(self) -> dict:
        """Counts, timings, models and stop reason of the session."""
        return self._session.summary()

    # -- control -------------------------------------------------------------------------
    def stop(self, wait: bool = True, timeout: float | None = 30) -> "StreamSession":
        """StopStreamProcessor; with ``wait``, block until the session has ended."""
        if not self._session.done.is_set():
            try:
                self._client.stop_stream_processor(Name=self.name)
            except ResourceInUseException:
                pass  # already stopping or ended
        if wait:
            self.wait(timeout)
        return self

    def wait(self, timeout: float | None = None) -> "StreamSession":
        self._session.done.wait(timeout)
        return self

    def close(self) -> None:
        """Stop receiving records (the session goes on; use stop() to end it)."""
        with self._sub_guard:
            if self._sub is None:
                self._sub = _Subscriber()
                self._sub.close()
                return
        self._session.unsubscribe(self._sub)

    async def aclose(self) -> None:
        """``close()`` for async consumers (e.g. ``rk.live_view().consume(session, limit=...)``)."""
        self.close()

    # -- iteration -----------------------------------------------------------------------
    def _subscriber(self) -> _Subscriber:
        with self._sub_guard:
            if self._sub is None:
                self._sub = self._session.subscribe(_Subscriber())
            return self._sub

    def __iter__(self) -> Iterator[dict]:
        return self._iter(self._subscriber())  # receives records from this call on

    @staticmethod
    def _iter(sub: _Subscriber) -> Iterator[dict]:
        while True:
            item = sub.get()
            if item is _END:
                return
            yield item

    def __aiter__(self):
        return self._agen(self._subscriber())

    @staticmethod
    async def _agen(sub: _Subscriber):
        while True:
            item = await sub.aget()
            if item is _END:
                return
            yield item

    def records(self) -> list[dict]:
        """Every record until the session ends (blocks)."""
        return list(self)


class StreamProcessor:
    """A handle on a stream processor; ``rk.StreamProcessor(name)`` reopens one.

        proc = rk.create_stream_processor("door-cam", source="clip.mp4",
                                          face_search={"CollectionId": "cast"})
        async for record in proc.start(stop_selector={"MaxDurationInSeconds": 30}):
            ...
        proc.run(realtime=False)        # a script: every record in a list
    """

    def __init__(self, name: str, client=None):
        from .client import default_client

        self.name = name
        self._client = client or default_client()
        self._client.describe_stream_processor(Name=name)  # ResourceNotFoundException if unknown
        self._last: StreamSession | None = None

    def __repr__(self) -> str:
        d = self.describe()
        kind = "FaceSearch" if "FaceSearch" in d["Settings"] else "ConnectedHome"
        return f"StreamProcessor({self.name!r}, {kind}, {d['Status']})"

    def describe(self) -> dict:
        """DescribeStreamProcessor."""
        return self._client.describe_stream_processor(Name=self.name)

    @property
    def arn(self) -> str:
        return self.describe()["StreamProcessorArn"]

    @property
    def status(self) -> str:
        return self.describe()["Status"]

    @property
    def status_message(self) -> str | None:
        return self.describe().get("StatusMessage")

    @property
    def session(self) -> StreamSession | None:
        """The running session in this process (a new handle that receives records
        from when its iteration starts), else the last one this handle started."""
        live = _SESSIONS.get(self.name)
        if live is not None and (self._last is None or self._last.session_id != live.session_id):
            return StreamSession(live, None, self._client)
        return self._last

    def start(self, start_selector: dict | None = None, stop_selector: dict | None = None, *,
              realtime: bool = True, sinks: list[str] | None = None, queue_size: int | None = None) -> StreamSession:
        """StartStreamProcessor; returns the session to iterate (``async for`` / ``for``).

        ``start_selector``: ``{"KVSStreamStartSelector": {"ProducerTimestamp": ms}}`` or
        ``{"KVSStreamStartSelector": {"FragmentNumber": "..."}}`` (label processors
        default to ``ProducerTimestamp: 0``, the beginning of the source);
        ``stop_selector``: ``{"MaxDurationInSeconds": 1..120}`` (label default 10;
        face search default: until stop() or the end of the source).
        ``realtime=False`` reads a file as fast as analysis allows (tests, batch);
        ``sinks``: ``.jsonl`` / ``.parquet`` paths (``{SessionId}``, ``{Name}`` expand);
        ``queue_size``: records buffered for this consumer (default 256)."""
        params: dict = {"Name": self.name}
        kind = "FaceSearch" if "FaceSearch" in self.describe()["Settings"] else "ConnectedHome"
        if start_selector is None and kind == "ConnectedHome":
            start_selector = {"KVSStreamStartSelector": {"ProducerTimestamp": 0}}
        if start_selector is not None:
            params["StartSelector"] = start_selector
        if stop_selector is not None:
            params["StopSelector"] = stop_selector
        if not realtime:
            params["Realtime"] = False
        if sinks:
            params["Sinks"] = [os.fspath(s) for s in sinks]
        if queue_size is not None:
            params["QueueSize"] = queue_size
        sub = _Subscriber(queue_size or DEFAULT_QUEUE_SIZE)
        _, session = self._client.stream_processors.start(params, _running_loop(), sub)
        self._last = StreamSession(session, sub, self._client)
        return self._last

    def run(self, start_selector: dict | None = None, stop_selector: dict | None = None, **kwargs) -> list[dict]:
        """Start and collect every record until the session ends (for scripts).
        A face search processor on a live source without a stop selector runs until
        another thread calls stop()."""
        from .video.live import IterableSource

        spec = self._client.stream_processors.source_for(self.describe()["Input"]["KinesisVideoStream"]["Arn"])
        loop = _running_loop()
        if loop is not None and (getattr(spec, "__aiter__", None) or
                                 (isinstance(spec, IterableSource) and spec.is_async)):
            raise RuntimeError("this processor reads an async iterable on the running event loop; "
                               "use `async for record in proc.start(...)` instead of run()")
        return self.start(start_selector, stop_selector, **kwargs).records()

    def stop(self, wait: bool = True, timeout: float | None = 30) -> "StreamProcessor":
        """StopStreamProcessor; with ``wait``, block until the session has ended.
        A processor that is already STOPPED or FAILED (e.g. after ``run()``) has nothing
        to stop: a no-op here (``client.stop_stream_processor`` raises
        ResourceInUseException for it, as Rekognition does)."""
        if self.status not in ("STOPPED", "FAILED"):
            try:
                self._client.stop_stream_processor(Name=self.name)
            except ResourceInUseException:
                if self.status not in ("STOPPING", "STOPPED", "FAILED"):  # ended meanwhile: fine
                    raise
        live = _SESSIONS.get(self.name)
        if wait and live is not None:
            live.done.wait(timeout)
        return self

    def update(self, labels: list[str] | None = None, min_confidence: float | None = None, *,
               regions_of_interest: list[dict] | None = None, data_sharing: bool | None = None,
               delete: list[str] | tuple = ()) -> "StreamProcessor":
        """UpdateStreamProcessor (label settings, regions, data sharing; ``delete``:
        ``"ConnectedHomeMinConfidence"`` / ``"RegionsOfInterest"``)."""
        params: dict = {"Name": self.name}
        ch = {}
        if labels is not None:
            ch["Labels"] = list(labels)
        if min_confidence is not None:
            ch["MinConfidence"] = min_confidence
        if ch:
            params["SettingsForUpdate"] = {"ConnectedHomeForUpdate": ch}
        if regions_of_interest is not None:
            params["RegionsOfInterestForUpdate"] = regions_of_interest
        if data_sharing is not None:
            params["DataSharingPreferenceForUpdate"] = {"OptIn": bool(data_sharing)}
        if delete:
            params["ParametersToDelete"] = list(delete)
        self._client.update_stream_processor(**params)
        return self

    def delete(self) -> None:
        """DeleteStreamProcessor (it must be STOPPED or FAILED)."""
        self._client.delete_stream_processor(Name=self.name)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


DEFAULT_ACCOUNT = "000000000000"
DEFAULT_REGION = "us-east-1"


def create_stream_processor(name: str, source: Any = None, *, face_search: dict | None = None,
                            connected_home: dict | None = None, stream_arn: str | None = None,
                            data_stream_arn: str | None = None, s3_destination: dict | None = None,
                            notification_channel: dict | None = None, role_arn: str | None = None,
                            regions_of_interest: list[dict] | None = None, kms_key_id: str | None = None,
                            tags: dict | None = None, data_sharing: bool | None = None,
                            sample_rate: float | None = None, client=None) -> StreamProcessor:
    """Create (or reopen: the name is idempotent) a stream processor reading ``source``.

    ``source``: a video file, an ``http(s)://`` or ``rtsp://`` URL, a camera index
    (``0`` or ``"camera:0"``), or any (async) iterable of BGR frames. It is mapped to
    ``stream_arn`` (default ``arn:aws:kinesisvideo:us-east-1:000000000000:stream/<name>/rekolab``);
    path, URL and camera sources are remembered under the rekolab home.

    Exactly one of ``face_search={"CollectionId": ..., "FaceMatchThreshold": 80}`` or
    ``connected_home={"Labels": ["PERSON", "PET", "PACKAGE" | "ALL"], "MinConfidence": 50}``.
    The ARNs, role, S3 destination and SNS topic default to local placeholders.
    ``sample_rate``: frames analysed per second of video (default 5)."""
    from .client import default_client

    client = client or default_client()
    if (face_search is None) == (connected_home is None):
        raise InvalidParameterException("give exactly one of face_search={...} or connected_home={...}",
                                        "CreateStreamProcessor")
    stream_arn = stream_arn or f"arn:aws:kinesisvideo:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:stream/{name}/rekolab"
    params: dict = {
        "Name": name,
        "Input": {"KinesisVideoStream": {"Arn": stream_arn}},
        "RoleArn": role_arn or f"arn:aws:iam::{DEFAULT_ACCOUNT}:role/rekolab",
    }
    if face_search is not None:
        params["Settings"] = {"FaceSearch": dict(face_search)}
        params["Output"] = {"KinesisDataStream": {
            "Arn": data_stream_arn or f"arn:aws:kinesis:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:stream/{name}"}}
    else:
        params["Settings"] = {"ConnectedHome": dict(connected_home)}
        params["Output"] = {"S3Destination": s3_destination or {"Bucket": "rekolab-streams", "KeyPrefix": ""}}
        params["NotificationChannel"] = notification_channel or {
            "SNSTopicArn": f"arn:aws:sns:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:AmazonRekognition-{name}"}
    for key, value in (("RegionsOfInterest", regions_of_interest), ("KmsKeyId", kms_key_id), ("Tags", tags),
                       ("SampleRate", sample_rate)):
        if value is not None:
            params[key] = value
    if data_sharing is not None:
        params["DataSharingPreference"] = {"OptIn": bool(data_sharing)}
    client.create_stream_processor(**params)  # first: a refused request maps nothing
    if source is not None:
        client.stream_processors.map_stream(stream_arn, source)
    return StreamProcessor(name, client)
