"""What a video's container declares, read with PyAV (FFmpeg), before its frames are decoded.

* :func:`probe` — ``VideoMetadata`` at Start: the container must open, hold a video
  stream and decode its first frame, at least :data:`MIN_FRAME_SIDE` pixels a side.
  ``FrameWidth``/``FrameHeight`` are the size **as displayed**: a phone video stored
  landscape with a 90° display matrix reports its portrait size (the decoder turns
  the frames the same way, so boxes are ratios of the displayed frame).
* :func:`scan_packets` — every video packet's PTS (demuxing only, no decoding), and
  :meth:`PacketScan.missing` — how much of what the container *declares* (its sample
  table's frame count, the stream's duration) the file really holds. A file cut short
  (``mdat`` truncated, the ``moov`` index intact) promises frames it no longer has;
  a job on it ends FAILED saying how much is missing, the same on every run, instead
  of succeeding with part of the video unanalysed.
* :func:`joined_file_at` — where a second MP4/MOV file starts in one (``cat a.mp4 b.mp4``):
  FFmpeg goes by the first file's index and never looks past it (a fragmented file's
  second half comes back with its times starting again), so without this check a job
  would succeed on the first file alone. Only the top-level box headers are read.

FFmpeg's own messages are logged, never shown: errors say in words
what is wrong with the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import InvalidParameterException, VideoTooLargeException
from ..models import require

__all__ = ["MIN_FRAME_SIDE", "MAX_DURATION_MS", "VideoMetadata", "PacketScan", "joined_file_at",
           "joined_files", "out_of_order_message", "probe", "restart_message", "RestartWatch", "scan_packets"]

log = logging.getLogger("rekolab.video")

#: Frames smaller than this (either side, as displayed) are refused at Start: no
#: face or label is analysable there.
MIN_FRAME_SIDE = 32
MAX_DURATION_MS = 6 * 3600 * 1000
#: Packets read at Start looking for the first decodable frame (B-frame and
#: frame-threading delays are a few packets; a stream that yields nothing after
#: this many is not decodable).
_PROBE_PACKETS = 64


@dataclass(frozen=True)
class VideoMetadata:
    codec: str
    duration_ms: int
    format: str
    frame_rate: float
    frame_height: int  # as displayed (after the container's rotation)
    frame_width: int
    color_range: str  # "FULL" | "LIMITED"
    rotation: int = 0  # degrees counter-clockwise the stored picture is turned for display

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


def _open(path: Path):
    av = require("av", "video")
    try:
        return av.open(str(path))
    except Exception as exc:
        log.info("FFmpeg could not open %s: %r", path, exc)
        raise InvalidParameterException(
            f"{path.name} is not a readable video file: no video container FFmpeg knows was found "
            "(is it a video? is its index (moov) missing or cut off?); give an MP4/MOV (H.264) "
            "or another FFmpeg-readable video") from None


def _first_frame(container, stream, name: str):
    """Decode the stream's first frame, or refuse the file in words."""
    av = require("av", "video")
    packets = 0
    try:
        # One decoding thread: frame threads would each hold full-size frames (a
        # 4096x4096 probe then peaks at hundreds of MB for one picture).
        stream.codec_context.thread_count = 1
        for packet in container.demux(stream):
            packets += packet.size > 0
            for frame in packet.decode():  # the final empty packet flushes the decoder
                return frame
            if packets >= _PROBE_PACKETS:
                break
    except (av.error.FFmpegError, ValueError) as exc:
        log.info("decoding the first frame of %s failed: %r", name, exc)
        raise InvalidParameterException(
            f"{name}: the first frame of the video cannot be decoded: its data is corrupt, "
            "cut off or in a codec feature FFmpeg does not support") from None
    if packets == 0:
        raise InvalidParameterException(f"{name}: the video stream has no frames (zero samples)")
    raise InvalidParameterException(
        f"{name}: no frame of the video could be decoded from its first {packets} packets: "
        "its data is corrupt or cut off")


def probe(path: str | Path) -> VideoMetadata:
    """Read ``VideoMetadata`` from the container and decode the first frame; bad files
    raise ``InvalidParameterException`` / ``VideoTooLargeException`` with a message
    that says what is wrong."""
    path = Path(path)
    name = path.name
    container = _open(path)
    try:
        fmt = container.format.name
        if fmt in ("image2", "gif", "apng", "webp") or fmt.endswith("_pipe"):
            raise InvalidParameterException(
                f"{name} is a still image ({container.format.long_name}), not a video")
        if not container.streams.video:
            raise InvalidParameterException(f"{name} has no video stream; give a video file")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        duration_ms = _declared_ms(container, stream) or 0
        if not ctx.name:
            raise InvalidParameterException(f"{name}: the video stream's codec is unknown to FFmpeg")
        frame = _first_frame(container, stream, name)
        if frame.pts is None:  # a raw elementary stream: frame times are what a job reports
            raise InvalidParameterException(
                f"{name}: the video's frames carry no timestamps ({container.format.long_name}); "
                f"put them in a container first, e.g. ffmpeg -r 30 -i {name!r} -c copy out.mp4")
        rotation = int(getattr(frame, "rotation", 0) or 0) % 360
        width, height = int(frame.width), int(frame.height)
        if rotation in (90, 270):
            width, height = height, width
        if min(width, height) < MIN_FRAME_SIDE:
            raise InvalidParameterException(
                f"{name}: the video's frames are {width}x{height} pixels; rekolab needs at least "
                f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}")
        # FFmpeg AVCOL_RANGE: 2 = JPEG (full); 1 = MPEG (limited); 0 = unspecified,
        # which decoders treat as limited for YUV video.
        color_range = "FULL" if int(getattr(ctx, "color_range", 0) or 0) == 2 else "LIMITED"
        codec = getattr(ctx.codec, "canonical_name", None) or ctx.name  # "av1", not "libdav1d"
        meta = VideoMetadata(codec=codec, duration_ms=duration_ms, format=container.format.long_name,
                             frame_rate=round(rate, 6), frame_height=height, frame_width=width,
                             color_range=color_range, rotation=rotation)
    finally:
        container.close()
    if meta.duration_ms > MAX_DURATION_MS:
        raise VideoTooLargeException(
            f"Video duration {meta.duration_ms} ms is more than the maximum duration of 6 hours.")
    return meta


def _declared_ms(container, stream) -> int | None:
    """The video stream's duration as the container declares it (ms), if it does."""
    if stream.duration is not None and stream.time_base is not None:
        return int(stream.duration * Fraction(stream.time_base) * 1000)
    if container.duration is not None:
        return int(container.duration / 1000)  # container.duration is in µs
    return None


def restart_message(after_ms: int) -> str:
    """Why a video whose timestamps start again (streams joined end to end) is not analysed."""
    return (f"the video's timestamps start again after {after_ms} ms (streams joined end to end?), so "
            "the frames after that point could not be placed in time; split it there, or remux it into "
            "one timeline (MPEG-TS: ffmpeg -i in.ts -c copy out.mp4)")


#: Top-level boxes read looking for a second file: a fragmented MP4 has two per fragment
#: (moof, mdat), so this covers six hours of one-second fragments with room to spare.
_MAX_BOXES = 200_000


def joined_file_at(path: str | Path, format_name: str) -> tuple[int, bytes] | None:
    """Where a second ISO BMFF file (MP4, MOV, 3GP) starts inside ``path``, as ``(byte offset,
    box type)``: a top-level ``ftyp`` after the first file's media (``moov``, ``mdat`` or
    ``moof``) has been seen, or else a second top-level ``moov`` (old QuickTime files have no
    ``ftyp``; then the offset is the second index's, not the second file's start). None where
    there is none, or the file is not ISO BMFF (``format_name``: FFmpeg's demuxer name, e.g.
    ``"mov,mp4,m4a,3gp,3g2,mj2"``). A file may start with a signature (``jP  ``) or padding
    box before its ``ftyp``. Reads 16 bytes per top-level box; a header that makes no sense
    ends the walk (what FFmpeg makes of the file then decides)."""
    if "mp4" not in format_name and "mov" not in format_name:
        return None
    try:
        with open(path, "rb", buffering=0) as f:
            size = f.seek(0, 2)
            pos, moov_seen, media_seen = 0, False, False
            for _ in range(_MAX_BOXES):
                if pos + 8 > size:
                    return None
                f.seek(pos)
                head = f.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if length == 1 and len(head) == 16:  # 64-bit size
                    length = int.from_bytes(head[8:16], "big")
                    if length < 16:
                        return None
                elif length == 0:  # the box runs to the end of the file
                    return None
                elif length < 8:
                    return None
                if (kind == b"ftyp" and media_seen) or (kind == b"moov" and moov_seen):
                    return pos, kind
                moov_seen = moov_seen or kind == b"moov"
                media_seen = media_seen or kind in (b"moov", b"mdat", b"moof")
                pos += length
            log.info("%s: stopped looking for a second file after %d top-level boxes", path, _MAX_BOXES)
    except OSError as exc:
        log.info("reading the boxes of %s stopped: %r", path, exc)
    return None


def joined_files(path: str | Path, container, stream) -> str | None:
    """A sentence saying that ``path`` (opened as ``container``, its video ``stream``) holds
    two MP4/MOV files one after the other (:func:`joined_file_at`), or None."""
    joined = joined_file_at(path, container.format.name)
    if joined is None:
        return None
    at, kind = joined
    size = Path(path).stat().st_size
    first_ms = _declared_ms(container, stream)
    first = f", after the first one's {first_ms} ms" if first_ms else ""
    where = (f"a second one starts at byte {at} of {size}" if kind == b"ftyp" else
             f"a second index (moov) starts at byte {at} of {size}")
    return (f"the file holds more than one MP4/MOV file joined end to end (cat a.mp4 b.mp4?): {where} "
            f"(the last {100 * (size - at) / size:.1f}% of the file){first}. FFmpeg goes by the first file's "
            "index, so the second's frames would be left out (or, fragmented, placed at the wrong times); "
            "join videos into one timeline instead (ffmpeg -f concat -safe 0 -i list.txt -c copy out.mp4), "
            "or give each file on its own")


def untimed_message(untimed: int, frames: int) -> str:
    """Why a video some of whose frames carry no timestamp (and the others' times do
    not tell where they go, see :func:`placed_untimed`) is not analysed."""
    return (f"{untimed} of the video's {frames} frames carry no timestamp of their own, and the other "
            "frames' times do not tell where they go (FFmpeg's MPEG-PS muxer, for one, puts several "
            "small H.264 frames in one packet, which carries one time), so they could not be placed "
            "in time; re-encode it, e.g. ffmpeg -i in.mpg out.mp4")


#: How many frame steps from its packet's neighbour in file order a frame without a time may
#: be placed: B-frames reorder within a few frames, never across a whole GOP.
PLACE_WITHIN_STEPS = 16


def placed_untimed(pts: list[int], untimed: int, step: int | None = None,
                   near: list[int | None] | None = None) -> list[int] | None:
    """The times of ``untimed`` frames that carry none, from the one-frame holes the
    timed frames' sorted ``pts`` leave: a gap of ``m + 1`` frame steps (``step``: the
    packets' duration, else the median gap; within a quarter of a step) holds ``m``
    frames, evenly spaced; ``near`` (see below) keeps a real gap from taking them.
    An MPEG-TS (a PTS is only required every 0.7 s) leaves such frames, and the decoder
    returns them in their place in presentation order with no time (MPEG-PS: see
    :func:`placeable`). None where the holes do not hold exactly the untimed frames (some
    before the first timed frame or after the last, a real gap in the video), or nothing
    gives the step: then nothing says where they go."""
    if not untimed:
        return []
    if not pts:
        return None
    gaps = [b - a for a, b in zip(pts, pts[1:])]
    if not step or step <= 0:
        step = sorted(gaps)[len(gaps) // 2] if gaps else 0
    if step <= 0:
        return None
    placed = []
    for a, gap in zip(pts, gaps):
        frames = round(gap / step)
        if frames >= 2 and abs(gap - frames * step) * 4 <= step:
            placed += [a + round(j * gap / frames) for j in range(1, frames)]
            if len(placed) > untimed:
                return None
    # Exactly as many frames as holes, or nothing: leftovers could be before the first timed
    # frame (a TS cut mid-GOP) or after the last, and a real gap could have taken their place.
    if len(placed) != untimed:
        return None
    # ``near``: for each untimed packet, in file order, the time of the timed packet before it.
    # Its frame is shown within a few frames of that one; a hole far away is a real gap.
    if near is not None and (len(near) != untimed or any(
            n is None or abs(slot - n) > PLACE_WITHIN_STEPS * step for slot, n in zip(placed, near))):
        return None
    return placed


def placeable(container) -> bool:
    """Whether frames without a time of their own can be placed by the holes they leave
    (:func:`placed_untimed`): not in MPEG-PS (FFmpeg's ``mpeg`` demuxer, VOB included),
    where one packet's time covers several frames and does not always go to the right one
    (a numbered 640x360 H.264 VOB, 93 of 100 frames untimed, came out one frame off)."""
    return container.format.name != "mpeg"


def frame_step(durations: list[int]) -> int | None:
    """The most common positive packet duration (the demuxer's frame step), or None."""
    from collections import Counter

    common = Counter(d for d in durations if d and d > 0).most_common(1)
    return common[0][0] if common else None


class UntimedFrames:
    """The frames whose packet carries no time, noted packet by packet in file order (the
    demux loops of :func:`scan_packets` and of the every-frame decoder), and the times
    they are placed at (:func:`placed_untimed`)."""

    def __init__(self):
        self.count, self._durations, self._near, self._last = 0, [], [], None

    def add(self, packet) -> bool:
        """Note one complete packet; True when it carries a time."""
        self._durations.append(packet.duration)
        if packet.pts is None:
            self.count += 1
            self._near.append(self._last)  # the timed packet before it, in file order
            return False
        self._last = packet.pts
        return True

    def placed(self, pts: list[int], container) -> list[int] | None:
        """Their times, given the timed frames' sorted ``pts`` ([] when there are none;
        None when they cannot be placed)."""
        if not self.count:
            return []
        if not placeable(container):
            return None
        return placed_untimed(pts, self.count, frame_step(self._durations), self._near)


def next_placed(placed, last_pts: int | None) -> int | None:
    """The placed time (:func:`placed_untimed`) of a decoded frame without one, coming
    after the frame at ``last_pts``: the first placed time after it (frames come out
    in presentation order). None where there is none, or nothing came before."""
    import bisect

    if last_pts is None or not placed:
        return None
    i = bisect.bisect_right(placed, last_pts)
    return int(placed[i]) if i < len(placed) else None


def out_of_order_message() -> str:
    """Why a video whose decoded frames come out with times that go back is not analysed."""
    return ("the video's frame times are not in presentation order (for example an AVI with B-frames, "
            "or two streams joined end to end); remux it to MP4, e.g. ffmpeg -i in.avi -c copy out.mp4")


class RestartWatch:
    """Watches frame times in decode order for a second timeline (``cat a.ts b.ts``): a
    keyframe more than ``one_second`` (in the times' unit) before a frame already seen.
    Only keyframes are compared: B-frames reorder around them, never across them, by a
    few frames, which at 1 fps is seconds; and the DTS is no help where the demuxer
    guesses it (Matroska leaves the first packets' DTS unset)."""

    def __init__(self, one_second: int):
        self.one_second, self.latest = one_second, None

    def starts_again(self, t: int, is_keyframe: bool) -> bool:
        """Note the frame at time ``t``; True when it starts a second timeline."""
        again = is_keyframe and self.latest is not None and t < self.latest - self.one_second
        self.latest = t if self.latest is None else max(self.latest, t)
        return again


@dataclass(frozen=True, repr=False)
class PacketScan:
    """The video packets a file really holds, next to what its container declares."""

    pts: list[int]  # complete packets' PTS, sorted (stream time base)
    start: int  # the stream's start time (time base units)
    time_base: Fraction
    declared_frames: int  # the sample table's count; 0 where the container has none
    declared_ms: int | None  # the stream's declared duration (None: undeclared)
    end_ms: int  # where the last complete packet ends, from the first frame
    #: where the packet times start again (ms from the first frame): streams joined end to end
    restart_ms: int | None = None
    #: the earliest frame time (ms from the first frame) that two packets share: a second part
    #: that starts again less than a second before the first ends (``cat a.ts a.ts`` of short clips)
    repeat_ms: int | None = None
    #: packets holding a frame but no timestamp (H.264 in MPEG-PS packs several small frames
    #: into one PES packet, which carries one time)
    untimed: int = 0
    #: the times those frames are given (:func:`placed_untimed`; in ``pts`` too), sorted;
    #: fewer than ``untimed`` where they could not be placed
    placed: tuple = ()
    #: the container's duration counts from time zero, not from the first frame (Matroska)
    counts_from_zero: bool = False
    #: (pts, dts) of the packets flagged keyframes, by pts: where a decode can start
    keyframes: tuple = ()
    #: why the file is two MP4/MOV files one after the other (:func:`joined_files`), or None
    joined: str | None = None

    @property
    def start_ms(self) -> int:
        """The first frame's time from zero (a recording cut from a longer one)."""
        return max(0, int(self.start * self.time_base * 1000))

    def ms(self) -> list[int]:
        """Each present frame's PTS in whole ms from the start, rounded down (exact integers)."""
        num, den = self.time_base.numerator, self.time_base.denominator
        return [(p - self.start) * num * 1000 // den for p in self.pts]

    def unplaced(self) -> str | None:
        """Why the frames carrying no time could not be placed (then every frame after one
        would be numbered wrong), or None."""
        if self.untimed and len(self.placed) != self.untimed:
            return untimed_message(self.untimed, self.untimed + len(self.pts))
        return None

    def missing(self) -> str | None:
        """A sentence saying how much of the declared video is absent, or would not be
        analysed (the part after a timestamp restart, or a second file joined to the
        first), or None."""
        if self.joined is not None:
            return self.joined
        if self.restart_ms is not None:
            return restart_message(self.restart_ms)
        unplaced = self.unplaced()
        if unplaced is not None:
            return unplaced
        if self.repeat_ms is not None:
            return (f"the video's timestamps repeat: two frames are at {self.repeat_ms} ms (streams joined "
                    "end to end?), so the frames could not be placed in time; split it where the second "
                    "part starts, or remux it into one timeline (MPEG-TS: ffmpeg -i in.ts -c copy out.mp4)")
        present = len(self.pts)
        if self.declared_frames and present < self.declared_frames:
            lost = self.declared_frames - present
            where = (f"; it ends at {self.end_ms} ms of {self.declared_ms} ms"
                     if self.declared_ms else "")
            return (f"the video is truncated: its container declares {self.declared_frames} frames but "
                    f"the file holds only {present}; {lost} frames "
                    f"({100 * lost / self.declared_frames:.1f}% of the video) are missing{where}")
        if self.declared_ms and present:
            declared, gap, late = self.declared_ms, self.declared_ms - self.end_ms, ""
            # Matroska's duration counts from zero, not from a late first frame (a recording
            # cut from a longer one): there the frames must span what follows their start.
            # Where they end past that span, the muxer counted from the first frame.
            span = self.declared_ms - self.start_ms
            if self.counts_from_zero and self.start_ms > 0 and span >= self.end_ms - _tolerance(span, present):
                declared, gap, late = span, span - self.end_ms, f" after its first frame at {self.start_ms} ms"
            if gap > _tolerance(declared, present):
                return (f"the video is truncated: its container declares {declared} ms{late} but the "
                        f"file's frames end at {self.end_ms} ms; {gap} ms "
                        f"({100 * gap / declared:.1f}% of the video) are missing")
        return None


def _tolerance(declared_ms: float, present: int) -> float:
    """How far short of its declared duration a complete file may end: two frames, 2%, 100 ms."""
    return max(2 * declared_ms / max(present, 1), 0.02 * declared_ms, 100)


def scan_packets(path: str | Path) -> PacketScan:
    """Demux (no decoding) every packet of the first video stream. Empty packets and
    the partial packet a cut leaves (FFmpeg flags it corrupt) do not count as present."""
    container = _open(Path(path))
    try:
        stream = container.streams.video[0]
        time_base = Fraction(stream.time_base)
        pts, end, keyframes, untimed, latest_dts, back = [], None, [], UntimedFrames(), None, False
        restart, watch = None, RestartWatch(int(1 / time_base) if time_base else 0)
        try:
            for p in container.demux(stream):
                if not p.size or p.is_corrupt:
                    continue
                if not untimed.add(p):
                    continue
                # Decode times only go forward in one stream: one that goes back is a second
                # part starting again. (Equal ones are not: MPEG-PS splits a packet in two with
                # the same times; Matroska's whole-ms times round two frames above 1000 fps to one.)
                if p.dts is not None:
                    back = back or (latest_dts is not None and p.dts < latest_dts)
                    latest_dts = p.dts if latest_dts is None else max(latest_dts, p.dts)
                if watch.starts_again(p.pts, p.is_keyframe) and restart is None:
                    restart = end
                pts.append(p.pts)
                if p.is_keyframe:
                    keyframes.append((p.pts, p.pts if p.dts is None else p.dts))
                stop = p.pts + (p.duration or 0)
                end = stop if end is None else max(end, stop)
        except Exception as exc:  # a demuxer error part-way: what was read is what is present
            log.info("demuxing %s stopped: %r", path, exc)
        pts.sort()
        placed = untimed.placed(pts, container) or []
        if placed:
            pts = sorted(pts + placed)
        repeat = next((a for a, b in zip(pts, pts[1:]) if a == b), None) if back else None
        start = stream.start_time if stream.start_time is not None else (pts[0] if pts else 0)
        end_ms = 0 if end is None else int((end - start) * time_base * 1000)
        restart_ms = None if restart is None else int((restart - start) * time_base * 1000)
        repeat_ms = None if repeat is None else int((repeat - start) * time_base * 1000)
        declared_ms = None
        if stream.duration is not None or len(container.streams) == 1:
            # A container-wide duration also covers audio; trust it only alone.
            declared_ms = _declared_ms(container, stream)
        return PacketScan(pts=pts, start=start, time_base=time_base,
                          declared_frames=int(stream.frames or 0), declared_ms=declared_ms, end_ms=end_ms,
                          restart_ms=restart_ms, repeat_ms=repeat_ms, untimed=untimed.count,
                          placed=tuple(placed), keyframes=tuple(sorted(keyframes)),
                          counts_from_zero="matroska" in container.format.name,
                          joined=joined_files(path, container, stream))
    finally:
        container.close()
