"""The stream-processor half of a :class:`rekolab.Client`: the seven operations
(Create/Describe/List/Start/Stop/Update/DeleteStreamProcessor), the Kinesis video ARN ->
source mappings, and the delivery of label processors' events.

Part of :mod:`rekolab.streaming`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import store
from ..errors import LimitExceededException, ResourceInUseException
from .definitions import (DEFAULT_MAX_DURATION_S, DEFAULT_MAX_STREAM_PROCESSORS, DEFAULT_QUEUE_SIZE,
                          _FRAGMENT_INDEX_DIGITS, _LOCK, _SESSIONS, _all_defs, _arn, _check_labels, _check_regions,
                          _current, _def_path, _invalid, _kind, _owner, _read_def, _sessions_dir, _streams_file,
                          _update_def, _validate_create, _write_def, parse_fragment_number, parse_streams)
from .pipeline import _make_sink, _Subscriber
from .session import _Session

log = logging.getLogger("rekolab.streaming")


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
        from ..video.live import is_persistable

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
        from ..requests import validate_request

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
        from ..requests import validate_request
        from ..results import make_token, read_token

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
        from ..requests import validate_request

        op = "StartStreamProcessor"
        extensions = validate_request(op, params)
        sinks = [_make_sink(p, op) for p in extensions.get("Sinks", [])]
        name = params["Name"]
        d = _current(_read_def(name, op))
        kind = _kind(d)
        if kind == "FaceSearch" and self.aws_outputs:  # rekolab/aws: PutRecords to the real stream
            from ..aws import KinesisSink
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
            from ..collections import check_searchable

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
        from ..requests import validate_request

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
        from ..requests import validate_request

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
        from ..requests import validate_request

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
            from ..aws.sns import publish_async
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
