"""Frames at result timestamps, and boxes drawn on them.

:class:`FrameSource` opens a video once (decord) and maps a result ``Timestamp``
back to its frame: the last frame whose presentation time (PTS), in ms rounded
down, is at or before the timestamp. Frame times are the packets' integer PTS
(``rekolab.video.decode._exact_frame_ms``, not decord's float32 seconds), as in the
jobs' decode plan (``PacketScan.ms``), so the frame a viewer shows for a result is
the exact frame that was analysed, at any point of a 6-hour video.
"""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

__all__ = ["FrameSource", "draw_boxes", "to_png", "blank_frame"]


class FrameSource:
    """Random access to a video's frames by timestamp or frame number."""

    def __init__(self, path: str | Path, cache_size: int = 8):
        # The decode plan's own helpers: one source of truth for frame times, and
        # decord imported without decord2's CUDA-library preload.
        from ..video.decode import _exact_frame_ms, _import_decord

        decord = _import_decord()
        self.path = Path(path)
        self._reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
        starts = self._reader.get_frame_timestamp(np.arange(len(self._reader)))[:, 0].astype(np.float64)
        # Exactly the decode plan's timestamps: integer PTS in ms, rounded down.
        self.timestamps_ms = _exact_frame_ms(self.path, starts)
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self.timestamps_ms)

    def __repr__(self) -> str:
        return f"FrameSource({self.path.name}, {len(self)} frames)"

    def index_at(self, timestamp_ms: int) -> int:
        """The frame shown at ``timestamp_ms`` (the last one starting at or before it)."""
        i = int(np.searchsorted(self.timestamps_ms, int(timestamp_ms), side="right")) - 1
        return min(max(i, 0), len(self) - 1)

    def frame(self, timestamp_ms: int | None = None, index: int | None = None) -> np.ndarray:
        """One RGB frame (H, W, 3) uint8, by timestamp or by frame number."""
        if index is None:
            index = self.index_at(timestamp_ms or 0)
        index = int(index)
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
            frame = self._reader[index].asnumpy()
            self._cache[index] = frame
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return frame

    def frames(self, indices: Iterable[int], batch_size: int = 16) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` for each frame number, decoded in sorted batches (memory
        bounded by ``batch_size``)."""
        wanted = sorted({int(i) for i in indices})
        for s in range(0, len(wanted), batch_size):
            chunk = wanted[s:s + batch_size]
            with self._lock:
                arr = self._reader.get_batch(chunk).asnumpy()
            yield from zip(chunk, arr)


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
