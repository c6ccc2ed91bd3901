"""StartFaceSearch: sampled frames -> one Arrow row per detected face per frame.

Per sampled frame:

1. the face pack's detector (SCRFD) finds faces and five keypoints;
2. the recognizer embeds each face (L2-normalised; 128-d with MobileFaceNet);
3. :class:`~rekolab.analysis.tracking.FaceTracker` links faces across frames
   (box IoU, or embedding cosine with a bounded jump): its track id is
   ``Person.Index``, so one person keeps one Index through a shot. Tracks end at
   shot cuts: a cut is a sampled frame whose hue-saturation histogram (16 x 16
   bins) is at Bhattacharyya distance > 0.35 from the previous sample's (on the
   Hamilton clip the three cuts read 0.45-0.53, camera moves within a shot at
   most 0.22). Without this, a face that appears where the last shot's face was
   would inherit its Index;
4. :func:`~rekolab.analysis.face_attributes.describe_faces` gives ``Person.Face``
   with the DEFAULT attributes only (BoundingBox, Confidence, Landmarks, Pose,
   Quality), as GetFaceSearch returns;
5. :func:`rekolab.collections.search_embeddings` matches each face against the
   collection: ``FaceMatches`` with Similarity >= FaceMatchThreshold (default 80),
   highest first, decided per face (the faces of a whole batch of frames go in one
   call: one matrix product per collection segment).

Every detected face is a row, matched or not (Rekognition returns persons with an
empty ``FaceMatches`` too). ``Person.BoundingBox`` (the body box) is left out: no
person detector runs here, and the face box is ``Person.Face.BoundingBox``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..collections import DEFAULT_FACE_MATCH_THRESHOLD, collection_face_model_version, search_embeddings
from ..models.backend import frame_batch_size
from ..models.faces import SIMILARITY_CENTER, SIMILARITY_SCALE, face_pack
from ..results.render import drop_nulls, face_detail
from ..results.schema import BOUNDING_BOX, DEFAULT_FACE_KEYS, FACE_DETAIL_FIELDS
from ..video import FrameBatch
from .tracking import FaceTracker

__all__ = ["FaceSearchAnalyzer", "FACE_SEARCH_SCHEMA", "face_search_items", "sort_face_search"]

_F = pa.float64()
_MATCHED_FACE = pa.struct([
    ("FaceId", pa.string()), ("BoundingBox", BOUNDING_BOX), ("ImageId", pa.string()),
    ("ExternalImageId", pa.string()), ("Confidence", _F), ("IndexFacesModelVersion", pa.string()),
])
_FACE_MATCHES = pa.list_(pa.struct([("Similarity", _F), ("Face", _MATCHED_FACE)]))
_DEFAULT_FIELDS = [(n, t) for n, t in FACE_DETAIL_FIELDS if n in DEFAULT_FACE_KEYS]

#: One row per face per sampled frame. ``Index`` is Person.Index (the face track);
#: the FaceDetail columns are Person.Face; FrameNumber is a rekolab extra.
FACE_SEARCH_SCHEMA = pa.schema(
    [("Timestamp", pa.int64()), ("FrameNumber", pa.int64()), ("Index", pa.int64())]
    + _DEFAULT_FIELDS + [("FaceMatches", _FACE_MATCHES)])
_FACE_KEYS = [n for n, _ in _DEFAULT_FIELDS]


class FaceSearchAnalyzer:
    schema = FACE_SEARCH_SCHEMA

    def __init__(self, params: dict):
        self.collection_id = params["CollectionId"]
        self.threshold = float(params.get("FaceMatchThreshold", DEFAULT_FACE_MATCH_THRESHOLD))
        self.pack = face_pack()
        self.face_model_version = collection_face_model_version(self.collection_id)
        self.tracker = FaceTracker()
        self._index_offset = 0   # Person.Index = offset + the current tracker's id
        self._next_index = 0
        self._last_hist = None
        from .face_attributes import bgr_frames, describe_faces_batch  # cv2: only when a job runs

        self._describe, self._bgr = describe_faces_batch, bgr_frames
        self.batch_size = frame_batch_size()

    def models(self) -> dict:
        rec = self.pack.recognizer
        return {
            "FacePack": self.pack.name,
            "Detector": type(self.pack.detector).__name__,
            "Recognizer": f"{type(rec).__name__} ({rec.output_shape[-1]}-d)" if rec is not None else None,
            "CollectionId": self.collection_id,
            "FaceModelVersion": self.face_model_version,
            "Similarity": f"100 * sigmoid((cosine - {SIMILARITY_CENTER}) / {SIMILARITY_SCALE})",
            "Tracker": (f"FaceTracker(iou>={self.tracker.iou_threshold}, cosine>={self.tracker.cosine_threshold}, "
                        f"gap<={self.tracker.max_gap_ms} ms), reset at shot cuts (HS histogram "
                        f"Bhattacharyya > {SHOT_CUT_DISTANCE})"),
            "Attributes": self.pack.attributes.methods("DEFAULT"),
        }

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        # The models see the whole batch (one detector call, one recognizer call, one
        # call per attribute model); tracking and matching then go frame by frame.
        frames = self._bgr(batch.frames)  # the decoder gives RGB; models want BGR
        found = self.pack.detect_batch(frames)
        kps = [f[2] for f in found]
        embeddings = self.pack.embed_batch(frames, kps)
        details = self._describe(frames, [f[0] for f in found], kps, [f[1] for f in found],
                                 self.pack.attributes, "DEFAULT")
        # One search for every face of the batch (a face's matches do not depend on the
        # other faces, up to float32 rounding of the larger product: Similarity moves by at
        # most ~2e-5 of 100, see docs/performance.md): one matrix product per collection
        # segment, not one per frame.
        matches = _split(search_embeddings(self.collection_id, np.concatenate(embeddings), self.threshold,
                                           face_model_version=self.pack.version)
                         if sum(len(e) for e in embeddings) else [], [len(e) for e in embeddings])
        rows: list[dict] = []
        for k, (frame, ts, index) in enumerate(zip(frames, batch.timestamps_ms, batch.indices)):
            if self._shot_cut(frame):
                self.tracker = FaceTracker()
                self._index_offset = self._next_index
            boxes = found[k][0]
            h, w = frame.shape[:2]
            if len(boxes) == 0:
                self.tracker.update(int(ts), np.zeros((0, 4)))
                continue
            ids = [self._index_offset + i for i in
                   self.tracker.update(int(ts), boxes / np.array([w, h, w, h], np.float64), embeddings[k])]
            self._next_index = max(self._next_index, max(ids) + 1)
            for detail, track, match in zip(details[k], ids, matches[k]):
                row = {key: detail.get(key) for key in _FACE_KEYS}
                row.update(Timestamp=int(ts), FrameNumber=int(index), Index=int(track), FaceMatches=match)
                rows.append(row)
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)

    def _shot_cut(self, frame_bgr: np.ndarray) -> bool:
        import cv2

        hist = _hs_histogram(frame_bgr)
        prev, self._last_hist = self._last_hist, hist
        return prev is not None and cv2.compareHist(prev, hist, cv2.HISTCMP_BHATTACHARYYA) > SHOT_CUT_DISTANCE


SHOT_CUT_DISTANCE = 0.35


def _split(items: list, counts: list[int]) -> list[list]:
    """``items`` cut into consecutive runs of ``counts``."""
    ends = np.cumsum(counts).tolist()
    return [items[end - n:end] for n, end in zip(counts, ends)]


def _hs_histogram(frame_bgr: np.ndarray) -> np.ndarray:
    import cv2

    small = cv2.resize(frame_bgr, (160, 90), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 16], [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1, 0, cv2.NORM_L1)


def sort_face_search(sort_by: str | None):
    """GetFaceSearch ordering. TIMESTAMP (default): by Timestamp, then Index.
    INDEX: by person, each person's items by detection confidence (highest first),
    then Timestamp, as the service documents for SortBy=INDEX."""
    if sort_by == "INDEX":
        keys = [("Index", "ascending"), ("Confidence", "descending"), ("Timestamp", "ascending")]
    else:
        keys = [("Timestamp", "ascending"), ("Index", "ascending")]
    return lambda table: table.sort_by(keys)


def face_search_items(table: pa.Table) -> list[dict]:
    """GetFaceSearch ``Persons[]`` items for the rows of ``table``."""
    out = []
    for row in table.to_pylist():
        out.append({
            "Timestamp": row["Timestamp"],
            "Person": {"Index": row["Index"], "Face": face_detail(row, _FACE_KEYS)},
            "FaceMatches": [drop_nulls(m) for m in row["FaceMatches"] or []],
        })
    return out
