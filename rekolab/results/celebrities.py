"""StartCelebrityRecognition results: the Arrow schema, Get* items and sorting.

One row per recognized face per sampled frame. ``Timestamp``, ``Id``, ``Name``,
``Confidence``, ``BoundingBox``, ``Urls``, ``KnownGender`` and ``Face`` are the
``CelebrityRecognition`` item; ``TrackIndex`` (the appearance: one face tracked
across consecutive frames), ``FrameNumber`` and ``FrameConfidence`` (this frame's
own similarity to the named person) are rekolab extras for DataFrames and
exports, not part of Get* items.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .render import drop_nulls
from .schema import BOUNDING_BOX, DEFAULT_FACE_KEYS, FACE_DETAIL_TYPE

__all__ = ["CELEBRITIES_SCHEMA", "celebrity_items", "sort_celebrities"]

CELEBRITIES_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("Id", pa.string()),
    ("Name", pa.string()),
    ("Confidence", pa.float64()),
    ("BoundingBox", BOUNDING_BOX),
    ("Urls", pa.list_(pa.string())),
    ("KnownGender", pa.string()),
    ("Face", FACE_DETAIL_TYPE),
    ("TrackIndex", pa.int64()),
    ("FrameNumber", pa.int64()),
    ("FrameConfidence", pa.float64()),
])


def celebrity_items(table: pa.Table) -> list[dict]:
    """GetCelebrityRecognition ``Celebrities[]`` items for the rows of ``table``.

    ``Face`` carries the default attributes only (BoundingBox, Confidence,
    Landmarks, Pose, Quality), as GetCelebrityRecognition documents."""
    out = []
    for row in table.select(["Timestamp", "Id", "Name", "Confidence", "BoundingBox", "Urls",
                             "KnownGender", "Face"]).to_pylist():
        face = row["Face"] or {}
        celebrity = {
            "Urls": list(row["Urls"] or []),
            "Name": row["Name"],
            "Id": row["Id"],
            "Confidence": row["Confidence"],
            "BoundingBox": row["BoundingBox"],
            "Face": drop_nulls({k: face.get(k) for k in DEFAULT_FACE_KEYS}),
        }
        if row["KnownGender"]:
            celebrity["KnownGender"] = {"Type": row["KnownGender"]}
        out.append({"Timestamp": row["Timestamp"], "Celebrity": drop_nulls(celebrity)})
    return out


def sort_celebrities(table: pa.Table, sort_by: str = "TIMESTAMP") -> pa.Table:
    """``TIMESTAMP``: by time (then appearance); ``ID``: by celebrity Id, then time."""
    if sort_by == "ID":
        keys = [("Id", "ascending"), ("Timestamp", "ascending"), ("TrackIndex", "ascending")]
    else:
        keys = [("Timestamp", "ascending"), ("TrackIndex", "ascending")]
    return table.take(pc.sort_indices(table, sort_keys=keys))
