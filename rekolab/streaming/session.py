"""One StartStreamProcessor session (:class:`_Session`: a reader thread and an analyser
thread, records to sinks and consumers, summaries and the final status) and its
iteration handle :class:`StreamSession`.

Part of :mod:`rekolab.streaming`; :class:`~rekolab.streaming.manager.StreamProcessorManager`
starts sessions.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .. import store
from ..errors import ResourceInUseException
from .definitions import (DEFAULT_SAMPLE_RATE, FRAGMENT_SECONDS, _LOCK, _SESSIONS, _def_path, _key_parts, _kind,
                          _sessions_dir, _update_def, fragment_number, parse_fragment_number)
from .pipeline import (_END, _ConnectedHomeAnalyser, _FaceSearchAnalyser, _Frame, _FrameBuffer, _Sampler,
                       _Subscriber)

if TYPE_CHECKING:  # annotations only
    from .manager import StreamProcessorManager

log = logging.getLogger("rekolab.streaming")


# ============================================================================ a session


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
        from ..video.live import SourceError, open_source

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
                    from ..aws.s3 import upload_folder
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
            from ..video.live import SourceError

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
    from ..video.live import SourceError

    return SourceError(message)


def _describe(spec: Any) -> str:
    from ..video.live import describe_source

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


# ============================================================================ the session handle


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
