"""Probe a video's metadata and decode sampled frames in batches.

* :func:`probe` (from :mod:`.container`) reads the container with PyAV (FFmpeg) and
  decodes its first frame: ``VideoMetadata`` uses FFmpeg's names, as Rekognition
  shows them (``Format: "QuickTime / MOV"``, ``Codec: "h264"``), and the displayed
  (rotated) frame size.
* :func:`plan` refuses a file that holds fewer frames than its container declares
  (truncated), then opens decord at a bounded resolution (:func:`decode_size`).
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

import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..models import require
from .container import MAX_DURATION_MS, PacketScan, VideoMetadata, probe, scan_packets

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
    "MAX_DECODE_PIXELS",
    "decode_size",
    "check_decodable",
]

log = logging.getLogger("rekolab.video")

DEFAULT_SAMPLE_RATE = 5.0
#: A decoder that produces nothing for this long is declared stalled (decord#373:
#: get_batch can spin forever on files whose frame count is over-reported).
STALL_TIMEOUT_S = float(120)
#: Frames are decoded at most this many pixels (720p's count), scaled with their
#: aspect ratio kept: decord resizes while decoding, so the frames of a 4096x4096
#: video cost what 960x960 ones do and memory stays bounded by the batch size
#: whatever the frame size. The models need less: the face detector runs at 640 px,
#: embeddings on 112 px crops, CLIP at 224 px. Boxes are ratios of the frame, and
#: ``VideoMetadata`` keeps the real size.
MAX_DECODE_PIXELS = 1280 * 720
#: decord2 3.4 returns mis-shaped arrays (4 or 6 "channels") for some output widths
#: under 74 px (16, 24, 48, 72, ...): narrower frames are decoded upscaled to this width.
_MIN_DECODE_WIDTH = 80


class VideoDecodeError(RuntimeError):
    """Decoding failed part-way (truncated or corrupt data); ends the job FAILED."""


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


def decode_size(width: int, height: int) -> tuple[int, int]:
    """The (width, height) frames of a ``width`` x ``height`` (displayed) video are
    decoded at: at most :data:`MAX_DECODE_PIXELS`, at least ``_MIN_DECODE_WIDTH``
    wide, the aspect ratio kept, even sides."""
    scale = min(1.0, math.sqrt(MAX_DECODE_PIXELS / max(width * height, 1)))
    if width * scale < _MIN_DECODE_WIDTH:
        scale = _MIN_DECODE_WIDTH / width
    if scale == 1.0:
        return width, height
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def _open_reader(path: Path, size: tuple[int, int] | None = None):
    """decord's reader for ``path``, decoding at ``size`` (width, height as displayed)."""
    decord = _import_decord()
    width, height = size or (-1, -1)
    try:
        # One decoding thread by default (the models use the cores); REKOLAB_DECODE_THREADS
        # raises it where decoding is the bound (a GPU machine, docs/performance.md).
        threads = int(os.environ.get("REKOLAB_DECODE_THREADS") or 1)
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads, width=width, height=height)
    except Exception as exc:
        log.info("decord could not open %s: %r", path, exc)
        raise VideoDecodeError("the decoder could not open the video (its data is corrupt or in a "
                               "format the decoder does not support)") from None


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


def check_decodable(path: str | Path, metadata: VideoMetadata) -> None:
    """At Start: the frame decoder (decord) must open the file and return its first
    frame at the planned size, or the request is refused in words. (decord cannot
    seek in some containers FFmpeg demuxes, e.g. MPEG-TS.)"""
    from ..errors import InvalidParameterException

    path = Path(path)
    size = decode_size(metadata.frame_width, metadata.frame_height)
    try:
        reader = _open_reader(path, size)
        frame = reader.get_batch([0]).asnumpy()
        del reader
    except Exception as exc:
        log.info("decord cannot decode %s: %r", path, exc)
        frame = None
    if frame is None or frame.shape != (1, size[1], size[0], 3):
        raise InvalidParameterException(
            f"{path.name}: rekolab's frame decoder cannot read this {metadata.format} file "
            f"({metadata.codec}); remux it to MP4, e.g. ffmpeg -i {path.name!r} -c copy out.mp4")


def plan(path: str | Path, sample_rate: float = DEFAULT_SAMPLE_RATE,
         metadata: VideoMetadata | None = None) -> DecodePlan:
    """Open ``path`` and choose the frames to decode.

    Raises :class:`VideoDecodeError` when the file holds less than its container
    declares (see :meth:`PacketScan.missing`): decided from the demuxed packets, so
    the same file gives the same answer on every run."""
    if not (sample_rate > 0 and math.isfinite(sample_rate)):
        raise ValueError("sample_rate must be a positive number of frames per second")
    path = Path(path)
    meta = metadata or probe(path)
    scan = scan_packets(path)
    missing = scan.missing()
    if missing is not None:
        raise VideoDecodeError(missing)
    reader = _open_reader(path, decode_size(meta.frame_width, meta.frame_height))
    n = len(reader)
    if n == 0:
        raise VideoDecodeError("the video has no frames")
    starts = reader.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64)
    frame_ms = _exact_frame_ms(path, starts, scan)
    indices = sample_indices(frame_ms / 1000.0, sample_rate)
    return DecodePlan(reader, indices, frame_ms[indices])


def _exact_frame_ms(path: Path, decord_starts_s: np.ndarray, scan: PacketScan | None = None) -> np.ndarray:
    """Each frame's PTS in whole ms (rounded down) from the first frame.

    decord reports float32 seconds: 16.3 s reads 16.299999 and, at 6 hours, the
    step between float32 values is ~2 ms. So the integer PTS of every video packet
    is read with PyAV's demuxer (no decoding) and used when it agrees with decord's
    index (same count, within 5 ms); otherwise decord's times, rounded to 0.1 ms
    first, are used."""
    n = len(decord_starts_s)
    fallback = np.floor(np.round(decord_starts_s * 1000.0, 1)).astype(np.int64)
    if scan is None:
        try:
            scan = scan_packets(path)
        except Exception:
            return fallback
    if len(scan.pts) != n:
        return fallback
    ms = np.array(scan.ms(), dtype=np.int64)
    if n and np.max(np.abs(ms - decord_starts_s * 1000.0)) > 5:
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
                span = timestamps_ms[start:start + batch_size]
                where = (f"{int(span[0])} ms" if len(span) == 1
                         else f"the frames between {int(span[0])} and {int(span[-1])} ms")
                try:
                    frames = reader.get_batch(idx.tolist()).asnumpy()
                except Exception as exc:
                    log.info("decord failed near %s: %r", where, exc)
                    raise VideoDecodeError(
                        f"the video could not be decoded at {where}: its data is corrupt or "
                        "cut off there") from None
                if frames.shape[0] != len(idx) or frames.ndim != 4 or frames.shape[-1] != 3:
                    raise VideoDecodeError(
                        f"the decoder returned {tuple(frames.shape)} for {len(idx)} frames near "
                        f"{where}: the file is truncated or corrupt there")
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
