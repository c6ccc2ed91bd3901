"""Public test helpers: make small H.264 videos by a recipe.

Each video is encoded with PyAV's bundled libx264 (``yuv420p``, constant frame
rate, time base ``1/fps_den``-exact), so tests can assert decoding exactly:

* :func:`write_video` — frames from any iterable of RGB arrays.
* :func:`numbered_video` — frame ``i`` shows its own index as 16 black/white
  blocks (bit ``b`` of ``i`` in block ``b``), readable back with
  :func:`read_frame_number` even after lossy compression.
* :func:`still_video` — a still image repeated ``frames`` times (a one-frame video
  of a photo, for face-count tests).
* :func:`looped_video` — a real clip repeated ``times`` times (a long clip for
  benchmarks with the same content statistics).
* :func:`truncated_video` — a real clip remuxed with its index (moov) first and
  its data cut short: the container promises frames the file no longer has.
* :func:`spliced_video` — real clips, black runs, colour bars and text cards cut
  together at known frames (segment detection: every cut, black run and bars
  span is known exactly); :func:`color_bars` renders SMPTE or EBU bars and
  :func:`draw_text` writes text with OpenCV's fonts (text detection).

Recipes for bad and unusual input (the bad-input corpus, ``tests/test_corpus.py``):

* :func:`encoded_video` — any encoder PyAV has (HEVC, VP9/WebM, AV1, MJPEG, MPEG-TS,
  10-bit H.264, odd sizes), optional rotation (display matrix) and frame times (VFR).
* :func:`moov_truncated_video` — index (moov) at the end, the file cut before it.
* :func:`zero_sample_video` — a video track with no samples next to an audio track.
* :func:`audio_only` — an AAC track and nothing else, under any name.
* :func:`corrupt_video` — a real clip with a stretch of its middle overwritten.
* :func:`png_declaring` — a small PNG whose header declares any width x height.
"""
from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["write_video", "numbered_video", "read_frame_number", "still_video", "looped_video", "remuxed",
           "truncated_video", "spliced_video", "color_bars", "draw_text", "clip_frames", "encoded_video",
           "moov_truncated_video", "zero_sample_video", "audio_only", "corrupt_video", "png_declaring",
           "all_pages", "validate_response", "body"]

_BITS = 16


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float | Fraction = 25,
                crf: int = 18, gop: int | None = None, rotation: int | None = None) -> Path:
    """Encode RGB uint8 frames (H, W, 3; even H and W) to an H.264 MP4
    (a keyframe every ``gop`` frames when given, else x264's default 250);
    ``rotation``: a display matrix turning the stored frames that many degrees
    counter-clockwise for display, as phones record portrait video."""
    import av

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = w - w % 2, h - h % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
                if gop:
                    stream.options = {**stream.options, "g": str(gop), "keyint_min": str(gop)}
                if rotation is not None:
                    stream.set_display_rotation(rotation)
            frame = np.ascontiguousarray(frame[: stream.height, : stream.width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError("no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return path


def _number_pattern(i: int, width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), 128, np.uint8)
    block = width // _BITS
    for b in range(_BITS):
        img[: height // 4, b * block:(b + 1) * block] = 255 if (i >> b) & 1 else 0
    return img


def numbered_video(path: str | Path, frames: int = 30, fps: float | Fraction = 25,
                   size: tuple[int, int] = (320, 240), gop: int | None = None) -> Path:
    """A video whose frame ``i`` encodes ``i`` (see :func:`read_frame_number`)."""
    w, h = size
    return write_video(path, (_number_pattern(i, w, h) for i in range(frames)), fps, gop=gop)


def read_frame_number(frame_rgb: np.ndarray) -> int:
    """Read back the index drawn by :func:`numbered_video`."""
    h, w = frame_rgb.shape[:2]
    block = w // _BITS
    value = 0
    for b in range(_BITS):
        patch = frame_rgb[2: h // 4 - 2, b * block + 2:(b + 1) * block - 2]
        if patch.mean() > 128:
            value |= 1 << b
    return value


def still_video(image_path: str | Path, path: str | Path, frames: int = 1, fps: float = 25) -> Path:
    """A video of a still image (BGR/RGB read via OpenCV, padded to even size)."""
    import cv2

    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {image_path}")
    h, w = bgr.shape[:2]
    bgr = cv2.copyMakeBorder(bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return write_video(path, (rgb for _ in range(frames)), fps)


def looped_video(source: str | Path, path: str | Path, times: int) -> Path:
    """``source`` played ``times`` times in a row, re-encoded as one H.264 stream."""
    import av

    def frames():
        for _ in range(times):
            with av.open(str(source)) as c:
                for f in c.decode(video=0):
                    yield f.to_ndarray(format="rgb24")

    with av.open(str(source)) as c:
        rate = c.streams.video[0].average_rate or 25
    return write_video(path, frames(), rate, crf=23)


def truncated_video(source: str | Path, path: str | Path, keep: float = 0.5) -> Path:
    """``source``'s video stream remuxed with ``movflags=faststart`` (index first),
    then cut to ``keep`` of its bytes: an over-reported frame count, as in decord#373."""
    return _remux_cut(source, path, keep, {"movflags": "faststart"})


def remuxed(source: str | Path, path: str | Path, fmt: str = "mp4", options: dict | None = None,
            drop_first: int = 0, shift_s: float = 0) -> Path:
    """``source``'s video stream copied (no re-encoding) into a ``fmt`` container
    (FFmpeg's muxer name: ``mp4``, ``mpegts``, ``matroska``, ``h264`` for a raw stream)
    with muxer ``options``, without its first ``drop_first`` packets (a recording cut
    mid-GOP), its timestamps moved ``shift_s`` seconds later (a recording that starts late)."""
    import av

    path = Path(path)
    with av.open(str(source)) as src, av.open(str(path), "w", format=fmt, options=options or {}) as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        shift = int(shift_s / stream.time_base)
        for n, packet in enumerate(src.demux(stream)):
            if packet.dts is not None and n >= drop_first:
                if shift:
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                packet.stream = out
                dst.mux(packet)
    return path


def untimed_ts(source: str | Path, path: str | Path, untimed: Iterable[int]) -> Path:
    """``source``'s video remuxed to MPEG-TS, then the video PES packets numbered
    ``untimed`` (1-based, in file order) stripped of their PTS and DTS, as the TS spec
    allows (a PTS is required only every 0.7 s): their frames carry no time of their own.
    The header bytes that held the times become stuffing (0xFF), so nothing moves."""
    path = Path(path)
    remuxed(source, path, "mpegts")
    data, which, n = bytearray(path.read_bytes()), set(untimed), 0
    for off in range(0, len(data) - 187, 188):
        if data[off] != 0x47 or not data[off + 1] & 0x40:  # not the start of a payload unit
            continue
        at = off + 4 + (1 + data[off + 4] if (data[off + 3] >> 4) & 2 else 0)  # past the adaptation field
        if data[at:at + 3] != b"\x00\x00\x01" or not 0xE0 <= data[at + 3] <= 0xEF:  # not a video PES
            continue
        n += 1
        if n in which:
            data[at + 7] &= 0x3F  # PTS_DTS_flags = 00
            data[at + 9:at + 9 + data[at + 8]] = b"\xff" * data[at + 8]
    path.write_bytes(bytes(data))
    return path


def _remux_cut(source: str | Path, path: str | Path, keep: float, options: dict) -> Path:
    """``source``'s video stream remuxed to MP4 with muxer ``options``, cut to ``keep``."""
    path = Path(path)
    full = remuxed(source, path.with_name(path.stem + ".full" + path.suffix), "mp4", options)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


#: 75 % colour bars, left to right: white, yellow, cyan, green, magenta, red, blue (RGB).
BARS_75 = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0), (0, 0, 191)]


def color_bars(width: int, height: int, kind: str = "smpte") -> np.ndarray:
    """An RGB test card. ``"smpte"``: SMPTE ECR 1-1978 bars (seven 75 % bars over
    the top two thirds, the reverse-blue castellations, then -I, white, +Q and the
    PLUGE); ``"ebu"``: EBU bars (eight full-height 75 % bars, the last black)."""
    img = np.zeros((height, width, 3), np.uint8)
    bars = BARS_75 + ([(0, 0, 0)] if kind == "ebu" else [])
    edges = np.linspace(0, width, len(bars) + 1).round().astype(int)
    top = height if kind == "ebu" else int(height * 0.67)
    for (r, g, b), x0, x1 in zip(bars, edges[:-1], edges[1:]):
        img[:top, x0:x1] = (r, g, b)
    if kind == "smpte":
        mid = int(height * 0.75)
        castle = [(0, 0, 191), (19, 19, 19), (191, 0, 191), (19, 19, 19), (0, 191, 191), (19, 19, 19),
                  (191, 191, 191)]
        for (r, g, b), x0, x1 in zip(castle, edges[:-1], edges[1:]):
            img[top:mid, x0:x1] = (r, g, b)
        quarter = width // 4
        img[mid:, :quarter] = (0, 33, 76)           # -I
        img[mid:, quarter:2 * quarter] = (255, 255, 255)
        img[mid:, 2 * quarter:3 * quarter] = (50, 0, 106)  # +Q
        img[mid:, 3 * quarter:] = (19, 19, 19)
    elif kind != "ebu":
        raise ValueError("kind must be 'smpte' or 'ebu'")
    return img


def clip_frames(source: str | Path, start: int, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Frames ``start .. start + count - 1`` of a real clip, resized to ``size`` (W, H), RGB."""
    import av
    import cv2

    out = []
    with av.open(str(source)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= start + count:
                break
            if i >= start:
                out.append(cv2.resize(frame.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_AREA))
    if len(out) < count:
        raise ValueError(f"{source} has fewer than {start + count} frames")
    return out


def draw_text(frame: np.ndarray, text: str, org: tuple[int, int], *, font: int = 0, scale: float = 1.0,
              color=(255, 255, 255), thickness: int = 2, background=None) -> tuple[int, int, int, int]:
    """Write ``text`` on an RGB frame in place with ``cv2.putText`` (``font``: an
    OpenCV Hershey font id; ``org``: the text's bottom-left corner in pixels, as
    putText takes it). ``background``: fill the text's box with this colour first.
    Returns the ink box ``(left, top, width, height)`` in pixels (descenders included)."""
    import cv2

    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    x, y = org
    if background is not None:
        pad = max(2, h // 3)
        cv2.rectangle(frame, (x - pad, y - h - pad), (x + w + pad, y + base + pad), background, -1)
    cv2.putText(frame, text, (x, y), font, scale, color, thickness, cv2.LINE_AA)
    return x, y - h, w, h + base


def spliced_video(path: str | Path, parts: list[tuple], size: tuple[int, int] = (320, 180),
                  fps: float | Fraction = Fraction(30000, 1001)) -> list[int]:
    """Cut ``parts`` together into one H.264 video and return the first frame
    number of each part (so every cut is known to the frame). Parts:

    * ``("clip", source, start, count)``: frames of a real clip, resized to ``size``;
    * ``("black", count)``: black frames (RGB 0);
    * ``("bars", count, "smpte" | "ebu")``: colour bars (:func:`color_bars`);
    * ``("card", count, ["line", ...])``: white text lines on black (a credits card);
    * ``("frames", [rgb, ...])``: any frames of ``size``.
    """
    w, h = size
    frames: list[np.ndarray] = []
    starts = []
    for part in parts:
        starts.append(len(frames))
        kind = part[0]
        if kind == "clip":
            frames += clip_frames(part[1], part[2], part[3], size)
        elif kind == "black":
            frames += [np.zeros((h, w, 3), np.uint8)] * part[1]
        elif kind == "bars":
            frames += [color_bars(w, h, part[2] if len(part) > 2 else "smpte")] * part[1]
        elif kind == "card":
            card = np.zeros((h, w, 3), np.uint8)
            lines = part[2]
            step = h // (len(lines) + 1)
            for i, line in enumerate(lines):
                draw_text(card, line, (w // 10, step * (i + 1) + step // 4), font=0, scale=h / 400,
                          thickness=max(1, h // 240))
            frames += [card] * part[1]
        elif kind == "frames":
            frames += list(part[1])
        else:
            raise ValueError(f"unknown part {kind!r}")
    write_video(path, frames, fps, crf=18)
    return starts


@contextlib.contextmanager
def _scheduling_kept():
    """Keep the calling thread's scheduling policy across an encoder's run.

    SVT-AV1 (FFmpeg's ``libsvtav1``), run as root, moves the thread that opens it to
    real-time ``SCHED_FIFO`` priority 99 and never moves it back: a test process's main
    thread then starves everything it waits on (torch's OpenMP workers, decoder threads,
    subprocesses, which inherit the policy). A CLIP test that takes 1 s took 118 s and
    more after the AV1 corpus rows had run (tests/conftest.py now fails any test that
    leaves the policy changed)."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError):  # not Linux
        yield
        return
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


def encoded_video(path: str | Path, codec: str = "libx264", size: tuple[int, int] = (96, 64),
                  frames: int = 5, fps: int = 25, pix_fmt: str = "yuv420p", fmt: str | None = None,
                  options: dict | None = None, rotation: int | None = None,
                  pts: list[int] | None = None) -> Path:
    """``frames`` frames of a moving gradient through encoder ``codec`` (a PyAV name:
    libx264, libx265, libvpx-vp9, libsvtav1, mjpeg, mpeg2video), muxed as ``fmt``
    (default from the suffix). ``rotation``: a display matrix (degrees counter-clockwise);
    ``pts``: each frame's time in units of 1/``fps`` s (variable frame rate)."""
    import av

    path = Path(path)
    w, h = size
    with _scheduling_kept(), av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if options:
            stream.options = dict(options)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, fps)
        y, x = np.mgrid[0:h, 0:w]
        for i in range(frames):
            img = np.stack([(x * 4 + i * 9) % 256, (y * 4) % 256, np.full_like(x, 40 * i % 256)], -1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moov_truncated_video(source: str | Path, path: str | Path, keep: float = 0.5) -> Path:
    """``source`` remuxed with its index (moov) at the end, then cut to ``keep`` of
    its bytes: the index is lost, no frame can be located."""
    return _remux_cut(source, path, keep, {})


def zero_sample_video(path: str | Path) -> Path:
    """A Matroska file whose H.264 video track has no samples (an audio track has some)."""
    import av

    path = Path(path)
    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        _add_silence(container)
        for packet in video.encode():
            container.mux(packet)
    return path


def _add_silence(container, seconds: float = 1.0) -> None:
    import av

    audio = container.add_stream("aac", rate=8000)
    for i in range(int(seconds * 8000 / 1024) + 1):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, i * 1024
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)


def audio_only(path: str | Path, fmt: str = "mp4") -> Path:
    """One second of AAC silence and no video stream, muxed as ``fmt``."""
    import av

    path = Path(path)
    with av.open(str(path), "w", format=fmt) as container:
        _add_silence(container)
    return path


def corrupt_video(source: str | Path, path: str | Path, at: float = 0.5, length: int = 4096,
                  seed: int = 0) -> Path:
    """``source`` with ``length`` bytes at ``at`` (a fraction of its size) replaced by
    seeded random bytes."""
    data = bytearray(Path(source).read_bytes())
    start = int(len(data) * at)
    data[start:start + length] = np.random.default_rng(seed).integers(0, 256, length, np.uint8).tobytes()
    path = Path(path)
    path.write_bytes(bytes(data[: len(data)]))
    return path


def png_declaring(path: str | Path | None, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (RGB, 8 bit) but whose data is a
    few bytes: what a decompression bomb's header looks like. Written to ``path`` if given."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    if path is not None:
        Path(path).write_bytes(data)
    return data


def all_pages(get, operation: str, **kwargs) -> list[dict]:
    """Every page of a paginated Get* call, following NextToken, each page checked
    with :func:`validate_response` (botocore has no paginators for these)::

        pages = all_pages(client.get_face_detection, "GetFaceDetection", JobId=job_id)
    """
    pages, token = [], None
    while True:
        page = get(**kwargs, **({"NextToken": token} if token else {}))
        validate_response(operation, page)
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            return pages


def body(response: dict) -> dict:
    """A response without its ``ResponseMetadata`` (what the service's JSON held)."""
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def validate_response(operation: str, response: dict) -> None:
    """Assert ``response`` is a valid ``<operation>Response`` of botocore's own
    Rekognition service model: member names and types (botocore's validator), then
    enums, patterns, lengths and ranges. Raises ``AssertionError`` naming each problem."""
    from botocore.validate import ParamValidator

    from .requests import service_model, validate_shape_values

    shape = service_model().operation_model(operation).output_shape
    response = body(response)  # ResponseMetadata is the transport's, not the shape's
    report = ParamValidator().validate(response, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    problems += validate_shape_values(response, shape, operation + "Response")
    if problems:
        raise AssertionError("\n".join(problems))
