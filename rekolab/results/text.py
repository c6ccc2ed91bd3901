"""StartTextDetection results: the Arrow schema and GetTextDetection's items.

One row per TextDetection (a LINE or a WORD) per sampled frame::

    Timestamp     int64   PTS of the sampled frame, ms
    FrameNumber   int64   0-based frame number (a rekolab extra, not in Get* items)
    DetectedText  string
    Type          string  LINE | WORD
    Id            int64   unique within the frame: lines first (0, 1, ...), then words
    ParentId      int64   a word's line Id; null for lines
    Confidence    float64 0..100
    Geometry      struct<BoundingBox, Polygon: list<struct<X, Y>>>  ratios of the frame

Rows are stored in Get* order: by Timestamp, then Id.
"""
from __future__ import annotations

import pyarrow as pa

from .render import drop_nulls
from .schema import BOUNDING_BOX

__all__ = ["TEXT_SCHEMA", "GEOMETRY_TYPE", "text_detection", "text_detection_items"]

F = pa.float64()
GEOMETRY_TYPE = pa.struct([("BoundingBox", BOUNDING_BOX),
                           ("Polygon", pa.list_(pa.struct([("X", F), ("Y", F)])))])
TEXT_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("FrameNumber", pa.int64()),
    ("DetectedText", pa.string()),
    ("Type", pa.string()),
    ("Id", pa.int64()),
    ("ParentId", pa.int64()),
    ("Confidence", F),
    ("Geometry", GEOMETRY_TYPE),
])

_KEYS = ("DetectedText", "Type", "Id", "ParentId", "Confidence", "Geometry")


def text_detection(row: dict) -> dict:
    """A row (or a DetectText detection dict) as Rekognition's ``TextDetection``."""
    return drop_nulls({k: row.get(k) for k in _KEYS})


def text_detection_items(table: pa.Table) -> list[dict]:
    """GetTextDetection ``TextDetections[]`` items: ``{Timestamp, TextDetection}``."""
    return [{"Timestamp": row["Timestamp"], "TextDetection": text_detection(row)}
            for row in table.select(["Timestamp", *_KEYS]).to_pylist()]
