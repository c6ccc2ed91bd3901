"""StartFaceDetection: sampled frames -> one Arrow row per face per frame.

Per frame: SCRFD (the pack's detector) finds faces and five keypoints; then
:func:`rekolab.analysis.face_attributes.describe_faces` builds each FaceDetail
(DEFAULT, or ALL with every attribute the installed models really produce).
The recognizer is not run: face detection does not need embeddings.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..models.faces import face_pack
from ..results.schema import FACE_DETAIL_FIELDS, FACES_SCHEMA
from ..video import FrameBatch
from .face_attributes import describe_faces

__all__ = ["FaceDetectionAnalyzer"]

_FACE_KEYS = [name for name, _ in FACE_DETAIL_FIELDS]


class FaceDetectionAnalyzer:
    schema = FACES_SCHEMA

    def __init__(self, params: dict):
        self.attributes = params.get("FaceAttributes", "DEFAULT")
        self.pack = face_pack()

    def models(self) -> dict:
        """What ran, stored with the job: pack, detector, and each attribute's method."""
        return {
            "FacePack": self.pack.name,
            "Detector": type(self.pack.detector).__name__,
            "Attributes": self.pack.attributes.methods(self.attributes),
        }

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        rows: list[dict] = []
        for frame_rgb, ts, index in zip(batch.frames, batch.timestamps_ms, batch.indices):
            frame = np.ascontiguousarray(frame_rgb[:, :, ::-1])  # decord gives RGB; models want BGR
            boxes, scores, kps = self.pack.detect(frame)
            if len(boxes) == 0:
                continue
            details = describe_faces(frame, boxes, kps, scores, self.pack.attributes, self.attributes)
            for detail in details:
                row = {k: detail.get(k) for k in _FACE_KEYS}
                row["Timestamp"] = int(ts)
                row["FrameNumber"] = int(index)
                rows.append(row)
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)
