"""Probe a video's metadata and decode sampled frames in batches.

* :func:`probe` reads the container with PyAV (FFmpeg): ``VideoMetadata`` uses
  FFmpeg's names, as Rekognition shows them (``Format: "QuickTime / MOV"``,
  ``Codec: "h264"``).
* :func:`iter_batches` decodes with decord (the ``decord2`` distribution) on a
  background prefetch thread, yielding :class:`FrameBatch` objects of at most
  ``batch_size`` frames; at most ``prefetch`` batches wait in the queue, so memory
  is bounded by the batch size, not by the video's length.

**Timestamps** are each frame's presentation time (PTS) in milliseconds, relative
to the video stream's start (like OpenCV's ``CAP_PROP_POS_MSEC``), rounded down —
never ``index / fps``. They are computed in integers from the packets' PTS and
time base (decord's own float32 timestamps lose ~2 ms of precision at 6 hours).

**Sampling.** Rekognition does not document how often it samples. rekolab
analyses ``sample_rate`` frames per second of video (default
:data:`DEFAULT_SAMPLE_RATE` = 5, i.e. one frame every 200 ms): for each target time
``k / sample_rate`` it takes the first frame whose PTS is at or after it. A video
with fewer frames per second than that is analysed frame by frame.
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InvalidParameterException, VideoTooLargeException
from ..models import require

__all__ = [
    "DEFAULT_SAMPLE_RATE",
    "MAX_DURATION_MS",
    "VideoMetadata",
    "FrameBatch",
    "VideoDecodeError",
    "probe",
    "sample_indices",
    "iter_batches",
    "plan",
    "DecodePlan",
]

DEFAULT_SAMPLE_RATE = 5.0
#: A decoder that produces nothing for this long is declared stalled (decord#373:
#: get_batch can spin forever on files whose frame count is over-reported).
STALL_TIMEOUT_S = float(120)
MAX_DURATION_MS = 6 * 3600 * 1000


class VideoDecodeError(RuntimeError):
    """Decoding failed part-way (truncated or corrupt data); ends the job FAILED."""


@dataclass(frozen=True)
class VideoMetadata:
    codec: str
    duration_ms: int
    format: str
    frame_rate: float
    frame_height: int
    frame_width: int
    color_range: str  # "FULL" | "LIMITED"

    def to_dict(self) -> dict:
        """Rekognition's ``VideoMetadata`` shape."""
        return {
            "Codec": self.codec,
            "DurationMillis": self.duration_ms,
            "Format": self.format,
            "FrameRate": self.frame_rate,
            "FrameHeight": self.frame_height,
            "FrameWidth": self.frame_width,
            "ColorRange": self.color_range,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "VideoMetadata":
        return cls(d["Codec"], d["DurationMillis"], d["Format"], d["FrameRate"],
                   d["FrameHeight"], d["FrameWidth"], d["ColorRange"])


@dataclass(frozen=True, repr=False)
class FrameBatch:
    """Decoded frames: ``frames`` (N, H, W, 3) uint8 RGB, with exact timestamps."""

    frames: np.ndarray
    timestamps_ms: np.ndarray  # (N,) int64, PTS in ms
    indices: np.ndarray  # (N,) int64, frame number in decode order (0-based)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.timestamps_ms)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be (N, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}")
        if self.frames.shape[0] != n or len(self.indices) != n:
            raise ValueError("frames, timestamps_ms and indices must have the same length")

    def __len__(self) -> int:
        return len(self.timestamps_ms)

    def __repr__(self) -> str:  # shapes, never pixels: notebooks print everything
        ts = self.timestamps_ms
        span = f"{ts[0]}..{ts[-1]} ms" if len(ts) else "empty"
        return f"FrameBatch({len(self)} frames {self.frames.shape[1]}x{self.frames.shape[2]}, {span})"


def probe(path: str | Path) -> VideoMetadata:
    """Read ``VideoMetadata`` from the container; bad files raise Rekognition errors."""
    av = require("av", "video")
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise InvalidParameterException(
            f"{Path(path).name} is not a readable video file (FFmpeg: {exc}); "
            "give an MP4/MOV (H.264) or another FFmpeg-readable video") from None
    try:
        fmt = container.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise InvalidParameterException(
                f"{Path(path).name} is a still image ({container.format.long_name}), not a video")
        if not container.streams.video:
            raise InvalidParameterException(
                f"{Path(path).name} has no video stream; give a video file")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if stream.average_rate:
            rate = float(stream.average_rate)
        elif stream.guessed_rate:
            rate = float(stream.guessed_rate)
        else:
            rate = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration_ms = int(stream.duration * Fraction(stream.time_base) * 1000)
        elif container.duration is not None:
            duration_ms = int(container.duration / 1000)  # container.duration is in µs
        else:
            duration_ms = 0
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0 or not ctx.name:
            raise InvalidParameterException(
                f"{Path(path).name}: the video stream has no decodable frames (codec "
                f"{ctx.name or 'unknown'}, {width}x{height})")
        # FFmpeg AVCOL_RANGE: 2 = JPEG (full); 1 = MPEG (limited); 0 = unspecified,
        # which decoders treat as limited for YUV video.
        color_range = "FULL" if int(getattr(ctx, "color_range", 0) or 0) == 2 else "LIMITED"
        meta = VideoMetadata(
            codec=ctx.name,
            duration_ms=duration_ms,
            format=container.format.long_name,
            frame_rate=round(rate, 6),
            frame_height=height,
            frame_width=width,
            color_range=color_range,
        )
    finally:
        container.close()
    if meta.duration_ms > MAX_DURATION_MS:
        raise VideoTooLargeException(
            f"Video duration {meta.duration_ms} ms is more than the maximum duration of 6 hours.")
    return meta


def sample_indices(frame_starts_s: np.ndarray, sample_rate: float) -> np.ndarray:
    """Indices of the frames to analyse: the first frame at or after each ``k / sample_rate``."""
    starts = np.asarray(frame_starts_s, dtype=np.float64)
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    step = 1.0 / sample_rate
    targets = np.arange(0.0, starts[-1] + 1e-9, step)
    # A 1 µs tolerance so a frame at exactly k/sample_rate is not missed by rounding.
    idx = np.searchsorted(starts, targets - 1e-6, side="left")
    idx = idx[idx < len(starts)]
    return np.unique(idx).astype(np.int64)


def _import_decord():
    """Import decord without its CUDA preload on CPU-only wheels.

    At import, decord2 dlopens every ``nvidia-*`` pip CUDA library it can find
    (torch's CUDA build installs them) with RTLD_GLOBAL: ~600 MB of RSS and ~1 s,
    for PyPI wheels that cannot decode on the GPU anyway. Hiding the ``nvidia``
    namespace during that import skips the preload; set ``REKOLAB_DECORD_CUDA=1``
    with a CUDA build of decord2 to keep it."""
    import sys

    if "decord" in sys.modules or os.environ.get("REKOLAB_DECORD_CUDA") == "1":
        return require("decord", "video")
    hidden = "nvidia" not in sys.modules
    if hidden:
        sys.modules["nvidia"] = None  # importlib.util.find_spec("nvidia") -> None
    try:
        return require("decord", "video")
    finally:
        if hidden:
            del sys.modules["nvidia"]


def _open_reader(path: Path):
    decord = _import_decord()
    try:
        # One decoding thread by default (the models use the cores); REKOLAB_DECODE_THREADS
        # raises it where decoding is the bound (a GPU machine, docs/performance.md).
        threads = int(os.environ.get("REKOLAB_DECODE_THREADS") or 1)
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
    except Exception as exc:
        raise VideoDecodeError(f"decord could not open the video: {exc}") from None


@dataclass(frozen=True, repr=False)
class DecodePlan:
    """An opened video and the frames chosen for analysis."""

    reader: object
    indices: np.ndarray  # (M,) frame numbers to decode
    timestamps_ms: np.ndarray  # (M,) their PTS in ms

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"DecodePlan({len(self)} sampled frames)"

    def batches(self, batch_size: int = 16, prefetch: int = 2,
                stop: threading.Event | None = None) -> Iterator[FrameBatch]:
        """Yield the sampled frames in batches, decoded on a background thread.

        Errors in the decoder thread are re-raised here as :class:`VideoDecodeError`."""
        return _prefetch(self.reader, self.indices, self.timestamps_ms, batch_size, prefetch, stop)


def plan(path: str | Path, sample_rate: float = DEFAULT_SAMPLE_RATE) -> DecodePlan:
    """Open ``path`` and choose the frames to decode."""
    if not (sample_rate > 0 and math.isfinite(sample_rate)):
        raise ValueError("sample_rate must be a positive number of frames per second")
    reader = _open_reader(Path(path))
    n = len(reader)
    if n == 0:
        raise VideoDecodeError("the video has no frames")
    starts = reader.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64)
    frame_ms = _exact_frame_ms(Path(path), starts)
    indices = sample_indices(frame_ms / 1000.0, sample_rate)
    return DecodePlan(reader, indices, frame_ms[indices])


def _exact_frame_ms(path: Path, decord_starts_s: np.ndarray) -> np.ndarray:
    """Each frame's PTS in whole ms (rounded down) from the first frame.

    decord reports float32 seconds: 16.3 s reads 16.299999 and, at 6 hours, the
    step between float32 values is ~2 ms. So the integer PTS of every video packet
    is read with PyAV's demuxer (no decoding) and used when it agrees with decord's
    index (same count, within 5 ms); otherwise decord's times, rounded to 0.1 ms
    first, are used."""
    av = require("av", "video")
    n = len(decord_starts_s)
    fallback = np.floor(np.round(decord_starts_s * 1000.0, 1)).astype(np.int64)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)
            start = stream.start_time if stream.start_time is not None else (pts[0] if pts else 0)
            time_base = Fraction(stream.time_base)
    except Exception:
        return fallback
    if len(pts) != n:
        return fallback
    # Exact integer arithmetic: (pts - start) * num * 1000 // den.
    ms = np.array([(p - start) * time_base.numerator * 1000 // time_base.denominator for p in pts],
                  dtype=np.int64)
    if np.max(np.abs(ms - decord_starts_s * 1000.0)) > 5:
        return fallback
    return ms


def iter_batches(path: str | Path, sample_rate: float = DEFAULT_SAMPLE_RATE, *,
                 batch_size: int = 16, prefetch: int = 2) -> Iterator[FrameBatch]:
    """Shorthand for ``plan(path, sample_rate).batches(batch_size, prefetch)``."""
    return plan(path, sample_rate).batches(batch_size, prefetch)


_DONE = object()


def _prefetch(reader, indices, timestamps_ms, batch_size, prefetch, stop) -> Iterator[FrameBatch]:
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = stop or threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        # Decoding is the smaller share of a job; at a lower priority it fills the
        # gaps the models leave instead of taking cores from them (Linux: nice
        # applies per thread). Harmless where it is not allowed.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        try:
            for start in range(0, len(indices), batch_size):
                if stop.is_set():
                    return
                idx = indices[start:start + batch_size]
                try:
                    frames = reader.get_batch(idx.tolist()).asnumpy()
                except Exception as exc:
                    raise VideoDecodeError(
                        f"decoding failed at frame {int(idx[0])} "
                        f"({int(timestamps_ms[start])} ms): {exc}") from None
                if frames.shape[0] != len(idx):
                    raise VideoDecodeError(
                        f"the decoder returned {frames.shape[0]} frames for {len(idx)} requested "
                        f"near {int(timestamps_ms[start])} ms: the file is truncated or corrupt")
                nxt = start + batch_size
                if nxt < len(indices):
                    # decord's threaded decoder keeps decoding ahead while the models
                    # work (decord#157) and buffers those frames: a 92 s clip peaked at
                    # 1.5 GB. seek(0) flushes its queues (the next get_batch seeks to
                    # the keyframe it needs), so memory stays bounded by the batch size
                    # for ~3 ms of re-decoding per sampled frame. Not seek(n): decord2
                    # 3.4 then returns frames from the old position (tests/test_video.py);
                    # seek_accurate(n) is exact but does not flush.
                    reader.seek(0)
                batch = FrameBatch(frames=np.ascontiguousarray(frames),
                                   timestamps_ms=timestamps_ms[start:start + batch_size],
                                   indices=idx)
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # forwarded to the consumer
            put(exc)

    thread = threading.Thread(target=work, name="rekolab-decode", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STALL_TIMEOUT_S
        while True:
            try:
                item = q.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set() and not thread.is_alive():
                    return  # stopped from outside (e.g. interpreter exit)
                if time.monotonic() > deadline:
                    raise VideoDecodeError(
                        f"the decoder produced no frame for {STALL_TIMEOUT_S:.0f} s; "
                        "the file is probably truncated or corrupt") from None
                continue
            deadline = time.monotonic() + STALL_TIMEOUT_S
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
