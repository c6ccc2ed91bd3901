"""Frames at result timestamps, and boxes drawn on them.

:class:`FrameSource` opens a video with the jobs' own decoder (PyAV / FFmpeg,
:mod:`rekolab.video.decode`) and maps a result ``Timestamp`` back to its frame: the
last frame whose presentation time (PTS), in ms rounded down, is at or before the
timestamp. Frame times are the packets' integer PTS (``PacketScan.ms``) and frames
are turned as displayed and converted to RGB by the same FFmpeg filter graph, so the
frame a viewer shows for a result is the frame that was analysed (at full size: the
jobs scale theirs down to at most 720p), at any point of a 6-hour video and in every
container a job accepts (MPEG-TS and late-starting Matroska included).
"""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

__all__ = ["FrameSource", "draw_boxes", "to_png", "blank_frame"]

#: A reading position is kept for sequential access: a frame after it is decoded
#: forward from there, unless a keyframe lies between (then seeking is no more work).
#: Each position decodes at most this many keyframe intervals before it is renewed.
_RUN_KEYFRAMES = 2
#: ... and at most this many frames (a video with one keyframe in hours).
_RUN_FRAMES = 4096


class _Run:
    """An open forward decode of frames ``start`` to ``end`` (exclusive): ``frames`` yields
    ``(k, av.VideoFrame)`` for frame ``numbers[k]``; ``next`` is the next one it yields."""

    __slots__ = ("frames", "numbers", "start", "next", "end")

    def __init__(self, frames, numbers, start: int, end: int):
        self.frames, self.numbers, self.start, self.next, self.end = frames, numbers, start, start, end


class FrameSource:
    """Random access to a video's frames by timestamp or frame number.

    Frame numbers count frames in presentation order from 0, as the jobs'
    ``FrameNumber``. Frames before the first keyframe (a recording cut mid-GOP) cannot
    be decoded: :meth:`index_at` maps their times to the first frame that can, and
    :meth:`frame` refuses their numbers with :class:`~rekolab.video.VideoDecodeError`."""

    def __init__(self, path: str | Path, cache_size: int = 8):
        from ..video.container import probe, scan_packets
        from ..video.decode import _Converter, first_decodable

        self.path = Path(path)
        meta = probe(self.path)  # refuses what a job's Start refuses, in words
        scan = scan_packets(self.path)
        if scan.unplaced() is not None:  # frame numbers would be off
            from ..video.decode import VideoDecodeError

            raise VideoDecodeError(scan.unplaced())
        #: Each frame's PTS in ms from the video stream's start, rounded down: the
        #: jobs' Timestamps (``DecodePlan.timestamps_ms``).
        self.timestamps_ms = np.asarray(scan.ms(), dtype=np.int64)
        self._pts = np.asarray(scan.pts, dtype=np.int64)
        self._keyframes = scan.keyframes
        # (a stream flagging no keyframe is decoded from its first frame)
        kf = np.asarray([k[0] for k in scan.keyframes] or self._pts[:1].tolist(), dtype=np.int64)
        #: the keyframes' frame numbers, and that of the last one at or before each frame
        self._key_frames = np.searchsorted(self._pts, kf)
        self._key_of = self._key_frames[np.maximum(np.searchsorted(kf, self._pts, "right") - 1, 0)]
        self.first_decodable = first_decodable(self._pts, scan.keyframes)
        #: the first frame sharing each frame's PTS (Matroska's whole ms above 1000 fps): the
        #: decoder tells such frames apart by nothing, so the first stands for all (as in jobs)
        self._first_of = np.searchsorted(self._pts, self._pts, side="left")
        self._placed = scan.placed
        #: (width, height) of the frames, as displayed
        self.size = (meta.frame_width, meta.frame_height)
        self._convert = _Converter(self.size)
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._run: _Run | None = None
        self._last: tuple[int, np.ndarray] | None = None  # the frame last decoded, by number

    def __len__(self) -> int:
        return len(self.timestamps_ms)

    def __repr__(self) -> str:
        return f"FrameSource({self.path.name}, {len(self)} frames)"

    def close(self) -> None:
        """Close the open decoder (it is reopened by the next read)."""
        with self._lock:
            self._end_run()

    def index_at(self, timestamp_ms: int) -> int:
        """The frame shown at ``timestamp_ms``: the last one starting at or before it (the
        first decodable frame for times before it)."""
        i = int(np.searchsorted(self.timestamps_ms, int(timestamp_ms), side="right")) - 1
        return min(max(i, self.first_decodable), len(self) - 1)

    def sampled(self, sample_rate: float) -> np.ndarray:
        """The frame numbers a job with this ``SampleRate`` analyses (its decode plan's)."""
        from ..video.decode import sampled_frames

        return sampled_frames(self.timestamps_ms, self.first_decodable, sample_rate)

    def frame(self, timestamp_ms: int | None = None, index: int | None = None) -> np.ndarray:
        """One RGB frame (H, W, 3) uint8 as displayed, by timestamp or by frame number."""
        if index is None:
            index = self.index_at(timestamp_ms or 0)
        index = self._check(index)
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
            frame = self._read(index)
            self._cache[index] = frame
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return frame

    def frames(self, indices: Iterable[int], batch_size: int = 16) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` for each frame number, in increasing order, decoded in one
        forward pass that seeks only across keyframes; one frame in memory at a time
        (``batch_size`` is accepted for compatibility)."""
        wanted = sorted({self._check(i) for i in indices})
        for index in wanted:
            with self._lock:
                frame = self._cache.get(index)
                if frame is None:
                    frame = self._read(index)
            yield index, frame

    # -- decoding ----------------------------------------------------------------------------
    def _check(self, index) -> int:
        from ..video.decode import VideoDecodeError

        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} is not in {self.path.name} ({len(self)} frames)")
        if index < self.first_decodable:
            raise VideoDecodeError(
                f"frame {index} of {self.path.name} comes before its first keyframe (frame "
                f"{self.first_decodable}, {int(self.timestamps_ms[self.first_decodable])} ms) and "
                "cannot be decoded")
        return index

    def _read(self, index: int) -> np.ndarray:
        """Frame ``index`` from the open reading position when it is ahead with no keyframe
        between, else from a new one started at the keyframe before it."""
        first = int(self._first_of[index])
        if first != index and self._last is not None and self._last[0] == first:
            return self._last[1]  # a tie of the frame just read: no new run from its keyframe
        index = first
        run = self._run
        if run is None or not (run.next <= index < run.end and self._key_of[index] <= run.next):
            self._start_run(index)
        run = self._run
        try:
            for k, decoded in run.frames:
                run.next = int(run.numbers[k]) + 1
                if run.next - 1 == index:
                    self._last = (index, self._convert(decoded))
                    return self._last[1]
        except BaseException:  # a decode error, an interrupt: the next read starts afresh
            self._end_run()
            raise
        self._end_run()
        from ..video.decode import VideoDecodeError

        raise VideoDecodeError(f"the decoder returned no frame {index} of {self.path.name}")

    def _start_run(self, index: int) -> None:
        from ..video.decode import DecodePlan, _decode_sampled

        self._end_run()
        later = self._key_frames[self._key_frames > index]  # up to the _RUN_KEYFRAMES-th keyframe after it
        end = int(later[_RUN_KEYFRAMES - 1]) if len(later) >= _RUN_KEYFRAMES else len(self)
        end = min(end, index + _RUN_FRAMES)
        frames = np.unique(self._first_of[index:end])
        plan = DecodePlan(self.path, frames, self.timestamps_ms[frames], self._pts[frames], self.size,
                          self._keyframes, self._placed)
        self._run = _Run(_decode_sampled(plan, threading.Event(), convert=lambda f: f), frames, index, end)

    def _end_run(self) -> None:
        if self._run is not None:
            self._run.frames.close()
            self._run = None

    def __del__(self):
        try:
            self._end_run()
        except Exception:
            pass


def blank_frame(width: int, height: int, note: str = "video not available") -> np.ndarray:
    """A grey frame of the video's size, for results whose video is gone."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (max(int(width), 16), max(int(height), 16)), (96, 96, 96))
    ImageDraw.Draw(img).text((8, 8), note, fill=(230, 230, 230), font=_font(max(12, height // 30)))
    return np.asarray(img)


_FONTS: dict[int, object] = {}


def _font(size: int):
    from PIL import ImageFont

    if size not in _FONTS:
        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: bitmap font only
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def _rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


def draw_boxes(frame_rgb: np.ndarray, boxes: list[dict], max_width: int = 960,
               tags: list[tuple[str, str]] | None = None, max_tags: int = 12):
    """Draw ``boxes`` (dicts with Left, Top, Width, Height as frame ratios, ``text``
    and ``color``) on a copy of the frame; returns a PIL image, scaled down to at most
    ``max_width`` pixels wide. Boxes partly outside the frame are clipped for drawing.
    ``tags`` ((text, color) pairs: labels seen on the whole frame, without a box) are
    listed in the top-left corner."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(frame_rgb))
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.BILINEAR)
    w, h = img.size
    draw = ImageDraw.Draw(img)
    line = max(2, round(w / 320))
    font = _font(max(11, round(h / 28)))
    for b in boxes:
        x0, y0 = b["Left"] * w, b["Top"] * h
        x1, y1 = x0 + b["Width"] * w, y0 + b["Height"] * h
        x0, x1 = np.clip([x0, x1], 0, w - 1)
        y0, y1 = np.clip([y0, y1], 0, h - 1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        color = _rgb(b.get("color", "#ff0000"))
        draw.rectangle([x0, y0, x1, y1], outline=color, width=line)
        text = b.get("text")
        if text:
            tb = draw.textbbox((0, 0), text, font=font)
            tw, th = tb[2] - tb[0] + 6, tb[3] - tb[1] + 6
            ty = y0 - th if y0 - th >= 0 else min(y1, h - th)
            draw.rectangle([x0, ty, x0 + tw, ty + th], fill=color)
            draw.text((x0 + 3 - tb[0], ty + 3 - tb[1]), text, fill=(255, 255, 255), font=font)
    y = 4
    shown = list(tags or [])
    if len(shown) > max_tags:
        shown = shown[: max_tags - 1] + [(f"+{len(shown) - max_tags + 1} more", "#404040")]
    for text, color in shown:
        tb = draw.textbbox((0, 0), text, font=font)
        tw, th = tb[2] - tb[0] + 6, tb[3] - tb[1] + 6
        draw.rectangle([4, y, 4 + tw, y + th], fill=_rgb(color))
        draw.text((7 - tb[0], y + 3 - tb[1]), text, fill=(255, 255, 255), font=font)
        y += th + 2
    return img


def to_png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
