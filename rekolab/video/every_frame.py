"""Decode EVERY frame of a video, in order, with exact PTS (PyAV, sequential).

Sampled decoding (:mod:`rekolab.video.decode`) decodes only what its sampled frames
need; frame-accurate analyses (segment detection, the shot detector of
:mod:`rekolab.analysis.shots`) need every frame instead, and the cheapest way to
get them is one sequential pass of FFmpeg's decoder, never seeking.

:func:`every_frame_plan` returns an object with the same interface the job loop
uses for a :class:`~rekolab.video.decode.DecodePlan` (``len(plan)`` and
``plan.batches(batch_size, prefetch, stop)`` yielding :class:`FrameBatch`,
decoded on a background thread), so an
analyzer can ask for it (``decode_plan(path)``) without a second job machinery.

* ``indices`` are 0-based frame numbers in presentation order (as the sampled decoder's);
* ``timestamps_ms`` are each frame's PTS in whole ms from the stream's start
  time, rounded down, computed in integers from the frame's PTS and time base;
* a frame that carries no time of its own (MPEG-TS) gets the time of the
  one-frame hole the others leave (:func:`~rekolab.video.container.placed_untimed`,
  as the sampled decoder does); where the holes do not account for them, the file is refused;
* frames are RGB uint8, scaled by FFmpeg's swscale to at most ``max_width``
  pixels wide (aspect kept, even sizes), so memory stays bounded by the batch;
  FFmpeg decodes with frame threads and swscale converts on the decode thread
  alone (``reformat(threads=1)``): its slice threads (``threads=0``) give the same
  pixels but cost a third more CPU, which the analysis thread needs (measured on
  2 cores: 0.40 against 0.55 CPU-s for the Hamilton clip's decode);
* a file that decodes fewer frames than its container promises (truncated or
  corrupt), whose frame times start again (streams joined end to end) or go back
  (decode-order times: an AVI with B-frames), or that holds a second MP4/MOV file
  after the first (``cat a.mp4 b.mp4``), raises
  :class:`~rekolab.video.decode.VideoDecodeError`: a job never succeeds with part of
  its video missing.
"""
from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..models import require
from .container import (RestartWatch, UntimedFrames, joined_files, next_placed, out_of_order_message, restart_message,
                        untimed_message)
from .decode import FrameBatch, VideoDecodeError, prefetched

__all__ = ["EveryFramePlan", "every_frame_plan", "scaled_size"]


def scaled_size(width: int, height: int, max_width: int | None) -> tuple[int, int]:
    """(width, height) scaled down to at most ``max_width`` wide, both even."""
    if max_width and width > max_width:
        height = int(round(height * max_width / width))
        width = max_width
    return max(2, width - width % 2), max(2, height - height % 2)


class EveryFramePlan:
    """Every frame of ``path``; ``len()`` is the number of video packets (frames)."""

    def __init__(self, path: str | Path, max_width: int | None = 640, container=None):
        """``container``: ``path`` already opened with PyAV (its packets are read
        here, so it is spent afterwards), to spare a caller that reads other
        streams' headers a second open; by default the file is opened here."""
        av = require("av", "video")
        self.path = Path(path)
        self.max_width = max_width
        try:
            if container is None:
                with av.open(str(self.path)) as opened:
                    self._count_packets(opened)
            else:
                self._count_packets(container)
        except Exception as exc:
            raise VideoDecodeError(f"cannot read the video's packets: {exc}") from None
        if self.count == 0:
            raise VideoDecodeError("the video has no frames")
        if self._joined is not None:
            raise VideoDecodeError(self._joined)
        if self._placed is None:
            raise VideoDecodeError(untimed_message(self.untimed, self.count))

    def _count_packets(self, container) -> None:
        stream = container.streams.video[0]
        self.declared_frames = int(stream.frames or 0)
        self.width, self.height = scaled_size(stream.codec_context.width, stream.codec_context.height,
                                              self.max_width)
        self._stored = (self.width, self.height)  # until the first frame says it is rotated
        self.count, timed, untimed = 0, [], UntimedFrames()
        for p in container.demux(stream):
            if p.size:
                self.count += 1
                if not p.is_corrupt and untimed.add(p):  # corrupt ones: as scan_packets counts them
                    timed.append(p.pts)
        self.untimed = untimed.count
        # The times of the frames that carry none, from the holes they leave (None: unplaceable).
        self._placed = untimed.placed(sorted(timed), container)
        self._joined = joined_files(self.path, container, stream)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"EveryFramePlan({self.count} frames at {self.width}x{self.height})"

    def frames(self, stop: threading.Event | None = None, beat=None) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(frame_number, pts_ms, rgb)`` for every frame, in presentation order;
        ``beat()`` is called for every packet read."""
        av = require("av", "video")
        n = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                tb = Fraction(stream.time_base)
                # swscale on this thread (see the module docstring).
                sws = {"threads": 1}
                start, watch, last_pts = stream.start_time, RestartWatch(1000), None
                for frame in _decoded(container, stream, beat):
                    if stop is not None and stop.is_set():
                        return
                    pts = frame.pts
                    if pts is None:  # a frame without a time of its own: the next hole it fills
                        pts = next_placed(self._placed, last_pts)
                    timed = pts is not None
                    if not timed and self.untimed:  # before the first timed frame: nowhere to go
                        raise VideoDecodeError(untimed_message(self.untimed, self.count))
                    if not timed:
                        pts = frame.dts
                    if start is None:
                        start = pts or 0
                    ms = (pts - start) * tb.numerator * 1000 // tb.denominator if pts is not None else 0
                    if timed:
                        if watch.starts_again(ms, frame.key_frame):
                            raise VideoDecodeError(restart_message(watch.latest))
                        # Frames come out in presentation order: a time that goes back is a
                        # container that stores decode-order times (AVI with B-frames), or a
                        # second stream starting less than a second before the first ends.
                        # (MPEG-PS splits a packet in two with one time: equal times are not refused.)
                        if last_pts is not None and pts < last_pts:
                            raise VideoDecodeError(out_of_order_message())
                        last_pts = pts
                    if n == 0:
                        self._orient(frame)
                    try:
                        rgb = frame.to_ndarray(format="rgb24", width=self._stored[0], height=self._stored[1], **sws)
                    except TypeError:  # PyAV before reformat(threads=...)
                        sws = {}
                        rgb = frame.to_ndarray(format="rgb24", width=self._stored[0], height=self._stored[1])
                    yield n, int(ms), self._displayed(rgb)
                    n += 1
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError(f"decoding failed at frame {n}: {exc}") from None
        expected = max(self.count, self.declared_frames)
        if n < expected:
            raise VideoDecodeError(
                f"the decoder returned {n} frames but the file promises {expected}: "
                "the file is truncated or corrupt")

    def _orient(self, frame) -> None:
        """Read the container's rotation (display matrix) off the first frame, as the
        sampled decoder and the probe do, and size the output as displayed: the
        ``max_width`` bound applies to the displayed width, and ``width``/``height``
        become the displayed frame's."""
        self.rotation = int(getattr(frame, "rotation", 0) or 0) % 360
        if self.rotation in (90, 270):
            w, h = scaled_size(int(frame.height), int(frame.width), self.max_width)  # displayed
            self.width, self.height = w, h
            self._stored = (h, w)
        else:
            self._stored = (self.width, self.height)

    def _displayed(self, rgb: np.ndarray) -> np.ndarray:
        """THE one place where a frame is turned as the container says it is shown:
        ``rotation`` degrees counter-clockwise (``np.rot90``), as the sampled decoder
        turns its frames, so boxes and sizes are the displayed frame's."""
        k = getattr(self, "rotation", 0) // 90
        return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb

    def batches(self, batch_size: int = 16, prefetch: int = 2,
                stop: threading.Event | None = None) -> Iterator[FrameBatch]:
        """Every frame in :class:`FrameBatch` es of at most ``batch_size`` frames,
        decoded on a background thread (at most ``prefetch`` batches wait), so
        decoding overlaps the analysis; decoder errors are re-raised here, and a
        decoder that reads nothing for ``STALL_TIMEOUT_S`` fails as the sampled one does."""
        def produce(stop, beat):
            buf = []
            for item in self.frames(stop, beat):
                buf.append(item)
                if len(buf) == batch_size:
                    yield _batch(buf)
                    buf = []
            if buf:
                yield _batch(buf)

        return prefetched(produce, prefetch, stop, name="rekolab-decode-all")


def _decoded(container, stream, beat):
    """``container.decode(stream)``, calling ``beat()`` for every packet read."""
    for packet in container.demux(stream):
        if beat is not None:
            beat()
        yield from packet.decode()


def _batch(items) -> FrameBatch:
    return FrameBatch(frames=np.stack([rgb for _, _, rgb in items]),
                      timestamps_ms=np.asarray([ms for _, ms, _ in items], np.int64),
                      indices=np.asarray([n for n, _, _ in items], np.int64))


def every_frame_plan(path: str | Path, max_width: int | None = 640, container=None) -> EveryFramePlan:
    """Open ``path`` for a sequential every-frame decode (see the module docstring)."""
    return EveryFramePlan(path, max_width, container)
