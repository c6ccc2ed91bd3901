"""The flat *detections* view of any job's results: one row per thing to draw.

Every job type stores its results in its own Arrow schema (``results/schema.py``
and the other operations' schemas). Timelines, frame viewers and dataset exports
all need the same few facts per detection, so each operation has one adapter
that turns its table into :data:`DETECTIONS_SCHEMA`:

=============  =====================================================================
Timestamp      ms, the sampled frame's presentation time (as in the Get* item)
FrameNumber    0-based frame number in decode order, or null when the job did not store it
Lane           the timeline lane: a face track, a label name, a celebrity, a matched person
Category       the class for COCO / FiftyOne exports ("face", "Car", "Lin-Manuel Miranda", ...)
Confidence     0-100, the value the minimum-confidence slider filters on
Left..Height   the BoundingBox (ratios of the frame, not clamped); null for a label
               seen on the frame with no instance box
Row            the row of the job's table this came from (for attributes in exports)
=============  =====================================================================

Face detection rows carry no track id (Rekognition's GetFaceDetection has none):
the face lanes are **face tracks computed at view time** by
:class:`rekolab.analysis.tracking.FaceTracker` (IoU >= 0.3 between consecutive
sampled frames, gaps up to 1 s). When the video and the face pack are at hand,
:func:`rekolab.analysis.identity.face_evidence` adds an embedding per face and
the shot cuts, so a track never holds two people: it breaks where consecutive
faces disagree (cosine < 0.30) and at every cut. One person can therefore appear
as several lanes, but one lane is one person.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DETECTIONS_SCHEMA", "detections", "register", "supported_operations", "LANE_KIND"]

F = pa.float64()
DETECTIONS_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("FrameNumber", pa.int64()),
    ("Lane", pa.string()),
    ("Category", pa.string()),
    ("Confidence", F),
    ("Left", F), ("Top", F), ("Width", F), ("Height", F),
    ("Row", pa.int64()),
])

#: What one lane is, per operation (the timeline's y-axis title).
LANE_KIND: dict[str, str] = {}

_ADAPTERS: dict[str, Callable[[pa.Table], pa.Table]] = {}


def register(operation: str, lane_kind: str):
    """Register the detections adapter of a Start* operation."""
    def wrap(fn):
        _ADAPTERS[operation] = fn
        LANE_KIND[operation] = lane_kind
        return fn
    return wrap


def supported_operations() -> list[str]:
    return sorted(_ADAPTERS)


def detections(operation: str, table: pa.Table, **context) -> pa.Table:
    """The job table of ``operation`` as :data:`DETECTIONS_SCHEMA` rows, sorted by Timestamp.
    ``context`` goes to adapters that take it (face detection: ``embeddings``, ``cuts_ms``)."""
    adapter = _ADAPTERS.get(operation)
    if adapter is None:
        if "Timestamp" not in table.column_names:
            raise ValueError(f"no timeline/export view for {operation} jobs yet (and its table has no "
                             f"Timestamp); supported: {', '.join(supported_operations())}")
        adapter = _generic
    out = adapter(table, **context) if context else adapter(table)
    if out.num_rows:
        out = out.take(pc.sort_indices(out, [("Timestamp", "ascending"), ("Row", "ascending")]))
    return out


# -- helpers ----------------------------------------------------------------------------
def _num(col: pa.ChunkedArray | pa.Array, dtype=np.float64, fill=np.nan) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.fill_null(fill).to_numpy(zero_copy_only=False).astype(dtype, copy=False) \
        if col.null_count else col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _field(col, *path):
    """A nested struct field of a (chunked) column, nulls where any parent is null."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    for name in path:
        arr = pc.struct_field(arr, name)
    return arr


def _box_columns(box) -> dict[str, np.ndarray]:
    return {k: _num(_field(box, k)) for k in ("Left", "Top", "Width", "Height")}


def _frame_numbers(table: pa.Table, n: int) -> pa.Array:
    if "FrameNumber" in table.column_names:
        return table.column("FrameNumber").combine_chunks().cast(pa.int64())
    return pa.nulls(n, pa.int64())


def build(timestamp, frame_number, lane, category, confidence, box: dict, row) -> pa.Table:
    """Assemble a detections table (boxes as float arrays with NaN for "no box")."""
    def opt(values):
        arr = np.asarray(values, dtype=np.float64)
        return pa.array(arr, F, mask=np.isnan(arr))
    return pa.table({
        "Timestamp": pa.array(np.asarray(timestamp, np.int64)),
        "FrameNumber": frame_number if isinstance(frame_number, (pa.Array, pa.ChunkedArray))
        else pa.array(frame_number, pa.int64()),
        "Lane": pa.array(lane, pa.string()),
        "Category": pa.array(category, pa.string()),
        "Confidence": opt(confidence),
        "Left": opt(box["Left"]), "Top": opt(box["Top"]),
        "Width": opt(box["Width"]), "Height": opt(box["Height"]),
        "Row": pa.array(np.asarray(row, np.int64)),
    }, schema=DETECTIONS_SCHEMA)


def face_tracks(timestamps: np.ndarray, boxes: dict[str, np.ndarray], embeddings: np.ndarray | None = None,
                cuts_ms=None, **tracker_kw) -> np.ndarray:
    """Track ids (0-based, in order of first appearance) for face rows, computed with
    :class:`~rekolab.analysis.tracking.FaceTracker` frame by frame. With
    ``embeddings`` (N, D; NaN rows for unknown) a track never continues with a
    face of cosine < ``SPLIT_COSINE``; with ``cuts_ms`` no track crosses a cut."""
    from ..analysis.identity import SPLIT_COSINE
    from ..analysis.tracking import FaceTracker

    if embeddings is not None:
        tracker_kw.setdefault("split_cosine", SPLIT_COSINE)

    n = len(timestamps)
    ids = np.full(n, -1, np.int64)
    if n == 0:
        return ids
    order = np.argsort(timestamps, kind="stable")
    ts_sorted = timestamps[order]
    xyxy = np.stack([boxes["Left"], boxes["Top"], boxes["Left"] + boxes["Width"],
                     boxes["Top"] + boxes["Height"]], axis=1)[order]
    starts = np.flatnonzero(np.r_[True, ts_sorted[1:] != ts_sorted[:-1]])
    ends = np.r_[starts[1:], n]
    tracker = FaceTracker(cuts_ms=cuts_ms, **tracker_kw)
    emb = None if embeddings is None else np.asarray(embeddings)[order]
    for s, e in zip(starts, ends):
        ids[order[s:e]] = tracker.update(int(ts_sorted[s]), xyxy[s:e], None if emb is None else emb[s:e])
    # Renumber by first appearance (then by position on the frame, left to right).
    first = {}
    for k in np.lexsort((xyxy[:, 0], ts_sorted)):
        first.setdefault(int(ids[order[k]]), len(first))
    return np.array([first[int(t)] for t in ids], np.int64)


# -- adapters ---------------------------------------------------------------------------
_NAME_FIELDS = ("Name", "DetectedText", "Type", "Index", "Id")


def _find(schema_fields, wanted: tuple[str, ...], path=(), depth: int = 3):
    """The path of the first (breadth-first) struct field named one of ``wanted``."""
    level = [(path + (f.name,), f) for f in schema_fields]
    while level and depth:
        for name in wanted:
            for p, f in level:
                if f.name == name:
                    return p
        level = [(p + (c.name,), c) for p, f in level if pa.types.is_struct(f.type) for c in f.type]
        depth -= 1
    return None


def _generic(table: pa.Table) -> pa.Table:
    """Any table with a Timestamp: a row per result; the lane is its first Name /
    DetectedText / Type / Index / Id field (top level or nested), the box its first
    BoundingBox, the confidence its first Confidence. Lets new operations show in the
    player and timelines before they register their own adapter."""
    n = table.num_rows
    fields = list(table.schema)

    def column(path):
        col = table.column(path[0])
        return _field(col, *path[1:]) if len(path) > 1 else col.combine_chunks()

    name_path = _find(fields, _NAME_FIELDS)
    lane = (pc.cast(column(name_path), pa.string()).fill_null("(none)") if name_path
            else pa.array(["result"] * n, pa.string()))
    box_path = _find(fields, ("BoundingBox",))
    box = _box_columns(column(box_path)) if box_path else {k: np.full(n, np.nan) for k in ("Left", "Top", "Width", "Height")}
    conf_path = _find(fields, ("Confidence",))
    conf = _num(column(conf_path)) if conf_path else np.full(n, np.nan)
    return build(_num(table.column("Timestamp"), np.int64, 0), _frame_numbers(table, n), lane, lane, conf, box,
                 np.arange(n))


@register("StartFaceDetection", "face track")
def _faces(table: pa.Table, embeddings: np.ndarray | None = None, cuts_ms=None) -> pa.Table:
    n = table.num_rows
    ts = _num(table.column("Timestamp"), np.int64, 0)
    box = _box_columns(table.column("BoundingBox"))
    tracks = face_tracks(ts, box, embeddings, cuts_ms)
    lanes = [f"face {t + 1}" for t in tracks]
    return build(ts, _frame_numbers(table, n), lanes, ["face"] * n,
                 _num(table.column("Confidence")), box, np.arange(n))


# -- a job's results, ready to view --------------------------------------------------------
class JobView:
    """What the timeline, frame viewer and exports need from one job: its table,
    VideoMetadata, request and video file, plus the derived detections and lanes.

    Build from a job (``JobView.from_job(job)``) or directly from an Arrow table
    (``JobView(table, "StartFaceDetection", video_metadata)``), e.g. results read
    back from a parquet file written by ``job.to_parquet``."""

    def __init__(self, table: pa.Table, operation: str, video_metadata: dict | None = None,
                 request: dict | None = None, video_path=None, job_id: str | None = None, *,
                 identity: str = "auto", cuts_ms=None):
        """``identity`` (face detection): ``"auto"`` uses face embeddings and shot cuts
        when the video and face pack are available and the job has at most
        ``MAX_IDENTITY_ROWS`` face rows (5000: about a minute of work on 2 cores),
        ``"embeddings"`` always does, ``"boxes"`` links boxes only;
        ``cuts_ms``: shot-cut timestamps from a shot detector (then the cheap
        histogram cut check is not used)."""
        from pathlib import Path

        if identity not in ("auto", "embeddings", "boxes"):
            raise ValueError("identity must be 'auto', 'embeddings' or 'boxes'")
        self.identity = identity
        self.cuts_ms = None if cuts_ms is None else [int(c) for c in cuts_ms]
        self.identity_note = ""
        self.table = table
        self.operation = operation
        self.video_metadata = dict(video_metadata or {})
        self.request = dict(request or {})
        self.video_path = Path(video_path) if video_path else None
        self.job_id = job_id
        self._detections: pa.Table | None = None
        self._lanes: dict = {}
        self._source = None
        self._source_error: str | None = None

    def __repr__(self) -> str:
        return f"JobView({self.operation}, {self.table.num_rows} rows, video={self.video_name!r})"

    @classmethod
    def from_job(cls, job) -> "JobView":
        from ..video import resolve_video

        path = None
        try:
            path = resolve_video(job.request["Video"], job._client.buckets).path
        except Exception:  # the video moved or is on S3 without s3fs: view without frames
            path = None
        return cls(job.to_arrow(), job.operation, job.video_metadata, job.request, path, job.id)

    @classmethod
    def from_parquet(cls, path, video_path=None) -> "JobView":
        """Results written by ``job.to_parquet`` (the request travels in the metadata)."""
        import json

        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"rekolab", b"{}"))
        request = meta.get("Request", {})
        if video_path is None and "Path" in request.get("Video", {}):
            video_path = request["Video"]["Path"]
        return cls(table, meta.get("API", ""), meta.get("VideoMetadata"), request, video_path,
                   meta.get("JobId"))

    # -- derived ---------------------------------------------------------------------
    @property
    def video_name(self) -> str:
        video = self.request.get("Video", {})
        name = video.get("Path") or video.get("S3Object", {}).get("Name") or ""
        return str(name).rsplit("/", 1)[-1]

    @property
    def duration_ms(self) -> int:
        return int(self.video_metadata.get("DurationMillis") or 0)

    @property
    def frame_size(self) -> tuple[int, int]:
        return int(self.video_metadata.get("FrameWidth") or 640), int(self.video_metadata.get("FrameHeight") or 360)

    @property
    def sample_interval_ms(self) -> float:
        from ..video import DEFAULT_SAMPLE_RATE

        return 1000.0 / float(self.request.get("SampleRate") or DEFAULT_SAMPLE_RATE)

    @property
    def detections(self) -> pa.Table:
        if self._detections is None:
            context = {}
            if self.operation == "StartFaceDetection":
                context = self._face_identity()
            self._detections = detections(self.operation, self.table, **context)
        return self._detections

    def _face_identity(self) -> dict:
        """Embeddings and cuts for the face tracker (see :mod:`rekolab.analysis.identity`)."""
        context = {"cuts_ms": self.cuts_ms}
        if self.identity == "boxes" or not self.table.num_rows:
            self.identity_note = "tracks from boxes" + (" and the given cuts" if self.cuts_ms else "")
            return context
        if self.identity == "auto" and self.table.num_rows > MAX_IDENTITY_ROWS:
            self.identity_note = (f"tracks from boxes only: {self.table.num_rows} face rows is over "
                                  f"{MAX_IDENTITY_ROWS} (JobView(..., identity='embeddings') embeds them all; "
                                  "cuts_ms= gives shot cuts)")
            return context
        if self.source is None:
            self.identity_note = f"tracks from boxes only ({self._source_error})"
            return context
        from ..analysis.identity import face_evidence

        box = _box_columns(self.table.column("BoundingBox"))
        xywh = np.stack([box["Left"], box["Top"], box["Width"], box["Height"]], 1)
        frames = _frame_numbers(self.table, self.table.num_rows)
        fn = None if frames.null_count else frames.to_numpy(zero_copy_only=False)
        try:
            emb, cuts = face_evidence(self.video_path, _num(self.table.column("Timestamp"), np.int64, 0),
                                      fn, xywh, source=self.source)
        except (ImportError, RuntimeError, FileNotFoundError) as exc:
            self.identity_note = f"tracks from boxes only (no face embeddings: {exc})"
            return context
        context["embeddings"] = emb
        if self.cuts_ms is None:
            context["cuts_ms"] = cuts
        self.identity_note = (f"tracks split by face embeddings (cosine < 0.30) and "
                              f"{len(context['cuts_ms'] or [])} shot cuts")
        return context

    def lanes(self, max_bins: int | None = None):
        from .lanes import DEFAULT_MAX_BINS, Lanes

        max_bins = max_bins or DEFAULT_MAX_BINS
        if max_bins not in self._lanes:
            title = f"{self.operation.removeprefix('Start')} · {self.video_name}".strip(' ·')
            self._lanes[max_bins] = Lanes.from_detections(
                self.detections, self.duration_ms, self.sample_interval_ms, max_bins,
                operation=self.operation, lane_kind=LANE_KIND.get(self.operation, "lane"), title=title)
        return self._lanes[max_bins]

    @property
    def source(self):
        """The :class:`~rekolab.widgets.frames.FrameSource`, or None without the video."""
        if self._source is None and self._source_error is None:
            if self.video_path is None or not self.video_path.is_file():
                self._source_error = "video not available"
            else:
                from .frames import FrameSource
                try:
                    self._source = FrameSource(self.video_path)
                except Exception as exc:
                    self._source_error = f"cannot decode the video: {exc}"
        return self._source

    def timestamps(self) -> np.ndarray:
        """Sorted unique result timestamps (ms)."""
        ts = self.detections.column("Timestamp").to_numpy()
        return np.unique(ts) if len(ts) else np.zeros(0, np.int64)

    def rows_at(self, timestamp_ms: int) -> pa.Table:
        """Detections at exactly one result timestamp."""
        ts = self.detections.column("Timestamp").to_numpy()
        lo, hi = np.searchsorted(ts, [timestamp_ms, timestamp_ms + 1])
        return self.detections.slice(lo, hi - lo)

    def nearest_timestamp(self, timestamp_ms: int, tolerance_ms: float | None = None) -> int | None:
        """The result timestamp nearest ``timestamp_ms`` within half a sampling interval."""
        uts = self.timestamps()
        if len(uts) == 0:
            return None
        tol = self.sample_interval_ms / 2 if tolerance_ms is None else tolerance_ms
        i = int(np.searchsorted(uts, timestamp_ms))
        best = min((c for c in (i - 1, i) if 0 <= c < len(uts)), key=lambda c: abs(int(uts[c]) - timestamp_ms))
        return int(uts[best]) if abs(int(uts[best]) - timestamp_ms) <= tol else None


def _list_column(table: pa.Table, name: str) -> tuple[np.ndarray, pa.Array]:
    """(row index of each list item, the flattened items) of a list column."""
    col = table.column(name).combine_chunks()
    counts = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.repeat(np.arange(len(col)), counts), pc.list_flatten(col)


@register("StartLabelDetection", "label")
def _labels(table: pa.Table) -> pa.Table:
    """One box-less row per (frame, label) with the label's Confidence (the lane),
    plus one row per instance box with the instance's Confidence (what is drawn and
    exported). Lane and Category are the label Name."""
    n = table.num_rows
    ts = _num(table.column("Timestamp"), np.int64, 0)
    names = table.column("Name").combine_chunks()
    frames = _frame_numbers(table, n)
    nan = np.full(n, np.nan)
    label_rows = build(ts, frames, names, names, _num(table.column("Confidence")),
                       {"Left": nan, "Top": nan, "Width": nan, "Height": nan}, np.arange(n))
    if "Instances" not in table.column_names:
        return label_rows
    rows, inst = _list_column(table, "Instances")
    if not len(rows):
        return label_rows
    box = _box_columns(pc.struct_field(inst, "BoundingBox"))
    inst_rows = build(ts[rows], frames.take(pa.array(rows)), names.take(pa.array(rows)),
                      names.take(pa.array(rows)), _num(pc.struct_field(inst, "Confidence")), box, rows)
    return pa.concat_tables([label_rows, inst_rows])


@register("StartCelebrityRecognition", "celebrity")
def _celebrities(table: pa.Table) -> pa.Table:
    """One row per recognized face: lane and category = the celebrity's Name, the
    slider filters the match Confidence, the box is Celebrity.BoundingBox."""
    n = table.num_rows
    names = table.column("Name").combine_chunks()
    return build(_num(table.column("Timestamp"), np.int64, 0), _frame_numbers(table, n), names, names,
                 _num(table.column("Confidence")), _box_columns(table.column("BoundingBox")), np.arange(n))


UNMATCHED = "no match"

#: Face rows up to which ``identity="auto"`` embeds every face (see JobView).
MAX_IDENTITY_ROWS = 5000


@register("StartFaceSearch", "person")
def _face_search(table: pa.Table) -> pa.Table:
    """One row per detected face. Matched: lane and category = the best match's
    ExternalImageId (else its FaceId), confidence = its Similarity. Unmatched faces
    share one lane, "no match", with category "face" and the face detection
    Confidence."""
    n = table.num_rows
    ts = _num(table.column("Timestamp"), np.int64, 0)
    conf = _num(table.column("Confidence")).copy()
    lanes, cats = [], []
    for i, matches in enumerate(table.column("FaceMatches").to_pylist()):
        best = max(matches or [], key=lambda m: m.get("Similarity") or 0.0, default=None)
        if best is None:
            lanes.append(UNMATCHED)
            cats.append("face")
            continue
        face = best.get("Face") or {}
        name = face.get("ExternalImageId") or face.get("FaceId") or "match"
        lanes.append(name)
        cats.append(name)
        conf[i] = best.get("Similarity") if best.get("Similarity") is not None else np.nan
    return build(ts, _frame_numbers(table, n), lanes, cats, conf, _box_columns(table.column("BoundingBox")),
                 np.arange(n))


@register("StartTextDetection", "text line")
def _text(table: pa.Table) -> pa.Table:
    """One row per detected LINE: the lane is the line's text (a lane per distinct
    line), category "text", the box is the line's BoundingBox. Words are not lanes."""
    lines = table.filter(pc.equal(table.column("Type"), "LINE"))
    rows = np.flatnonzero(np.asarray(pc.equal(table.column("Type"), "LINE").to_numpy(zero_copy_only=False)))
    n = lines.num_rows
    text = lines.column("DetectedText").combine_chunks()
    return build(_num(lines.column("Timestamp"), np.int64, 0), _frame_numbers(lines, n), text, ["text"] * n,
                 _num(lines.column("Confidence")), _box_columns(pc.struct_field(
                     lines.column("Geometry").combine_chunks(), "BoundingBox")), rows)


#: Spans are drawn as one box-less detection every this many ms of the segment.
SEGMENT_STEP_MS = 200


@register("StartSegmentDetection", "segment")
def _segments(table: pa.Table) -> pa.Table:
    """Segments are spans: each becomes box-less detections every SEGMENT_STEP_MS
    from its start to its end. Lanes: one per technical cue type (BlackFrames,
    ColorBars, Content, ...) and two for shots, "shot (even)" and "shot (odd)" by
    Index, so consecutive shots stay apart."""
    ts, lanes, conf, rows = [], [], [], []
    for i, row in enumerate(table.select(["StartTimestampMillis", "EndTimestampMillis", "TechnicalCueSegment",
                                          "ShotSegment"]).to_pylist()):
        if row["ShotSegment"]:
            lane = f"shot ({'odd' if row['ShotSegment']['Index'] % 2 else 'even'})"
            c = row["ShotSegment"]["Confidence"]
        else:
            lane, c = row["TechnicalCueSegment"]["Type"], row["TechnicalCueSegment"]["Confidence"]
        times = np.arange(row["StartTimestampMillis"], max(row["EndTimestampMillis"], row["StartTimestampMillis"] + 1),
                          SEGMENT_STEP_MS)
        ts.append(times)
        lanes += [lane] * len(times)
        conf += [c] * len(times)
        rows += [i] * len(times)
    ts = np.concatenate(ts) if ts else np.zeros(0, np.int64)
    nan = np.full(len(ts), np.nan)
    return build(ts, pa.nulls(len(ts), pa.int64()), lanes, lanes, conf,
                 {"Left": nan, "Top": nan, "Width": nan, "Height": nan}, rows)
@register("StartContentModeration", "moderation label")
def _moderation(table: pa.Table) -> pa.Table:
    """Like labels: one box-less row per (frame, moderation label) for the lane, plus
    one row per NudeNet box (drawn and exported). Lane and Category are the label Name."""
    return _labels(table)


@register("StartPersonTracking", "person")
def _persons(table: pa.Table) -> pa.Table:
    """One row per tracked person: lane ``person <Index>`` and category ``person``, the
    body box, the detector's Confidence."""
    n = table.num_rows
    index = _num(table.column("Index"), np.int64, 0)
    return build(_num(table.column("Timestamp"), np.int64, 0), _frame_numbers(table, n),
                 [f"person {i}" for i in index], ["person"] * n, _num(table.column("Confidence")),
                 _box_columns(table.column("BoundingBox")), np.arange(n))
