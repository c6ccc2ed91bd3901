"""StartFaceDetection: sampled frames -> one Arrow row per face per frame.

Per batch of sampled frames: SCRFD (the pack's detector) finds faces and five
keypoints in every frame (one batched model call on the GPU); then
:func:`rekolab.analysis.face_attributes.describe_faces_batch` builds each FaceDetail
(DEFAULT, or ALL with every attribute the installed models really produce), each
attribute model running once over the faces of all frames of the batch.
The recognizer is not run: face detection does not need embeddings.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..models import onnx_providers
from ..models.backend import backend, frame_batch_size, torch_device
from ..models.faces import face_pack
from ..results.schema import FACE_DETAIL_FIELDS, FACES_SCHEMA
from ..video import FrameBatch
from .face_attributes import describe_faces_batch

__all__ = ["FaceDetectionAnalyzer"]

_FACE_KEYS = [name for name, _ in FACE_DETAIL_FIELDS]


class FaceDetectionAnalyzer:
    schema = FACES_SCHEMA

    def __init__(self, params: dict):
        self.attributes = params.get("FaceAttributes", "DEFAULT")
        self.pack = face_pack()
        self.batch_size = frame_batch_size()

    def models(self) -> dict:
        """What ran, stored with the job: pack, detector, and each attribute's method."""
        return {
            "FacePack": self.pack.name,
            "Detector": type(self.pack.detector).__name__,
            "Engine": _engine(),
            "Attributes": self.pack.attributes.methods(self.attributes),
        }

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in batch.frames]  # decord gives RGB; models want BGR
        found = self.pack.detect_batch(frames)
        details = describe_faces_batch(frames, [f[0] for f in found], [f[2] for f in found],
                                       [f[1] for f in found], self.pack.attributes, self.attributes)
        rows: list[dict] = []
        for frame_details, ts, index in zip(details, batch.timestamps_ms, batch.indices):
            for detail in frame_details:
                row = {k: detail.get(k) for k in _FACE_KEYS}
                row["Timestamp"] = int(ts)
                row["FrameNumber"] = int(index)
                rows.append(row)
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)


def _engine() -> str:
    """The engine running the ONNX models, for the job's metadata: ``torch (cuda)``,
    ``onnxruntime (CPUExecutionProvider)``, ..."""
    if backend() == "torch":
        return f"torch ({torch_device()})"
    return f"onnxruntime ({onnx_providers()[0]})"
