"""The pieces a stream processing session runs: each consumer's bounded queue
(:class:`_Subscriber`), the frame buffer between reader and analyser, the JSON Lines and
parquet sinks, the face search and connected-home analysers (with regions of interest),
and the frame sampler.

Part of :mod:`rekolab.streaming`; :mod:`.session` puts them together.
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .definitions import (CONNECTED_HOME_CLASSES, DEFAULT_MIN_CONFIDENCE, DEFAULT_QUEUE_SIZE, FACE_MATCH_FLOOR,
                          LABELS, _FACE_SEARCH_FACE_KEYS, _invalid)

if TYPE_CHECKING:  # annotations only
    from .session import _Session


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
        from ..models.faces import face_pack

        self.pack = face_pack()
        self.collection_id = settings["CollectionId"]
        self.threshold = max(FACE_MATCH_FLOOR, float(settings.get("FaceMatchThreshold", FACE_MATCH_FLOOR)))

    def models(self) -> dict:
        return {"FacePack": self.pack.name, "Detector": type(self.pack.detector).__name__,
                "Recognizer": type(self.pack.recognizer).__name__ if self.pack.recognizer else None,
                "Attributes": self.pack.attributes.methods("DEFAULT")}

    def __call__(self, frame: _Frame, session: "_Session") -> list[dict]:
        from ..analysis.face_attributes import BASIC_LANDMARKS, describe_faces
        from ..collections import search_embeddings
        from ..results.schema import DEFAULT_FACE_KEYS

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
        from ..models.yolox import YoloxDetector

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


# ============================================================================ the sampler


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
