"""Face tracks across sampled frames: one id per continuous appearance.

Greedy association, frame by frame. A detection joins the live track with the
highest score, where a pair scores when

* the boxes overlap: IoU >= ``iou_threshold`` (0.3), or
* the faces look alike: embedding cosine >= ``cosine_threshold`` (0.5) and the
  boxes' centres are within ``max_center_shift`` (0.25 of the frame) of each other,

and the track was last seen at most ``max_gap_ms`` (1000 ms) earlier. The score
is ``iou + cosine``; each track takes at most one detection per frame. An
unmatched detection starts a new track. Tracks therefore break at shot cuts
where the face jumps across the frame, and survive a missed detection or two.

Two optional rules keep one identity per track (used by the notebook views of
face detection, see :func:`rekolab.widgets.detections.face_tracks`):

* ``split_cosine``: a detection whose embedding has cosine below it with the
  track's appearance never continues that track, however much the boxes
  overlap (two people standing in the same place across a shot cut);
* ``cuts_ms``: shot-cut timestamps (ms, e.g. from a shot detector); no track
  continues across a cut.

Used by celebrity recognition (one name per appearance) and face search
(``Person.Index``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FaceTracker", "iou_matrix"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4 xyxy) with every box in ``b`` (M,4 xyxy)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


@dataclass
class _Track:
    id: int
    box: np.ndarray
    last_ms: int
    embedding: np.ndarray | None


class FaceTracker:
    """Assign track ids to the faces of consecutive sampled frames.

    Boxes are ratios of the frame (Rekognition's BoundingBox as xyxy), so the
    thresholds do not depend on resolution."""

    def __init__(self, iou_threshold: float = 0.3, cosine_threshold: float = 0.5,
                 max_gap_ms: int = 1000, max_center_shift: float = 0.25,
                 split_cosine: float | None = None, cuts_ms=None):
        self.iou_threshold = iou_threshold
        self.cosine_threshold = cosine_threshold
        self.max_gap_ms = max_gap_ms
        self.max_center_shift = max_center_shift
        self.split_cosine = split_cosine
        self.cuts_ms = np.unique(np.asarray(list(cuts_ms or []), np.int64))
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._last_ms: int | None = None

    def update(self, timestamp_ms: int, boxes_xyxy: np.ndarray,
               embeddings: np.ndarray | None = None) -> list[int]:
        """Track ids for this frame's faces (same order as ``boxes_xyxy``)."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        live = [t for t in self._tracks if timestamp_ms - t.last_ms <= self.max_gap_ms]
        if self._last_ms is not None and len(self.cuts_ms):
            # A cut in (previous frame, this frame]: every track ends there.
            lo, hi = np.searchsorted(self.cuts_ms, [self._last_ms, timestamp_ms], side="right")
            if hi > lo:
                live = []
        self._last_ms = int(timestamp_ms)
        self._tracks = live
        ids = [-1] * len(boxes)
        if live and len(boxes):
            score = self._scores(live, boxes, embeddings)
            while True:
                i, j = np.unravel_index(np.argmax(score), score.shape)
                if score[i, j] <= 0:
                    break
                ids[j] = live[i].id
                self._refresh(live[i], timestamp_ms, boxes[j], None if embeddings is None else embeddings[j])
                score[i, :] = 0
                score[:, j] = 0
        for j, tid in enumerate(ids):
            if tid == -1:
                track = _Track(self._next_id, boxes[j], timestamp_ms, None)
                self._refresh(track, timestamp_ms, boxes[j], None if embeddings is None else embeddings[j])
                self._next_id += 1
                self._tracks.append(track)
                ids[j] = track.id
        return ids

    def _scores(self, tracks, boxes, embeddings) -> np.ndarray:
        iou = iou_matrix(np.stack([t.box for t in tracks]), boxes)
        score = np.where(iou >= self.iou_threshold, iou, 0.0)
        if embeddings is not None:
            emb = np.asarray(embeddings, np.float64)
            for i, t in enumerate(tracks):
                if t.embedding is None:
                    continue
                with np.errstate(invalid="ignore"):
                    cos = emb @ t.embedding / np.maximum(np.linalg.norm(emb, axis=1) * np.linalg.norm(t.embedding), 1e-12)
                known = np.isfinite(cos)  # a face without an embedding (NaN row) links by IoU only
                cos = np.where(known, cos, 0.0)
                centre_t = (t.box[:2] + t.box[2:]) / 2
                shift = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre_t, axis=1)
                near = (cos >= self.cosine_threshold) & (shift <= self.max_center_shift)
                score[i] = np.where(near, iou[i] + cos, np.where(score[i] > 0, score[i] + np.maximum(cos, 0), 0))
                if self.split_cosine is not None:
                    score[i] = np.where(known & (cos < self.split_cosine), 0.0, score[i])
        return score

    @staticmethod
    def _refresh(track: _Track, ts: int, box: np.ndarray, embedding) -> None:
        track.box, track.last_ms = box, ts
        if embedding is not None and np.all(np.isfinite(embedding)):
            e = np.asarray(embedding, np.float64)
            # A running mean keeps the track's appearance stable through pose changes.
            track.embedding = e if track.embedding is None else 0.7 * track.embedding + 0.3 * e
