"""A live view for stream processors: a widget that updates while an async cell
consumes records.

    view = rk.live_view("door camera", video="clip.mp4")   # video: optional, to show frames
    display(view)
    await view.consume(proc.start())             # or: async for r in proc.start(): view.update(r)

It understands the two record kinds Rekognition stream processors emit:

* **face search** (Kinesis Data Streams): ``{"InputInformation": {"KinesisVideo":
  {..., "ProducerTimestamp", "FrameOffsetInSeconds"}}, "FaceSearchResponse": [
  {"DetectedFace": {...}, "MatchedFaces": [{"Similarity", "Face": {...}}]}]}``;
  one lane per matched person (the best match's ExternalImageId, else its
  FaceId), and "unknown face" for faces without a match;
* **label events** (connected home, SNS): ``{"eventNamespace": {"type":
  "LABEL_DETECTED"}, "labels": [{"name", "boundingBox", "videoMapping": ...}]}``,
  bare or inside an SNS envelope's ``"Message"`` string; one lane per label;
  ``STREAM_PROCESSING_COMPLETE`` marks the session done.

Frames: pass ``frame=`` to :meth:`LiveView.update` (or ``(record, frame)`` pairs to
:meth:`LiveView.consume`); or give ``video=`` (the file a face-search processor
reads) and the frame of each record is decoded at its source time, found from the
record's rekolab FragmentNumber (origin ms) and ProducerTimestamp +
FrameOffsetInSeconds; label events show their hero frame (``frameImageUri``) from
the local S3Destination folder. Frames are decoded only when the view redraws.

Memory and drawing are bounded: each lane keeps its last ``max_points`` sightings,
the picture shows the last ``window_s`` seconds of stream time and at most
``max_lanes`` lanes, and it is redrawn at most every ``refresh_s`` seconds (the
counters update on every record).
"""
from __future__ import annotations

import html
import json
import time
from collections import deque
from typing import Any, AsyncIterable, Iterable

import ipywidgets as widgets
import numpy as np

from .frames import draw_boxes, to_png
from .lanes import lane_color
from .static_fallback import StaticFallback, stack_pngs

__all__ = ["LiveView", "parse_record"]

UNKNOWN_FACE = "unknown face"


def _source_pts_ms(info: dict) -> int | None:
    """The frame's time in the source (ms from PTS 0), from a rekolab FragmentNumber:
    its first 13 digits are the source's origin in Unix ms (docs/streaming.md)."""
    kv = (info or {}).get("KinesisVideo") or {}
    number = str(kv.get("FragmentNumber") or "")
    if len(number) != 23 or not number.isdigit() or "ProducerTimestamp" not in kv:
        return None
    frame_s = float(kv["ProducerTimestamp"]) + float(kv.get("FrameOffsetInSeconds") or 0.0)
    return int(round(frame_s * 1000 - int(number[:13])))


def _time_s(info: dict) -> float | None:
    kv = (info or {}).get("KinesisVideo") or {}
    if "ProducerTimestamp" in kv:
        return float(kv["ProducerTimestamp"]) + float(kv.get("FrameOffsetInSeconds") or 0.0)
    if "ServerTimestamp" in kv:
        return float(kv["ServerTimestamp"]) + float(kv.get("FrameOffsetInSeconds") or 0.0)
    return None


def parse_record(record: Any) -> dict:
    """One stream record -> ``{"kind", "time_s", "detections": [{lane, confidence,
    box}], "status"}``. ``box`` is a Rekognition BoundingBox (ratios) or None."""
    if isinstance(record, (bytes, str)):
        record = json.loads(record)
    if "Message" in record and isinstance(record["Message"], str):  # an SNS envelope
        try:
            record = json.loads(record["Message"])
        except ValueError:
            pass
    if "FaceSearchResponse" in record:
        dets = []
        for face in record.get("FaceSearchResponse") or []:
            detected = face.get("DetectedFace") or {}
            matches = sorted(face.get("MatchedFaces") or [], key=lambda m: -m.get("Similarity", 0.0))
            if matches:
                best = matches[0]
                name = best.get("Face", {}).get("ExternalImageId") or best.get("Face", {}).get("FaceId") or "match"
                dets.append({"lane": name, "confidence": best.get("Similarity"),
                             "box": detected.get("BoundingBox")})
            else:
                dets.append({"lane": UNKNOWN_FACE, "confidence": detected.get("Confidence"),
                             "box": detected.get("BoundingBox")})
        info = record.get("InputInformation")
        return {"kind": "face_search", "time_s": _time_s(info), "pts_ms": _source_pts_ms(info),
                "detections": dets, "status": (record.get("StreamProcessorInformation") or {}).get("Status")}
    namespace = (record.get("eventNamespace") or {}).get("type")
    if namespace == "LABEL_DETECTED" or "labels" in record:
        dets, times, uris = [], [], []
        for label in record.get("labels") or []:
            if label.get("frameImageUri"):
                uris.append(label["frameImageUri"])
            box = label.get("boundingBox")
            if box:
                box = {"Left": box.get("left"), "Top": box.get("top"), "Width": box.get("width"),
                       "Height": box.get("height")}
            mapping = (label.get("videoMapping") or {}).get("kinesisVideoMapping") or {}
            if "producerTimestamp" in mapping:
                times.append(float(mapping["producerTimestamp"]) / 1000.0
                             + float(mapping.get("frameOffsetMillis") or 0) / 1000.0)
            dets.append({"lane": str(label.get("name", "label")), "confidence": label.get("confidence"),
                         "box": box})
        return {"kind": "labels", "time_s": times[0] if times else None, "detections": dets,
                "status": None, "frame_uri": uris[0] if uris else None}
    if namespace == "STREAM_PROCESSING_COMPLETE":
        return {"kind": "complete", "time_s": None, "detections": [], "status": "COMPLETE"}
    return {"kind": "other", "time_s": None, "detections": [], "status": None}


def _fmt_best(value) -> str:
    """The best confidence of a lane, or a dash when its records carry none."""
    return "–" if value is None or not np.isfinite(value) else f"{value:.1f}"


class LiveView(StaticFallback, widgets.VBox):
    """A widget that follows a stream processor's records as they arrive."""

    def __init__(self, title: str = "stream", *, video=None, window_s: float = 60.0, max_lanes: int = 12,
                 refresh_s: float = 0.25, max_points: int = 2000, width_px: int = 900, **kwargs):
        self.title = title
        self.video = video
        self._video_source = None
        self.window_s = float(window_s)
        self.max_lanes = int(max_lanes)
        self.refresh_s = float(refresh_s)
        self.max_points = int(max_points)
        self.width_px = int(width_px)
        self.records = 0
        self.faces = 0
        self.kinds: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.best: dict[str, float] = {}
        self.last_seen_s: dict[str, float] = {}
        self.done = False
        self.renders = 0
        self.last_boxes: list[dict] = []
        self._points: dict[str, deque] = {}
        self._colors: dict[str, str] = {}
        self._t0: float | None = None
        self._wall0: float | None = None
        self._now_s = 0.0
        self._last_render = float("-inf")  # the first record draws at once
        self._frame: np.ndarray | None = None
        self._frame_ref: tuple | None = None  # ("pts", ms) or ("uri", s3://...) of the last record
        self.frame_shown: str | None = None
        self.header = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width=f"{width_px}px"))
        self.frame_image = widgets.Image(format="png", layout=widgets.Layout(max_width="480px"))
        self.table = widgets.HTML()
        super().__init__([self.header, self.image, widgets.HBox([self.table, self.frame_image])], **kwargs)
        self._render_text()

    def __repr__(self) -> str:
        return f"LiveView({self.title!r}, {self.records} records, lanes={sorted(self.counts)})"

    # -- input -----------------------------------------------------------------------
    def update(self, record: Any, frame: np.ndarray | None = None) -> dict:
        """Take one record (dict, JSON text or bytes); ``frame`` (RGB, optional) is
        shown with the record's boxes. Returns the parsed record."""
        parsed = parse_record(record)
        self.records += 1
        self.kinds[parsed["kind"]] = self.kinds.get(parsed["kind"], 0) + 1
        if parsed["kind"] == "complete":
            self.done = True
        if self._wall0 is None:
            self._wall0 = time.monotonic()
        t = parsed["time_s"]
        if t is None:  # no stream time in the record: time since the first record arrived
            rel = time.monotonic() - self._wall0
        else:
            if self._t0 is None:
                self._t0 = t
            rel = t - self._t0
        self._now_s = max(self._now_s, rel)
        boxes = []
        for d in parsed["detections"]:
            lane = d["lane"]
            if parsed["kind"] == "face_search":
                self.faces += 1
            self.counts[lane] = self.counts.get(lane, 0) + 1
            self.last_seen_s[lane] = rel
            if d["confidence"] is not None and np.isfinite(float(d["confidence"])):
                self.best[lane] = max(self.best.get(lane, 0.0), float(d["confidence"]))
            self._points.setdefault(lane, deque(maxlen=self.max_points)).append(rel)
            color = self._colors.setdefault(lane, lane_color(len(self._colors)))
            if d["box"] and all(d["box"].get(k) is not None for k in ("Left", "Top", "Width", "Height")):
                conf = d["confidence"]
                boxes.append({**d["box"], "text": lane if conf is None else f"{lane} {conf:.0f}",
                              "color": color, "Lane": lane})
        if parsed["detections"] or frame is not None:
            self.last_boxes = boxes
        if frame is not None:
            self._frame, self._frame_ref = frame, None
        elif parsed.get("pts_ms") is not None and self.video is not None:
            self._frame, self._frame_ref = None, ("pts", parsed["pts_ms"])
        elif parsed.get("frame_uri"):
            self._frame, self._frame_ref = None, ("uri", parsed["frame_uri"])
        now = time.monotonic()
        if now - self._last_render >= self.refresh_s or self.done:
            self.flush()
        else:
            self._render_text()
        return parsed

    async def consume(self, records: AsyncIterable | Iterable, *, limit: int | None = None) -> int:
        """Update from every record of an async (or plain) iterable until it ends or
        ``limit`` records were taken; returns how many were taken. Yields to the event
        loop between records, so the notebook stays live."""
        import asyncio

        taken = 0
        try:
            if hasattr(records, "__aiter__"):
                async for record in records:
                    self._take(record)
                    taken += 1
                    if limit is not None and taken >= limit:
                        break
            else:
                for record in records:
                    self._take(record)
                    taken += 1
                    await asyncio.sleep(0)
                    if limit is not None and taken >= limit:
                        break
        finally:
            aclose = getattr(records, "aclose", None)
            if limit is not None and aclose is not None:
                await aclose()
            self.flush()
        return taken

    def _take(self, record) -> None:
        if isinstance(record, tuple) and len(record) == 2:  # (record, frame)
            self.update(record[0], frame=record[1])
        else:
            self.update(record)

    # -- drawing ---------------------------------------------------------------------
    def lanes(self) -> list[str]:
        """Lanes in the picture: most recently seen first, at most ``max_lanes``."""
        lo = self._now_s - self.window_s
        recent = [n for n in self.counts if self.last_seen_s.get(n, -1e9) >= lo]
        recent.sort(key=lambda n: (-self.last_seen_s[n], n))
        return recent[: self.max_lanes]

    def window(self) -> tuple[float, float]:
        """The stream time the picture shows (s). It follows the stream: it grows with
        it (a 9 s clip fills the picture), then slides once the stream is longer
        than ``window_s``."""
        hi = max(self._now_s * 1.02, 1.0)
        return max(0.0, hi - self.window_s), hi

    def flush(self) -> None:
        """Redraw everything now."""
        self._last_render = time.monotonic()
        self.renders += 1
        self._render_text()
        self.image.value = self._render_lanes()
        frame = self._frame if self._frame is not None else self._load_frame()
        if frame is not None:
            self.frame_image.value = to_png(draw_boxes(frame, self.last_boxes, 480))

    def _load_frame(self) -> np.ndarray | None:
        """The last record's frame: decoded from ``video`` at the record's source time
        (face search), or the label event's hero frame from the local S3Destination."""
        if self._frame_ref is None:
            return None
        kind, ref = self._frame_ref
        try:
            if kind == "pts":
                if self._video_source is None:
                    from .frames import FrameSource
                    self._video_source = FrameSource(self.video)
                self.frame_shown = f"{self.video} @ {ref} ms"
                return self._video_source.frame(ref)
            from PIL import Image

            from .. import store

            if not str(ref).startswith("s3://"):
                return None
            path = store.home() / "s3" / str(ref)[5:]
            if not path.is_file():
                return None
            self.frame_shown = str(path)
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except Exception:  # a frame is a nicety: never break the stream over it
            return None

    def _render_text(self) -> None:
        state = "done" if self.done else "live"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        self.header.value = (f"<b>{html.escape(self.title)}</b> · {state} · {self.records} records "
                             f"({kinds or 'none yet'}) · stream time {self._now_s:.1f} s")
        rows = "".join(
            f"<tr><td style='color:{self._colors.get(n, '#000')}'>■</td><td>{html.escape(n)}</td>"
            f"<td>{self.counts[n]}</td><td>{_fmt_best(self.best.get(n))}</td>"
            f"<td>{self.last_seen_s[n]:.1f} s</td></tr>"
            for n in sorted(self.counts, key=lambda n: -self.counts[n])[:50])
        self.table.value = ("<table><tr><th></th><th>lane</th><th>sightings</th><th>best</th>"
                            f"<th>last seen</th></tr>{rows}</table>")

    def _render_lanes(self) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        lanes = self.lanes()
        fig = Figure(figsize=(self.width_px / 100, 0.9 + 0.28 * max(len(lanes), 1)), dpi=100,
                     layout="constrained")
        ax = fig.add_subplot()
        lo, hi = self.window()
        gaps = [np.median(np.diff(np.asarray(self._points[n]))) for n in lanes if len(self._points[n]) > 1]
        bar = min(max([self.window_s / 400, 0.05] + [g for g in gaps if g > 0][:1]), 2.0)
        for row, name in enumerate(lanes):
            pts = np.asarray(self._points[name])
            pts = pts[pts >= lo]
            ax.broken_barh([(p, bar) for p in pts.tolist()], (row - 0.38, 0.76), facecolors=self._colors[name])
        ax.set_xlim(lo, hi)
        ax.set_ylim(len(lanes) - 0.5 if lanes else 0.5, -0.5)
        ax.set_yticks(range(len(lanes)), lanes)
        ax.set_xlabel("stream time (s)")
        ax.grid(axis="x", alpha=0.3)
        if not lanes:
            ax.text(0.5, 0.5, "waiting for records", transform=ax.transAxes, ha="center", va="center",
                    color="0.4")
        canvas = FigureCanvasAgg(fig)
        import io

        buf = io.BytesIO()
        canvas.print_png(buf)
        return buf.getvalue()

    def _static_png(self) -> bytes:
        return stack_pngs([self.image.value, self.frame_image.value])
