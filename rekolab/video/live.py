"""Frame sources for stream processors: what stands in for a Kinesis video stream.

:func:`open_source` turns a *source spec* into a :class:`FrameSource`:

=====================================  ==========================================  =====
spec                                   source                                      live
=====================================  ==========================================  =====
``"clip.mp4"`` (any FFmpeg-readable     :class:`FileSource` (PyAV): exact PTS,      no
file), ``Path``                         seekable; rekolab paces it at its native
                                        rate unless ``realtime=False``
``"http://…"``, ``"https://…"``         :class:`FileSource` over HTTP (PyAV)        no
``"rtsp://…"``, ``rtsps``, ``rtmp``,    :class:`UrlSource` (PyAV; RTSP over TCP)    yes
``srt``, ``udp``, ``tcp``
``0``, ``"camera:0"``                   :class:`CameraSource` (OpenCV               yes
                                        ``VideoCapture``)
any iterable / async iterable           :class:`IterableSource`                     yes
``FrameSource`` instance                itself                                      —
=====================================  ==========================================  =====

Items of an iterable source are ``HxWx3`` uint8 **BGR** arrays (OpenCV's order; a
``HxW`` gray array is accepted too), or ``(array, pts_seconds)`` pairs when the
producer knows each frame's presentation time. Without a time, a frame's time is
when it arrived (wall clock since the first frame), as for a camera.

Every source reports frames as :class:`SourceFrame` with ``pts_s``, seconds from the
source's **origin**: the Unix time of PTS 0, used for Kinesis ProducerTimestamps.

* File: the container's ``creation_time`` tag when it has one, else the file's
  modification time. Fixed for a file, so ProducerTimestamps and fragment numbers
  are the same in every session and a StartSelector can seek into the file.
* Live sources (camera, RTSP, iterators) and HTTP: the wall-clock time when the
  first frame arrived in this session.

Heavy libraries (PyAV, OpenCV) load only when a source is opened.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..models import require

__all__ = ["SourceFrame", "FrameSource", "FileSource", "UrlSource", "CameraSource",
           "IterableSource", "SourceError", "open_source", "describe_source", "is_persistable",
           "LIVE_SCHEMES"]

#: URL schemes read as live streams (no pacing, no seeking).
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp", "rtp")
_FILE_SCHEMES = ("http", "https", "file")
#: Seconds to wait for a network source to open or to deliver the next packet.
NETWORK_TIMEOUT_S = 15.0


class SourceError(RuntimeError):
    """The source could not be opened or read; ends the session FAILED."""


@dataclass(frozen=True, repr=False)
class SourceFrame:
    """One frame from a source. ``image()`` decodes/converts it on demand (BGR uint8),
    so frames that sampling skips cost no conversion."""

    pts_s: float  # presentation time, seconds from the source's origin
    received: float  # wall-clock Unix time when rekolab got the frame
    _image: Any  # np.ndarray, or a zero-argument callable returning one

    def image(self) -> np.ndarray:
        img = self._image() if callable(self._image) else self._image
        return _as_bgr(img)

    def __repr__(self) -> str:
        return f"SourceFrame(pts={self.pts_s:.3f}s)"


def _as_bgr(img: Any) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise SourceError(f"frames must be uint8 arrays, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise SourceError(f"frames must be HxWx3 uint8 BGR arrays, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class FrameSource:
    """Base class: ``open()``, then ``frames(start_s)``, then ``close()``.

    ``live`` sources deliver frames in real time by themselves; the others (files)
    are paced by the stream processor when it runs in real time. ``origin`` is the
    Unix time of PTS 0 (set by ``open()`` for files, at the first frame for live
    sources). ``duration_s`` is known for files, else None."""

    live: bool = True
    seekable: bool = False
    origin: float | None = None
    duration_s: float | None = None

    def open(self) -> None:  # pragma: no cover - trivial default
        pass

    def frames(self, start_s: float = 0.0, stop: threading.Event | None = None) -> Iterator[SourceFrame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__


# -- PyAV-backed sources -------------------------------------------------------------------------
class _AvSource(FrameSource):
    def __init__(self, target: str, options: dict | None = None):
        self.target = target
        self.options = options or {}
        self._container = None
        self._stream = None

    def describe(self) -> str:
        return self.target

    def _open_container(self):
        av = require("av", "video")
        try:
            container = av.open(self.target, options=self.options,
                                timeout=(NETWORK_TIMEOUT_S, NETWORK_TIMEOUT_S))
        except Exception as exc:
            raise SourceError(f"cannot open {self.target}: {exc}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.target} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        self._container, self._stream = container, stream
        return container, stream

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None

    def _decode(self, stop: threading.Event | None) -> Iterator[Any]:
        try:
            for frame in self._container.decode(self._stream):
                if stop is not None and stop.is_set():
                    return
                yield frame
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"reading {self.target} failed: {exc}") from None


class FileSource(_AvSource):
    """A video file (or an HTTP(S) URL of one), decoded with PyAV.

    PTS are exact (the stream's start time subtracted, as for stored-video jobs);
    ``frames(start_s)`` seeks to the keyframe before ``start_s`` and decodes forward."""

    live = False
    seekable = True

    def __init__(self, path: str | os.PathLike):
        target = os.fspath(path)
        self.is_url = target.split("://", 1)[0].lower() in _FILE_SCHEMES and "://" in target
        if not self.is_url:
            p = Path(target).expanduser()
            if not p.exists():
                raise SourceError(f"video file not found: {p}")
            if not p.is_file():
                raise SourceError(f"{p} is not a file")
            target = str(p)
        super().__init__(target)

    def open(self) -> None:
        container, stream = self._open_container()
        self._time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        self._start_pts = stream.start_time or 0
        if stream.duration is not None:
            self.duration_s = float(stream.duration * self._time_base)
        elif container.duration is not None:
            self.duration_s = container.duration / 1e6
        self.origin = _file_origin(container, None if self.is_url else self.target)

    def frames(self, start_s: float = 0.0, stop: threading.Event | None = None) -> Iterator[SourceFrame]:
        stream = self._stream
        if start_s > 0:
            try:
                self._container.seek(int(start_s / self._time_base) + self._start_pts, stream=stream,
                                     backward=True, any_frame=False)
            except Exception as exc:
                raise SourceError(f"cannot seek {self.target} to {start_s:.3f} s: {exc}") from None
        for frame in self._decode(stop):
            if frame.pts is None:
                continue
            pts_s = float((frame.pts - self._start_pts) * self._time_base)
            if pts_s < start_s - 1e-6:
                continue
            yield SourceFrame(pts_s, time.time(), _converter(frame))


class UrlSource(_AvSource):
    """A live network stream (RTSP, RTMP, SRT, UDP...) through FFmpeg (PyAV).

    RTSP is read over TCP. PTS are taken relative to the first frame; the origin is
    the wall-clock time of the first frame."""

    live = True

    def __init__(self, url: str):
        scheme = url.split("://", 1)[0].lower()
        options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
        super().__init__(url, options)

    def open(self) -> None:
        self._open_container()

    def frames(self, start_s: float = 0.0, stop: threading.Event | None = None) -> Iterator[SourceFrame]:
        tb = Fraction(self._stream.time_base) if self._stream.time_base else None
        first_pts = None
        first_wall = None
        for frame in self._decode(stop):
            now = time.time()
            if first_wall is None:
                first_wall = now
                self.origin = now
            if frame.pts is not None and tb is not None:
                if first_pts is None:
                    first_pts = frame.pts
                pts_s = float((frame.pts - first_pts) * tb)
            else:
                pts_s = now - first_wall
            yield SourceFrame(pts_s, now, _converter(frame))


def _converter(frame) -> Callable[[], np.ndarray]:
    return lambda: frame.to_ndarray(format="bgr24")


def _file_origin(container, path: str | None) -> float:
    """Unix time of PTS 0: the ``creation_time`` tag, else the file's mtime, else now."""
    for meta in (container.metadata, container.streams.video[0].metadata):
        value = (meta or {}).get("creation_time")
        if value:
            try:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                if stamp > 0:
                    return round(stamp, 3)
            except ValueError:
                pass
    if path is not None:
        return round(os.stat(path).st_mtime, 3)
    return round(time.time(), 3)


# -- camera --------------------------------------------------------------------------------------
class CameraSource(FrameSource):
    """A local camera through OpenCV's ``VideoCapture(index)``.

    Frame times are wall-clock times since the first frame (camera drivers' own
    position counters are unreliable)."""

    live = True

    def __init__(self, index: int):
        self.index = int(index)
        self._cap = None

    def describe(self) -> str:
        return f"camera:{self.index}"

    def open(self) -> None:
        cv2 = require("cv2", "video")
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera {self.index} (OpenCV VideoCapture)")
        self._cap = cap

    def frames(self, start_s: float = 0.0, stop: threading.Event | None = None) -> Iterator[SourceFrame]:
        first = None
        while stop is None or not stop.is_set():
            ok, img = self._cap.read()
            now = time.time()
            if not ok:
                if first is None:
                    raise SourceError(f"camera {self.index} delivered no frame")
                return
            if first is None:
                first = now
                self.origin = now
            yield SourceFrame(now - first, now, img)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# -- iterables -----------------------------------------------------------------------------------
class IterableSource(FrameSource):
    """Frames from any iterable or async iterable (consumed once).

    Items: BGR ``HxWx3`` uint8 arrays, or ``(array, pts_seconds)``. An async
    iterable is driven on ``loop`` (the event loop that was running when the
    session started, e.g. the notebook's) or, without one, on a private loop."""

    live = True

    def __init__(self, iterable: Any, loop: asyncio.AbstractEventLoop | None = None):
        self.iterable = iterable
        self.loop = loop
        self.is_async = hasattr(iterable, "__aiter__") or hasattr(iterable, "__anext__")

    def describe(self) -> str:
        return f"<{'async ' if self.is_async else ''}iterable {type(self.iterable).__name__}>"

    def _items(self, stop: threading.Event | None) -> Iterator[Any]:
        if not self.is_async:
            yield from iter(self.iterable)
            return
        agen = self.iterable.__aiter__() if hasattr(self.iterable, "__aiter__") else self.iterable
        loop = self.loop
        private = None
        if loop is None or loop.is_closed() or not loop.is_running():
            private = asyncio.new_event_loop()
        try:
            while stop is None or not stop.is_set():
                try:
                    if private is not None:
                        item = private.run_until_complete(agen.__anext__())
                    else:
                        future = asyncio.run_coroutine_threadsafe(agen.__anext__(), loop)
                        item = _wait_future(future, stop)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if private is not None:
                private.close()

    def frames(self, start_s: float = 0.0, stop: threading.Event | None = None) -> Iterator[SourceFrame]:
        first_wall = None
        for n, item in enumerate(self._items(stop)):
            now = time.time()
            pts = None
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise SourceError(f"item {n} of the frame iterable is a tuple of {len(item)}; "
                                      "give (frame, pts_seconds) pairs or bare frames")
                item, pts = item
                try:
                    pts = float(pts)
                except (TypeError, ValueError):
                    raise SourceError(f"item {n}: the timestamp {pts!r} is not a number of seconds") from None
            if not isinstance(item, np.ndarray):
                raise SourceError(f"item {n} of the frame iterable is a {type(item).__name__}; "
                                  "give HxWx3 uint8 BGR numpy arrays")
            if first_wall is None:
                first_wall = now
                self.origin = now - (pts or 0.0)
            if pts is None:
                pts = now - first_wall
            yield SourceFrame(pts, now, item)


def _wait_future(future, stop: threading.Event | None):
    import concurrent.futures

    while True:
        try:
            return future.result(timeout=0.2)
        except concurrent.futures.TimeoutError:
            if stop is not None and stop.is_set():
                future.cancel()
                raise StopAsyncIteration from None


# -- specs ---------------------------------------------------------------------------------------
def _scheme(spec: str) -> str:
    return spec.split("://", 1)[0].lower() if "://" in spec else ""


def open_source(spec: Any, loop: asyncio.AbstractEventLoop | None = None) -> FrameSource:
    """A :class:`FrameSource` for a source spec (see the module docstring)."""
    if isinstance(spec, FrameSource):
        return spec
    if isinstance(spec, bool):
        raise SourceError(f"{spec!r} is not a video source")
    if isinstance(spec, int):
        return CameraSource(spec)
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if text.startswith("camera:"):
            try:
                return CameraSource(int(text[7:]))
            except ValueError:
                raise SourceError(f"{text!r}: a camera source is camera:<index>, e.g. camera:0") from None
        scheme = _scheme(text)
        if scheme in LIVE_SCHEMES:
            return UrlSource(text)
        if scheme == "file":
            return FileSource(text[7:])
        if scheme in _FILE_SCHEMES:
            return FileSource(text)
        if scheme:
            raise SourceError(f"{text!r}: unsupported URL scheme {scheme!r} (use a file path, "
                              f"http(s), or one of {', '.join(LIVE_SCHEMES)})")
        return FileSource(text)
    if hasattr(spec, "__iter__") or hasattr(spec, "__aiter__") or hasattr(spec, "__anext__"):
        return IterableSource(spec, loop)
    raise SourceError(f"a {type(spec).__name__} is not a video source: give a file path, a URL, "
                      "a camera index, or an iterable of frames")


def is_persistable(spec: Any) -> bool:
    """True for specs that can be written down (paths, URLs, camera indexes)."""
    return isinstance(spec, (str, os.PathLike)) or (isinstance(spec, int) and not isinstance(spec, bool))


def describe_source(spec: Any) -> str:
    """A short text for a spec (for messages and DescribeStreamProcessor)."""
    if isinstance(spec, FrameSource):
        return spec.describe()
    if isinstance(spec, int) and not isinstance(spec, bool):
        return f"camera:{spec}"
    if isinstance(spec, (str, os.PathLike)):
        return os.fspath(spec)
    return f"<{type(spec).__name__}>"
