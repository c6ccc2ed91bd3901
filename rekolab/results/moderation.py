"""StartContentModeration results: the Arrow schema, GetContentModeration's views of
it (TIMESTAMPS / SEGMENTS, sorted by TIMESTAMP / NAME) and rendering to
``ModerationLabels[]`` items.

One row per (sampled frame, moderation label)::

    Timestamp      int64   PTS of the sampled frame, ms
    FrameNumber    int64   0-based frame number in decode order
    SampleIndex    int64   0-based ordinal of the sampled frame
    Name           string  the moderation label (Rekognition's v7 taxonomy)
    ParentName     string  its parent ("" for a top-level category)
    TaxonomyLevel  int64   1, 2 or 3
    Confidence     float64 0..100 (a parent is at least as confident as its children)
    ContentTypes   list<struct<Confidence, Name>>  Animated / Illustrated (CLIP only)
    Instances      list<struct<BoundingBox, Confidence>>  NudeNet boxes (rekolab extra)
    Source         list<string>  NUDENET, CLIP, and CHILD when a descendant raised it

Rows are stored in TIMESTAMP order (time, then name).

**SEGMENTS** merges a label's detections in consecutive sampled frames, exactly as
label detection does (:mod:`rekolab.results.labels`): Start/End are the first and
last detection's Timestamps, ``Timestamp = StartTimestampMillis``, Confidence is the
segment's maximum, ContentTypes the first detection's.

**SortBy** ``TIMESTAMP``: time, then name; ``NAME``: name, then time.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .render import drop_nulls
from .schema import BOUNDING_BOX

__all__ = ["MODERATION_SCHEMA", "CONTENT_TYPES", "moderation_view", "moderation_items",
           "moderation_segments", "sort_moderation", "moderation_label"]

F = pa.float64()
CONTENT_TYPES = pa.list_(pa.struct([("Confidence", F), ("Name", pa.string())]))
_INSTANCES = pa.list_(pa.struct([("BoundingBox", BOUNDING_BOX), ("Confidence", F)]))

MODERATION_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("FrameNumber", pa.int64()),
    ("SampleIndex", pa.int64()),
    ("Name", pa.string()),
    ("ParentName", pa.string()),
    ("TaxonomyLevel", pa.int64()),
    ("Confidence", F),
    ("ContentTypes", CONTENT_TYPES),
    ("Instances", _INSTANCES),
    ("Source", pa.list_(pa.string())),
])

SEGMENTS_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("StartTimestampMillis", pa.int64()),
    ("EndTimestampMillis", pa.int64()),
    ("DurationMillis", pa.int64()),
    ("Name", pa.string()),
    ("ParentName", pa.string()),
    ("TaxonomyLevel", pa.int64()),
    ("Confidence", F),
    ("ContentTypes", CONTENT_TYPES),
    ("Detections", pa.int64()),
])


def moderation_segments(table: pa.Table) -> pa.Table:
    """Each label's detections in consecutive sampled frames merged into one segment."""
    if table.num_rows == 0:
        return SEGMENTS_SCHEMA.empty_table()
    t = table.sort_by([("Name", "ascending"), ("SampleIndex", "ascending")])
    codes = pc.dictionary_encode(t.column("Name").combine_chunks()).indices.to_numpy(zero_copy_only=False)
    sample = t.column("SampleIndex").to_numpy()
    new = np.ones(len(codes), dtype=bool)
    new[1:] = (codes[1:] != codes[:-1]) | (np.diff(sample) != 1)
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(codes)] - 1
    ts = t.column("Timestamp").to_numpy().astype(np.int64)
    first = pa.array(starts, pa.int64())
    out = pa.table({
        "Timestamp": ts[starts], "StartTimestampMillis": ts[starts], "EndTimestampMillis": ts[ends],
        "DurationMillis": ts[ends] - ts[starts],
        **{k: t.column(k).take(first) for k in ("Name", "ParentName", "TaxonomyLevel")},
        "Confidence": np.maximum.reduceat(t.column("Confidence").to_numpy(), starts).astype(np.float64),
        "ContentTypes": t.column("ContentTypes").take(first),
        "Detections": (ends - starts + 1).astype(np.int64),
    }, schema=SEGMENTS_SCHEMA)
    return sort_moderation(out, "TIMESTAMP")


def sort_moderation(table: pa.Table, sort_by: str) -> pa.Table:
    """``TIMESTAMP``: time, then name. ``NAME``: name, then time. Either view."""
    if sort_by == "NAME":
        keys = [("Name", "ascending"), ("Timestamp", "ascending")]
    else:
        keys = [("Timestamp", "ascending"), ("Name", "ascending")]
    return table.sort_by(keys)


def moderation_view(sort_by: str, aggregate_by: str):
    """The table GetContentModeration pages through, for one SortBy/AggregateBy
    (``None``: the stored table, already TIMESTAMP/TIMESTAMPS)."""
    if sort_by == "TIMESTAMP" and aggregate_by == "TIMESTAMPS":
        return None

    def make(table: pa.Table) -> pa.Table:
        base = moderation_segments(table) if aggregate_by == "SEGMENTS" else table
        return base if sort_by == "TIMESTAMP" else sort_moderation(base, sort_by)
    return make


def moderation_label(row: dict) -> dict:
    """A ``ModerationLabel`` from a row."""
    return {"Confidence": row["Confidence"], "Name": row["Name"], "ParentName": row["ParentName"] or "",
            "TaxonomyLevel": int(row["TaxonomyLevel"])}


def moderation_items(table: pa.Table) -> list[dict]:
    """GetContentModeration ``ModerationLabels[]`` items for rows of either view."""
    segments = "StartTimestampMillis" in table.column_names
    items = []
    for row in table.to_pylist():
        item = {"Timestamp": row["Timestamp"], "ModerationLabel": moderation_label(row)}
        if segments:
            item["StartTimestampMillis"] = row["StartTimestampMillis"]
            item["EndTimestampMillis"] = row["EndTimestampMillis"]
            item["DurationMillis"] = row["DurationMillis"]
        if row["ContentTypes"]:
            item["ContentTypes"] = [drop_nulls(c) for c in row["ContentTypes"]]
        items.append(item)
    return items
