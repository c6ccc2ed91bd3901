"""StartSegmentDetection results: the Arrow schema, SMPTE timecodes and
GetSegmentDetection's ``Segments[]`` items.

One row per segment, in Get* order (the requested SegmentTypes in request order,
each type by start time)::

    Type                  string  SHOT | TECHNICAL_CUE
    StartTimestampMillis  int64   PTS of the first frame, ms (rounded down)
    EndTimestampMillis    int64   PTS of the first frame after the segment (the
                                  stream's duration for a segment that ends the video)
    DurationMillis        int64   End - Start
    StartTimecodeSMPTE    string  timecode of StartFrameNumber
    EndTimecodeSMPTE      string  timecode of EndFrameNumber
    DurationSMPTE         string  DurationFrames as a timecode
    TechnicalCueSegment   struct<Type, Confidence>   (TECHNICAL_CUE rows)
    ShotSegment           struct<Index, Confidence>  (SHOT rows)
    StartFrameNumber      int64   0-based
    EndFrameNumber        int64   the first frame after the segment (exclusive)
    DurationFrames        int64   End - Start

A segment covers frames ``StartFrameNumber .. EndFrameNumber - 1``: the end is the
boundary after its last frame, so every Duration is End - Start and consecutive
shots share a boundary (one's End is the next one's Start).

**SMPTE timecodes** are ``HH:MM:SS:FF``, counted at the nominal rate (the frame
rate rounded: 30 for 29.97, 24 for 23.976); at 29.97 and 59.94 fps they are
drop-frame, written ``HH:MM:SS;FF`` as Rekognition does: frame numbers 0 and 1 (0
to 3 at 59.94) are skipped at the start of every minute except each tenth minute,
so the timecode stays within a frame of the clock.
"""
from __future__ import annotations

import pyarrow as pa

from .render import drop_nulls

__all__ = ["SEGMENTS_SCHEMA", "smpte_timecode", "is_drop_frame", "segment_items", "segment_row"]

F = pa.float64()
SEGMENTS_SCHEMA = pa.schema([
    ("Type", pa.string()),
    ("StartTimestampMillis", pa.int64()),
    ("EndTimestampMillis", pa.int64()),
    ("DurationMillis", pa.int64()),
    ("StartTimecodeSMPTE", pa.string()),
    ("EndTimecodeSMPTE", pa.string()),
    ("DurationSMPTE", pa.string()),
    ("TechnicalCueSegment", pa.struct([("Type", pa.string()), ("Confidence", F)])),
    ("ShotSegment", pa.struct([("Index", pa.int64()), ("Confidence", F)])),
    ("StartFrameNumber", pa.int64()),
    ("EndFrameNumber", pa.int64()),
    ("DurationFrames", pa.int64()),
])


def is_drop_frame(fps: float) -> bool:
    """29.97 (30000/1001) and 59.94 (60000/1001) fps use drop-frame timecode."""
    return any(abs(fps - r) < 0.005 for r in (30000 / 1001, 60000 / 1001))


def smpte_timecode(frame: int, fps: float) -> str:
    """SMPTE timecode of a 0-based frame number (or a duration in frames)."""
    if frame < 0:
        raise ValueError("frame must be >= 0")
    nominal = max(1, int(round(fps)))
    drop = is_drop_frame(fps)
    if drop:
        dropped = 2 * nominal // 30  # 2 at 29.97, 4 at 59.94
        per_minute = nominal * 60 - dropped
        per_ten = nominal * 600 - dropped * 9
        tens, rest = divmod(frame, per_ten)
        frame += dropped * 9 * tens
        if rest > dropped:
            frame += dropped * ((rest - dropped) // per_minute)
    ff = frame % nominal
    seconds = frame // nominal
    sep = ";" if drop else ":"
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{sep}{ff:02d}"


def segment_row(kind: str, start_frame: int, end_frame: int, start_ms: int, end_ms: int, fps: float,
                confidence: float, *, cue_type: str | None = None, shot_index: int | None = None) -> dict:
    """One row of :data:`SEGMENTS_SCHEMA`."""
    return {
        "Type": kind,
        "StartTimestampMillis": int(start_ms),
        "EndTimestampMillis": int(end_ms),
        "DurationMillis": int(end_ms - start_ms),
        "StartTimecodeSMPTE": smpte_timecode(start_frame, fps),
        "EndTimecodeSMPTE": smpte_timecode(end_frame, fps),
        "DurationSMPTE": smpte_timecode(end_frame - start_frame, fps),
        "TechnicalCueSegment": {"Type": cue_type, "Confidence": float(confidence)} if cue_type else None,
        "ShotSegment": {"Index": int(shot_index), "Confidence": float(confidence)} if shot_index is not None else None,
        "StartFrameNumber": int(start_frame),
        "EndFrameNumber": int(end_frame),
        "DurationFrames": int(end_frame - start_frame),
    }


def segment_items(table: pa.Table) -> list[dict]:
    """GetSegmentDetection ``Segments[]`` items for rows of ``table``."""
    return [drop_nulls(row) for row in table.to_pylist()]
