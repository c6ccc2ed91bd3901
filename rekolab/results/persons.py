"""StartPersonTracking results: the Arrow schema, GetPersonTracking's orders and
rendering to ``Persons[]`` items.

One row per tracked person per sampled frame::

    Timestamp    int64    PTS of the sampled frame, ms
    FrameNumber  int64    0-based frame number in decode order
    Index        int64    Person.Index: 0-based, dense, numbered by first appearance
    BoundingBox  struct   Person.BoundingBox (the body box, ratios of the frame)
    Face         struct   Person.Face: the FaceDetail (DEFAULT attributes) of the face
                          inside the box, null when none was found
    Confidence   float64  the person detector's score x 100 (rekolab extra)
    Track        int64    the tracker's track before identity merging (rekolab extra)
    Shot         int64    0-based shot number from the cut detector (rekolab extra)

``SortBy`` ``TIMESTAMP`` (default): time, then Index; ``INDEX``: Index, each person's
items by detection confidence (highest first), then time, as the service model
documents for SortBy=INDEX (and as GetFaceSearch sorts).
"""
from __future__ import annotations

import pyarrow as pa

from .render import drop_nulls
from .schema import BOUNDING_BOX, DEFAULT_FACE_KEYS, FACE_DETAIL_FIELDS

__all__ = ["PERSONS_SCHEMA", "PERSON_FACE_TYPE", "person_items", "sort_persons"]

PERSON_FACE_TYPE = pa.struct([(n, t) for n, t in FACE_DETAIL_FIELDS if n in DEFAULT_FACE_KEYS])

PERSONS_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("FrameNumber", pa.int64()),
    ("Index", pa.int64()),
    ("BoundingBox", BOUNDING_BOX),
    ("Face", PERSON_FACE_TYPE),
    ("Confidence", pa.float64()),
    ("Track", pa.int64()),
    ("Shot", pa.int64()),
])


def sort_persons(sort_by: str):
    """GetPersonTracking order: ``TIMESTAMP`` (time, Index) or ``INDEX`` (Index, then
    detection confidence, highest first, then time)."""
    if sort_by == "INDEX":
        keys = [("Index", "ascending"), ("Confidence", "descending"), ("Timestamp", "ascending")]
    else:
        keys = [("Timestamp", "ascending"), ("Index", "ascending")]
    return lambda table: table.sort_by(keys)


def person_items(table: pa.Table) -> list[dict]:
    """GetPersonTracking ``Persons[]`` items for the rows of ``table``."""
    out = []
    for row in table.select(["Timestamp", "Index", "BoundingBox", "Face"]).to_pylist():
        person = {"Index": row["Index"], "BoundingBox": row["BoundingBox"]}
        if row["Face"] is not None:
            person["Face"] = drop_nulls(row["Face"])
        out.append({"Timestamp": row["Timestamp"], "Person": drop_nulls(person)})
    return out
