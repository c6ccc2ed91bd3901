"""Probe a video's metadata and decode sampled frames in batches.

* :func:`probe` (from :mod:`.container`) reads the container with PyAV (FFmpeg) and
  decodes its first frame: ``VideoMetadata`` uses FFmpeg's names, as Rekognition
  shows them (``Format: "QuickTime / MOV"``, ``Codec: "h264"``), and the displayed
  (rotated) frame size.
* :func:`plan` refuses a file that holds fewer frames than its container declares
  (truncated) and chooses the sampled frames from the packets' PTS.
* :meth:`DecodePlan.batches` (and :func:`iter_batches`) decode them with FFmpeg
  (PyAV) in one sequential pass on a background prefetch thread, yielding
  :class:`FrameBatch` objects of at most ``batch_size`` frames at a bounded
  resolution (:func:`decode_size`); at most ``prefetch`` batches wait in the queue,
  so memory is bounded by the batch size, not by the video's length.

**The decoder.** Frames are found by PTS in one pass of FFmpeg's decoder that never
seeks back (a segment of the plan, :meth:`DecodePlan.part`, seeks once, to the
keyframe before its first frame; frames before a file's first keyframe are not
sampled, they cannot be decoded). Frames between samples are decoded only where
later frames refer to them: a non-reference frame that is not sampled (most
B-frames) is skipped by the decoder, and only sampled frames are converted to RGB,
by FFmpeg's filter graph (turned as displayed, ``scale`` bicubic in YUV,
``format=rgb24``). The pixels are decord2's for the same request (decord2 decoded
here before; tests/test_video.py compares the two), at about half its CPU on the
10x Hamilton clip (2.4 against 4.4 CPU-s): decord re-decoded from the keyframe for
every batch, the flush that kept its read-ahead buffers from growing with the
video (decord#157).

**Timestamps** are each frame's presentation time (PTS) in milliseconds, relative
to the video stream's start (like OpenCV's ``CAP_PROP_POS_MSEC``), rounded down —
never ``index / fps``. They are computed in integers from the packets' PTS and
time base (float32 seconds, decord's, would lose ~2 ms of precision at 6 hours).

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
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..models import require
from .container import MAX_DURATION_MS, VideoMetadata, next_placed, out_of_order_message, probe, scan_packets

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
    "first_decodable",
    "sampled_frames",
]

log = logging.getLogger("rekolab.video")

DEFAULT_SAMPLE_RATE = 5.0
#: A decoder that reads no packet for this long is declared stalled (the decoder
#: thread beats once per packet, so a long gap between sampled frames is not a stall).
STALL_TIMEOUT_S = float(120)
#: Sampled frames are converted to at most this many pixels (720p's count), scaled
#: with their aspect ratio kept by FFmpeg's scale filter, so memory stays bounded by
#: the batch size whatever the frame size (the decoder itself holds its reference
#: frames at full size). The models need less: the face detector runs at 640 px,
#: embeddings on 112 px crops, CLIP at 224 px. Boxes are ratios of the frame, and
#: ``VideoMetadata`` keeps the real size.
MAX_DECODE_PIXELS = 1280 * 720
#: Narrower frames are decoded upscaled to this width. (decord2 3.4, the decoder before
#: PyAV, mis-shaped some output widths under 74 px; kept so results stay the same.)
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


@dataclass(frozen=True, repr=False)
class DecodePlan:
    """A video and the frames chosen for analysis: frame numbers (presentation order),
    their PTS in ms, and the stream PTS each is found by while decoding."""

    path: Path
    indices: np.ndarray  # (M,) frame numbers to decode
    timestamps_ms: np.ndarray  # (M,) their PTS in ms
    pts: np.ndarray  # (M,) their PTS in the stream's time base
    size: tuple[int, int]  # (width, height) frames are returned at, as displayed
    keyframes: tuple = ()  # (pts, dts) of the keyframes, by pts (PacketScan.keyframes)
    placed: tuple = ()  # the times given to frames that carry none (PacketScan.placed)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"DecodePlan({len(self)} sampled frames)"

    def part(self, start: int, end: int) -> "DecodePlan":
        """The sampled frames ``start:end`` of this plan (a segment of the video)."""
        return replace(self, indices=self.indices[start:end], timestamps_ms=self.timestamps_ms[start:end],
                       pts=self.pts[start:end])

    def batches(self, batch_size: int = 16, prefetch: int = 2,
                stop: threading.Event | None = None) -> Iterator[FrameBatch]:
        """Yield the sampled frames in batches, decoded on a background thread.

        Errors in the decoder thread are re-raised here as :class:`VideoDecodeError`."""
        return _prefetch(self, batch_size, prefetch, stop)


def check_decodable(path: str | Path, metadata: VideoMetadata) -> None:
    """At Start: the frame decoder must return the first frame at the planned size, or
    the request is refused in words."""
    from ..errors import InvalidParameterException

    path = Path(path)
    size = decode_size(metadata.frame_width, metadata.frame_height)
    frame = None
    try:
        av = require("av", "video")
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for decoded in container.decode(stream):
                frame = _Converter(size)(decoded)
                break
    except Exception as exc:
        log.info("cannot decode %s: %r", path, exc)
        frame = None
    if frame is None or frame.shape != (size[1], size[0], 3):
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
    if not scan.pts:
        raise VideoDecodeError("the video has no frames")
    frame_ms = np.asarray(scan.ms(), dtype=np.int64)
    pts = np.asarray(scan.pts, dtype=np.int64)
    # Of frames sharing a time (Matroska stores whole ms: above 1000 fps two frames can), the
    # first is sampled (searchsorted's left side), and the decoder lets the first stand.
    indices = sampled_frames(frame_ms, first_decodable(pts, scan.keyframes), sample_rate)
    return DecodePlan(path, indices, frame_ms[indices], pts[indices],
                      decode_size(meta.frame_width, meta.frame_height), scan.keyframes, scan.placed)


def first_decodable(pts: np.ndarray, keyframes) -> int:
    """The number of the first frame that can be decoded (``pts``: every frame's, sorted;
    ``keyframes``: ``PacketScan.keyframes``). Frames before the first keyframe (a recording
    cut mid-GOP, common in MPEG-TS) cannot be; their frame numbers stay."""
    first = int(np.searchsorted(pts, keyframes[0][0])) if keyframes else 0
    if first >= len(pts):
        raise VideoDecodeError("the video has no keyframe to start decoding from")
    return first


def sampled_frames(frame_ms: np.ndarray, first: int, sample_rate: float) -> np.ndarray:
    """The frame numbers a job analyses: :func:`sample_indices` from the first decodable frame."""
    return first + sample_indices(np.asarray(frame_ms[first:]) / 1000.0, sample_rate)


def iter_batches(path: str | Path, sample_rate: float = DEFAULT_SAMPLE_RATE, *,
                 batch_size: int = 16, prefetch: int = 2) -> Iterator[FrameBatch]:
    """Shorthand for ``plan(path, sample_rate).batches(batch_size, prefetch)``."""
    return plan(path, sample_rate).batches(batch_size, prefetch)


_DONE = object()


#: FFmpeg filters that turn a stored picture as a container's rotation says it is shown.
_TURN = {0: [], 90: [("transpose", "cclock")], 180: [("hflip", ""), ("vflip", "")], 270: [("transpose", "clock")]}


class _Converter:
    """Decoded frames to (H, W, 3) uint8 RGB at ``size`` (width, height as displayed),
    turned as the container says they are shown (the frame's ``rotation``: degrees
    counter-clockwise, from the stream's display matrix).

    FFmpeg's filter graph does it, as decord2 did before (same pixels, checked in
    tests/test_video.py): turn (``transpose``/flips), ``scale=W:H`` (bicubic, in
    YUV), then ``format=rgb24``; one thread, the models have the cores. The graph is
    rebuilt only when the decoded size or pixel format changes."""

    def __init__(self, size: tuple[int, int]):
        self.size = size
        self._graph = None
        self._key = None

    def __call__(self, frame) -> np.ndarray:
        rotation = int(getattr(frame, "rotation", 0) or 0) % 360
        key = (frame.width, frame.height, frame.format.name, rotation)
        if key != self._key:
            av = require("av", "video")
            graph = av.filter.Graph()
            chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                      time_base=Fraction(1, 1000))]
            for name, args in [*_TURN.get(rotation, []), ("scale", f"{self.size[0]}:{self.size[1]}"), ("format", "rgb24")]:
                chain.append(graph.add(name, args) if args else graph.add(name))
            chain.append(graph.add("buffersink"))
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
            self._graph, self._key = graph, key
        self._graph.push(frame)
        return self._graph.pull().to_ndarray()


def _decode_threads() -> int:
    # One decoding thread by default (the models use the cores); REKOLAB_DECODE_THREADS
    # raises it where decoding is the bound (a GPU machine, docs/performance.md).
    return max(1, int(os.environ.get("REKOLAB_DECODE_THREADS") or 1))


def _decode_sampled(plan: DecodePlan, stop: threading.Event, beat=None,
                    convert=None) -> Iterator[tuple[int, np.ndarray]]:
    """``(k, rgb)`` for each sampled frame ``k`` of ``plan``, in order: one sequential
    pass of FFmpeg's decoder (PyAV) from the keyframe before the first sampled frame.
    ``convert`` turns each sampled ``av.VideoFrame`` into what is yielded (default: RGB at
    ``plan.size``, :class:`_Converter`).

    A frame is found by its PTS. Frames between samples must still be decoded where
    later frames refer to them, but a non-reference frame that is not sampled (most
    B-frames) is skipped by the decoder (``skip_frame=NONREF``, set per packet, but
    never for the first packet: libdav1d, FFmpeg's AV1 decoder, reads ``skip_frame`` once,
    when it opens, and would then drop every non-reference frame of the video), and only
    sampled frames are converted to RGB. ``beat()`` is called for every packet read.
    Raises :class:`VideoDecodeError` when decoding fails, a sampled frame never comes out,
    or frames come out of presentation order (an AVI with B-frames, whose packet times are
    in decode order)."""
    if len(plan) == 0:
        return
    convert = convert or _Converter(plan.size)
    for target in _seek_targets(plan):
        landed = yield from _decode_from(plan, stop, beat, target, convert)
        if landed:
            return


def _seek_targets(plan: DecodePlan) -> list:
    """Where to start decoding a plan: ``None`` (the stream's start) when the plan starts
    at the first decodable frame, else the keyframe at or before its first frame.

    A target is ``(timestamp, exact)``. First that keyframe's PTS, which must land on the
    keyframe itself (``exact``): MP4 and Matroska seek there by PTS, while a seek to its DTS
    lands one keyframe early (a whole GOP decoded for nothing). Then its DTS (FFmpeg's seek
    in an index-less container such as MPEG-TS searches by DTS; by PTS it lands late), then
    the DTS of the two keyframes before it, then the start, for seeks that land past it."""
    first = int(plan.pts[0])
    starts = [(pts, dts) for pts, dts in plan.keyframes if pts <= first]
    if len(starts) <= 1:
        return [None]
    return [(starts[-1][0], True), *[(dts, False) for _, dts in starts[::-1][:3]], None]


def _decode_from(plan: DecodePlan, stop: threading.Event, beat, target, convert):
    """The sampled frames decoded from ``target`` (see :func:`_seek_targets`; None for the
    start); returns False when a seek landed past the first sampled frame, or an exact one
    elsewhere than its keyframe (nothing yielded then), True otherwise."""
    av = require("av", "video")
    want = {int(p): k for k, p in enumerate(plan.pts.tolist())}
    first, n = int(plan.pts[0]), len(want)
    k_next, last_pts, first_packet, dropped = 0, None, True, None
    try:
        with av.open(str(plan.path)) as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            threads = _decode_threads()
            ctx.thread_count = threads
            if threads > 1:
                stream.thread_type = "AUTO"
            exact = False
            if target is not None:
                at, exact = target
                try:
                    container.seek(int(at), stream=stream, backward=True)
                except av.error.FFmpegError as exc:  # not seekable: the next target
                    log.info("seeking %s failed: %r", plan.path, exc)
                    return False
            for packet in container.demux(stream):
                if stop.is_set():
                    return True
                if exact:
                    if not (packet.is_keyframe and packet.pts == at):
                        return False
                    exact = False
                if beat is not None:
                    beat()
                skip = not first_packet and packet.pts is not None and packet.pts not in want
                ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                first_packet = False
                for frame in packet.decode():
                    pts = frame.pts
                    if pts is None:  # a frame without a time of its own: the next hole it fills
                        pts = next_placed(plan.placed, last_pts)
                        if pts is None:
                            continue
                    if target is not None and k_next == 0 and pts > first:
                        return False  # the seek landed past the first sampled frame
                    if last_pts is not None and pts <= last_pts:
                        if pts == last_pts:  # Matroska's whole ms above 1000 fps: the first stands
                            continue
                        raise VideoDecodeError(out_of_order_message())
                    if dropped is not None:
                        # A time going back above says decode-order times; the next keyframe
                        # (past any reordering) without one says the frame was dropped.
                        if frame.key_frame:
                            raise VideoDecodeError(dropped)
                        last_pts = pts
                        continue
                    last_pts = pts
                    k = want.get(pts)
                    if k is None:
                        continue
                    if k > k_next:  # the decoder dropped a sampled frame, or times are in decode
                        # order (AVI with B-frames): the next frame's time tells which
                        dropped = (f"the decoder returned no frame at {_where(plan, k_next)}: the file "
                                   "is corrupt there")
                        continue
                    yield k, convert(frame)
                    k_next += 1
                    if k_next == n:
                        return True
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.info("decoding %s failed near frame %d: %r", plan.path, k_next, exc)
        raise VideoDecodeError(
            f"the video could not be decoded at {_where(plan, k_next)}: its data is corrupt or "
            "cut off there") from None
    if dropped is not None:
        raise VideoDecodeError(dropped)
    if k_next == 0 and target is not None:
        return False  # nothing came out after the seek
    raise VideoDecodeError(
        f"the decoder returned no frame at {_where(plan, k_next)}: the file is truncated or "
        "corrupt there")


def _where(plan: DecodePlan, k: int) -> str:
    return f"{int(plan.timestamps_ms[min(k, len(plan) - 1)])} ms" if len(plan) else "its start"


def _prefetch(plan: DecodePlan, batch_size: int, prefetch: int, stop) -> Iterator[FrameBatch]:
    def produce(stop, beat):
        frames, start = [], 0
        for k, rgb in _decode_sampled(plan, stop, beat):
            frames.append(rgb)
            if len(frames) == batch_size or k == len(plan) - 1:
                end = start + len(frames)
                yield FrameBatch(frames=np.stack(frames), timestamps_ms=plan.timestamps_ms[start:end],
                                 indices=plan.indices[start:end])
                frames, start = [], end

    return prefetched(produce, prefetch, stop, nice=True)


def prefetched(produce, prefetch: int = 2, stop: threading.Event | None = None, *, nice: bool = False,
               name: str = "rekolab-decode") -> Iterator[FrameBatch]:
    """The batches of ``produce(stop, beat)`` (a generator), made on a background thread
    while the caller analyses the previous ones: at most ``prefetch`` batches wait.

    ``produce`` calls ``beat()`` for every packet it reads; when the consumer has waited
    :data:`STALL_TIMEOUT_S` with no beat it raises :class:`VideoDecodeError` (a decoder
    stuck on a bad file). Errors in ``produce`` are re-raised here. ``nice``: decode at
    a lower priority (Linux, per thread), so the decoder fills the gaps the models leave
    instead of taking cores from them."""
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

    alive = [time.monotonic()]  # the decoder thread's last packet

    def beat():
        alive[0] = time.monotonic()

    def work():
        if nice:  # harmless where it is not allowed
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            except (AttributeError, OSError):
                pass
        try:
            for batch in produce(stop, beat):
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # forwarded to the consumer
            put(exc)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.2)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    if stop.is_set():
                        return  # stopped from outside (e.g. interpreter exit)
                    raise VideoDecodeError("the decoder stopped before the end of the video")
                if time.monotonic() > alive[0] + STALL_TIMEOUT_S:
                    raise VideoDecodeError(
                        f"the decoder read nothing for {STALL_TIMEOUT_S:.0f} s; "
                        "the file is probably truncated or corrupt") from None
                continue
            beat()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
