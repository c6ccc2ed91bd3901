"""Long videos in parallel: split the sampled frames into segments, merge them exactly.

**Splitting.** The frames to analyse are chosen over the whole video (the decode
plan), then their positions ``0..n`` are cut into segments whose boundaries are
multiples of the batch size (16). So a segmented run analyses exactly the frames
of a single run, with the same timestamps, in the same batches: no frame is
dropped or doubled at a boundary, and batched models see identical inputs.

**Which operations split**, and how they are stitched, is data
(:mod:`rekolab.executors.policies`, re-exported here): :data:`POLICIES` names the
operations rekolab ships; any analyzer class can declare its own
``segmenting = {"identity": "<column>" | None}`` attribute. An operation with no
policy (e.g. one whose rows are decided only at the end, or one that plans its own
decode, as segment detection does) runs unsplit, on one worker, whatever its length.

**Stitching.** Stateless operations (faces, labels) are concatenated (labels'
``SampleIndex`` is counted over the whole video). Operations with an identity
column (face search ``Index``, celebrity appearance ``TrackIndex``) start each
segment after the first ``warm`` samples early, so their trackers reach the
boundary with the history a single run has there. Each identity of the new
segment seen in that overlap takes the identity of the same detection (same
frame, same position in it) in the previous segment; then identities are
renumbered in order of first appearance, as a single run numbers them. After
the merge, an analyzer with ``finalize`` (celebrity naming) runs it once over the
merged table. This reproduces the single run exactly when the tracker's
association at the boundary depends only on the overlap (FaceTracker forgets a
track after 1 s; the warm-up is at least 3 s); tests/test_datasets.py checks it
on a clip with faces crossing a boundary.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from .policies import POLICIES, analyzer_class, own_decode, policy_for  # noqa: F401 (re-exported)
from .work import BATCH_SIZE

__all__ = ["POLICIES", "policy_for", "analyzer_class", "own_decode", "plan_segments", "merge_segments",
           "merge_group", "renumber"]

#: seconds of video run before a segment so trackers have the boundary's history.
WARM_S = 3.0


def plan_segments(samples: int, duration_ms: int, segment_s: float, sample_rate: float,
                  stateful: bool) -> list[tuple[int, int, int]]:
    """``[(warm_start, start, end)]`` sample positions covering ``0..samples``."""
    pieces = max(1, math.ceil(duration_ms / (segment_s * 1000.0)))
    size = max(BATCH_SIZE, math.ceil(samples / pieces / BATCH_SIZE) * BATCH_SIZE)
    warm = BATCH_SIZE * max(1, math.ceil(WARM_S * sample_rate / BATCH_SIZE)) if stateful else 0
    out = []
    for start in range(0, samples, size):
        out.append((max(0, start - warm), start, min(samples, start + size)))
    return out


def _frame_column(table: pa.Table) -> str:
    return "FrameNumber" if "FrameNumber" in table.column_names else "Timestamp"


def _frame_key(table: pa.Table) -> np.ndarray:
    return table.column(_frame_column(table)).to_numpy()


def _rank_in_frame(frames: np.ndarray) -> np.ndarray:
    """Position of each row among the rows of its frame (rows of a frame are adjacent)."""
    rank = np.zeros(len(frames), np.int64)
    for i in range(1, len(frames)):
        if frames[i] == frames[i - 1]:
            rank[i] = rank[i - 1] + 1
    return rank


def merge_segments(parts: list[tuple[pa.Table, dict]], identity: str | None) -> pa.Table:
    """Merge segment tables in order. ``parts``: ``(table, first)`` where ``first``
    holds the FrameNumber and Timestamp of the segment's first owned sample; rows
    before it are warm-up rows."""
    merged: pa.Table | None = None
    next_id = 0
    for table, first in parts:
        frames = _frame_key(table)
        first = first[_frame_column(table)]
        own = frames >= first
        owned = table.filter(pa.array(own))
        if identity is not None and owned.num_rows:
            ids = table.column(identity).to_numpy()
            mapping: dict[int, int] = {}
            if merged is not None and merged.num_rows and (~own).any():
                prev_frames = _frame_key(merged)
                prev_ids = merged.column(identity).to_numpy()
                prev_rank = _rank_in_frame(prev_frames)
                lookup = {(int(f), int(r)): int(i) for f, r, i in zip(prev_frames, prev_rank, prev_ids)}
                warm_rank = _rank_in_frame(frames)
                for f, r, i, o in zip(frames, warm_rank, ids, own):
                    if not o and (int(f), int(r)) in lookup:
                        mapping[int(i)] = lookup[(int(f), int(r))]  # latest overlap frame wins
            new_ids = []
            for i in ids[own]:
                i = int(i)
                if i not in mapping:
                    mapping[i] = next_id
                    next_id += 1
                new_ids.append(mapping[i])
            col = owned.schema.get_field_index(identity)
            owned = owned.set_column(col, identity, pa.array(new_ids, owned.schema.field(identity).type))
            next_id = max(next_id, max(new_ids) + 1)
        merged = owned if merged is None else pa.concat_tables([merged, owned])
    assert merged is not None, "no segments"
    return renumber(merged, identity) if identity is not None else merged


def merge_group(parts: list[tuple[dict, dict, dict]], operations: list[tuple[str, str | None]]
                ) -> tuple[dict[str, pa.Table], dict[str, bool]]:
    """Merge the segment results of one decode group. ``parts``: per segment, in
    order, ``(tables {op: Table}, first, finalize {op: bool})`` (``run_task``'s
    answer); ``operations``: ``[(op, identity column or None)]``. Returns the merged
    tables and, per operation, whether its analyzer still has to ``finalize`` them."""
    merged = {op: merge_segments([(p[0][op], p[1]) for p in parts], identity) for op, identity in operations}
    return merged, {op: parts[0][2].get(op, False) for op, _ in operations}


def renumber(table: pa.Table, identity: str) -> pa.Table:
    """Identities renumbered 0, 1, ... in order of first appearance (row order)."""
    ids = table.column(identity).to_numpy()
    order: dict[int, int] = {}
    for i in ids:
        order.setdefault(int(i), len(order))
    col = table.schema.get_field_index(identity)
    return table.set_column(col, identity, pa.array([order[int(i)] for i in ids],
                                                    table.schema.field(identity).type))
