"""``job.player()``: the video in the browser with the job's boxes drawn in sync.

    p = job.player()        # an anywidget: display it in a cell
    p.seek(4.2)             # seconds; the browser seeks, boxes follow
    p.boxes                 # what is drawn at the current time (lane, text, box, confidence)
    p.min_confidence = 80   # the same filters as the timeline
    p.selected = ["face 3"]

In the browser: an HTML5 ``<video>``, a canvas over it with the boxes and names
of the result at the presented frame (``requestVideoFrameCallback``'s
``mediaTime`` where the browser has it, else ``currentTime``), controls
(play/pause, frame steps, previous/next frame with a box, seek, min confidence),
keyboard shortcuts (space/K, ←/→ one frame, shift+←/→ one second, J/L previous /
next box), the lanes timeline (click a lane to seek to its nearest result, hover
for name, confidence and time, click a name to show only that lane) and a
gallery of each face / celebrity / person lane's best crops (click to seek).

A result is drawn solid on the frame it came from and dashed on the frames
within half a sampling interval of it (results come from sampled frames, 5 a
second by default; the video plays every frame).

What is sent: the detections table (:mod:`rekolab.widgets.detections`) as typed
arrays (Timestamp float64, lane int32, confidence float32, box 4 x float32: 32
bytes a row), the binned lanes (12 bytes per occupied bin), the gallery JPEGs
(~3 kB each) and the video as :mod:`rekolab.widgets.media` decides. Any
operation with a detections adapter plugs in; so does any table with a
Timestamp and a BoundingBox column.
"""
from __future__ import annotations

from pathlib import Path

import anywidget
import numpy as np
import traitlets

from .detections import UNMATCHED, JobView
from .lanes import DEFAULT_MAX_BINS, lane_color
from .media import DEFAULT_MAX_BYTES, jpeg_data_url, still_picture, video_for_browser, video_start_s
from .static_fallback import StaticFallback

__all__ = ["Player", "GALLERY_KINDS"]

_STATIC = Path(__file__).parent / "static"

#: Lane kinds that get a gallery of crops (one identity per lane).
GALLERY_KINDS = ("face track", "celebrity", "person")


class Player(StaticFallback, anywidget.AnyWidget):
    """Video + synchronised box overlay + clickable lanes + per-track gallery."""

    _esm = _STATIC / "player.js"
    _css = _STATIC / "player.css"

    video = traitlets.Bytes(b"").tag(sync=True)
    video_url = traitlets.Unicode("").tag(sync=True)
    video_mime = traitlets.Unicode("video/mp4").tag(sync=True)
    video_note = traitlets.Unicode("").tag(sync=True)
    meta = traitlets.Dict().tag(sync=True)
    lanes = traitlets.List().tag(sync=True)
    det_ts = traitlets.Bytes(b"").tag(sync=True)
    det_lane = traitlets.Bytes(b"").tag(sync=True)
    det_conf = traitlets.Bytes(b"").tag(sync=True)
    det_box = traitlets.Bytes(b"").tag(sync=True)
    bins_lane = traitlets.Bytes(b"").tag(sync=True)
    bins_bin = traitlets.Bytes(b"").tag(sync=True)
    bins_conf = traitlets.Bytes(b"").tag(sync=True)
    gallery = traitlets.Dict().tag(sync=True)
    min_confidence = traitlets.Float(0.0).tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    current_time = traitlets.Float(0.0).tag(sync=True)
    paused = traitlets.Bool(True).tag(sync=True)

    def __init__(self, view: JobView, *, min_confidence: float = 0.0, lanes: list[str] | None = None,
                 url: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, proxy: bool | None = None,
                 gallery: int = 3, max_bins: int = DEFAULT_MAX_BINS, max_height_px: int = 420, **kwargs):
        self.view = view
        lanes_obj = view.lanes(max_bins)
        det = view.detections
        names = lanes_obj.names
        index = {n: i for i, n in enumerate(names)}
        ts = det.column("Timestamp").to_numpy().astype(np.float64)
        lane = np.array([index[n] for n in det.column("Lane").to_pylist()], np.int32)

        def f(col):
            return det.column(col).to_numpy(zero_copy_only=False).astype(np.float32)

        box = np.stack([f("Left"), f("Top"), f("Width"), f("Height")], axis=1) if det.num_rows \
            else np.zeros((0, 4), np.float32)
        src = video_for_browser(view.video_path, url=url, max_bytes=max_bytes, proxy=proxy)
        self.delivery = src
        w, h = view.frame_size
        meta = {
            "title": f"{view.operation.removeprefix('Start')} · {view.video_name}".strip(" ·"),
            "operation": view.operation, "lane_kind": lanes_obj.lane_kind,
            "fps": float(view.video_metadata.get("FrameRate") or 25.0), "width": w, "height": h,
            "duration_ms": int(lanes_obj.duration_ms), "sample_interval_ms": float(view.sample_interval_ms),
            "bin_ms": float(lanes_obj.bin_ms), "n_bins": int(lanes_obj.n_bins), "max_height_px": int(max_height_px),
            "delivery": src.how,
            # The <video> element's media time of a result at Timestamp 0: the video
            # stream's start (a proxy is rewritten to start at 0).
            "offset_s": 0.0 if src.how in ("proxy", "none") else video_start_s(view.video_path),
        }
        super().__init__(
            video=src.data, video_url=src.url, video_mime=src.mime, video_note=src.note, meta=meta,
            lanes=[{"name": n, "color": lane_color(i)} for i, n in enumerate(names)],
            det_ts=ts.tobytes(), det_lane=lane.tobytes(), det_conf=f("Confidence").tobytes() if det.num_rows else b"",
            det_box=np.ascontiguousarray(box, np.float32).tobytes(),
            bins_lane=lanes_obj.pair_lane.astype(np.int32).tobytes(),
            bins_bin=lanes_obj.pair_bin.astype(np.int32).tobytes(),
            bins_conf=lanes_obj.pair_conf.astype(np.float32).tobytes(),
            min_confidence=float(min_confidence), selected=list(lanes or []), **kwargs)
        if gallery and lanes_obj.lane_kind in GALLERY_KINDS:
            self.gallery = self.best_crops(gallery)

    def __repr__(self) -> str:
        return (f"Player({self.view.operation}, {len(self.lanes)} lanes, t={self.current_time:.3f} s, "
                f"video via {self.delivery.how})")

    # -- from Python ---------------------------------------------------------------------
    def seek(self, seconds: float) -> None:
        """Show the frame at ``seconds`` (the browser seeks; the overlay follows)."""
        self.current_time = max(0.0, float(seconds))

    @property
    def boxes(self) -> list[dict]:
        """What the overlay draws now: the rows of the result nearest ``current_time``
        (within half a sampling interval) that pass the filters (the browser's rule)."""
        nearest = self.view.nearest_timestamp(int(round(self.current_time * 1000.0)))
        if nearest is None:
            return []
        rows = self.view.rows_at(nearest).to_pylist()
        chosen = set(self.selected)
        out = []
        for r in rows:
            conf = r["Confidence"]
            if (chosen and r["Lane"] not in chosen) or (conf is not None and conf < self.min_confidence):
                continue
            out.append({**r, "text": r["Lane"] if conf is None else f"{r['Lane']} {conf:.0f}"})
        return out

    def best_crops(self, per_lane: int = 3, max_lanes: int = 40, height_px: int = 64) -> dict:
        """``{lane: [{t, conf, src}]}``: each lane's ``per_lane`` highest-confidence boxes
        (on distinct frames) cropped with a 20 % margin, as small JPEG data URLs."""
        source = self.view.source
        det = self.view.detections
        if source is None or not det.num_rows:
            return {}
        df = det.to_pandas()
        df = df[df["Left"].notna()]
        picks = []
        for lane, g in df.groupby("Lane", sort=False):
            if lane == UNMATCHED:  # many different people: no gallery
                continue
            g = g.sort_values("Confidence", ascending=False).drop_duplicates("Timestamp")
            picks.append((lane, g.head(per_lane)))
        lanes_obj = self.view.lanes()
        picks.sort(key=lambda p: lanes_obj.index(p[0]))
        rows = [(lane, row) for lane, g in picks[:max_lanes] for row in g.itertuples()]
        index = [source.index_at(int(row.Timestamp)) for _, row in rows]
        frames = dict(source.frames(index))  # one sorted pass, not a seek per crop
        from PIL import Image

        out: dict[str, list] = {}
        for (lane, row), i in zip(rows, index):
            frame = frames[i]
            H, W = frame.shape[:2]
            mx, my = 0.2 * row.Width, 0.2 * row.Height
            x0, y0 = max(0, int((row.Left - mx) * W)), max(0, int((row.Top - my) * H))
            x1, y1 = min(W, int((row.Left + row.Width + mx) * W)), min(H, int((row.Top + row.Height + my) * H))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            img = Image.fromarray(frame[y0:y1, x0:x1])
            img = img.resize((max(1, round(img.width * height_px / img.height)), height_px))
            out.setdefault(lane, []).append({"t": int(row.Timestamp), "conf": float(row.Confidence),
                                             "src": jpeg_data_url(np.asarray(img))})
        return out

    # -- a still picture for saved notebooks ------------------------------------------------
    def _static_png(self) -> bytes:
        return still_picture(self.view, int(round(self.current_time * 1000)), min_confidence=self.min_confidence,
                             lanes=self.selected or None)

    def payload_bytes(self) -> int:
        """Bytes of widget state sent to the browser (the video included)."""
        return sum(len(getattr(self, name)) for name in ("video", "det_ts", "det_lane", "det_conf", "det_box",
                                                         "bins_lane", "bins_bin", "bins_conf")) + \
            sum(len(i["src"]) for items in self.gallery.values() for i in items)
