"""StartLabelDetection results: the Arrow schema, GetLabelDetection's views of it
(TIMESTAMPS / SEGMENTS, sorted by TIMESTAMP / NAME) and rendering to ``Labels[]`` items.

The job's table has one row per (sampled frame, label)::

    Timestamp      int64   PTS of the sampled frame, ms
    FrameNumber    int64   0-based frame number in decode order
    SampleIndex    int64   0-based ordinal of the sampled frame (0, 1, 2, ... in time order)
    Name           string  the label
    Confidence     float64 0..100, after parent propagation
    Parents        list<struct<Name>>   all ancestors, nearest first (from the taxonomy)
    Aliases        list<struct<Name>>
    Categories     list<struct<Name>>
    Instances      list<struct<BoundingBox, Confidence, DominantColors>>  detector boxes (only
                                 object labels), each with up to 3 colours of its pixels
    Source         list<string>  which models found it: CLIP, DETECTOR, and CHILD when a
                                 descendant's confidence raised it
    ClipConfidence float64 (null when CLIP did not run) CLIP's own score for this label

Rows are stored in TIMESTAMP order (time, then name), the default GetLabelDetection order.

**SEGMENTS.** Consecutive detections of a label are merged: two rows of one label are in
the same segment when their sampled frames are consecutive (``SampleIndex`` differs by 1),
i.e. the label was present in every sampled frame in between. A segment's
``StartTimestampMillis`` is its first detection's Timestamp, ``EndTimestampMillis`` its
last detection's Timestamp (so a label seen in one sampled frame has a 0 ms segment),
``DurationMillis = End - Start``, ``Timestamp = StartTimestampMillis`` (as the service
model says) and ``Confidence`` the segment's maximum (as the Developer Guide's example
says: "Maximum confidence score for Segment mode"). Segments carry no Instances.

**SortBy.** ``TIMESTAMP``: by time, then name. ``NAME``: grouped by label name (alphabetical),
each group by confidence, highest first, then by time.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .render import drop_nulls
from .schema import BOUNDING_BOX

__all__ = [
    "LABELS_SCHEMA",
    "NAME_LIST",
    "INSTANCE_TYPE",
    "DOMINANT_COLOR",
    "label_segments",
    "sort_labels",
    "label_view",
    "label_detection_items",
]

F = pa.float64()
NAME_LIST = pa.list_(pa.struct([("Name", pa.string())]))
#: Rekognition's DominantColor (rekolab/analysis/colors.py computes them).
DOMINANT_COLOR = pa.struct([("Red", pa.int64()), ("Blue", pa.int64()), ("Green", pa.int64()),
                            ("HexCode", pa.string()), ("CSSColor", pa.string()),
                            ("SimplifiedColor", pa.string()), ("PixelPercent", F)])
INSTANCE_TYPE = pa.struct([("BoundingBox", BOUNDING_BOX), ("Confidence", F),
                           ("DominantColors", pa.list_(DOMINANT_COLOR))])

LABELS_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("FrameNumber", pa.int64()),
    ("SampleIndex", pa.int64()),
    ("Name", pa.string()),
    ("Confidence", F),
    ("Parents", NAME_LIST),
    ("Aliases", NAME_LIST),
    ("Categories", NAME_LIST),
    ("Instances", pa.list_(INSTANCE_TYPE)),
    ("Source", pa.list_(pa.string())),
    ("ClipConfidence", F),
])

#: The SEGMENTS view: one row per segment.
SEGMENTS_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("StartTimestampMillis", pa.int64()),
    ("EndTimestampMillis", pa.int64()),
    ("DurationMillis", pa.int64()),
    ("Name", pa.string()),
    ("Confidence", F),
    ("Parents", NAME_LIST),
    ("Aliases", NAME_LIST),
    ("Categories", NAME_LIST),
    ("Detections", pa.int64()),
])


def label_segments(table: pa.Table) -> pa.Table:
    """Merge each label's detections in consecutive sampled frames into segments
    (see the module docstring). Returns a SEGMENTS-view table in TIMESTAMP order."""
    if table.num_rows == 0:
        return SEGMENTS_SCHEMA.empty_table()
    order = pc.sort_indices(table, sort_keys=[("Name", "ascending"), ("SampleIndex", "ascending")])
    t = table.take(order)
    names = t.column("Name").combine_chunks()
    codes = pc.dictionary_encode(names).indices.to_numpy(zero_copy_only=False)
    sample = t.column("SampleIndex").to_numpy()
    ts = t.column("Timestamp").to_numpy()
    conf = t.column("Confidence").to_numpy()
    new = np.ones(len(codes), dtype=bool)
    new[1:] = (codes[1:] != codes[:-1]) | (np.diff(sample) != 1)
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(codes)] - 1
    seg_conf = np.maximum.reduceat(conf, starts)
    first = pa.array(starts, pa.int64())
    start_ms = ts[starts].astype(np.int64)
    end_ms = ts[ends].astype(np.int64)
    out = pa.table({
        "Timestamp": start_ms,
        "StartTimestampMillis": start_ms,
        "EndTimestampMillis": end_ms,
        "DurationMillis": end_ms - start_ms,
        "Name": t.column("Name").take(first),
        "Confidence": seg_conf.astype(np.float64),
        "Parents": t.column("Parents").take(first),
        "Aliases": t.column("Aliases").take(first),
        "Categories": t.column("Categories").take(first),
        "Detections": (ends - starts + 1).astype(np.int64),
    }, schema=SEGMENTS_SCHEMA)
    return sort_labels(out, "TIMESTAMP")


def sort_labels(table: pa.Table, sort_by: str) -> pa.Table:
    """``TIMESTAMP``: time, then name. ``NAME``: name, then confidence (highest first),
    then time. Works on both views."""
    if sort_by == "NAME":
        keys = [("Name", "ascending"), ("Confidence", "descending"), ("Timestamp", "ascending")]
    elif sort_by == "TIMESTAMP":
        keys = [("Timestamp", "ascending"), ("Name", "ascending")]
    else:
        raise ValueError(f"SortBy must be NAME or TIMESTAMP, not {sort_by!r}")
    return table.take(pc.sort_indices(table, sort_keys=keys))


_VIEWS: "OrderedDict[tuple, pa.Table]" = OrderedDict()
_VIEWS_LOCK = threading.Lock()
_MAX_VIEWS = 16


def label_view(table: pa.Table, job_id: str, sort_by: str, aggregate_by: str) -> pa.Table:
    """The table GetLabelDetection pages through, for one SortBy/AggregateBy.

    The stored table already is the TIMESTAMP/TIMESTAMPS view; other views are
    computed once and kept (a few, least recently used first out)."""
    if sort_by == "TIMESTAMP" and aggregate_by == "TIMESTAMPS":
        return table
    key = (job_id, id(table), table.num_rows, sort_by, aggregate_by)
    with _VIEWS_LOCK:
        view = _VIEWS.get(key)
        if view is not None:
            _VIEWS.move_to_end(key)
            return view
    base = label_segments(table) if aggregate_by == "SEGMENTS" else table
    view = base if sort_by == "TIMESTAMP" else sort_labels(base, sort_by)
    with _VIEWS_LOCK:
        _VIEWS[key] = view
        while len(_VIEWS) > _MAX_VIEWS:
            _VIEWS.popitem(last=False)
    return view


def label_detection_items(table: pa.Table) -> list[dict]:
    """GetLabelDetection ``Labels[]`` items for rows of either view.

    TIMESTAMPS rows give ``{Timestamp, Label{Name, Confidence, Instances, Parents,
    Aliases, Categories}}`` (``Instances`` is ``[]`` for labels without boxes, as in
    Rekognition); SEGMENTS rows add Start/End/DurationMillis and have no Instances."""
    segments = "StartTimestampMillis" in table.column_names
    items = []
    for row in table.to_pylist():
        label = {"Name": row["Name"], "Confidence": row["Confidence"]}
        if not segments:
            label["Instances"] = [drop_nulls(i) for i in row["Instances"] or []]
        label["Parents"] = row["Parents"] or []
        label["Aliases"] = row["Aliases"] or []
        label["Categories"] = row["Categories"] or []
        item = {"Timestamp": row["Timestamp"], "Label": label}
        if segments:
            item["StartTimestampMillis"] = row["StartTimestampMillis"]
            item["EndTimestampMillis"] = row["EndTimestampMillis"]
            item["DurationMillis"] = row["DurationMillis"]
        items.append(item)
    return items
