"""Faces in one picture, and StartFaceDetection over sampled frames.

Per batch of sampled frames, StartFaceDetection's analyzer runs SCRFD (the pack's
detector) over every frame in one batched call and
:func:`rekolab.analysis.face_attributes.describe_faces_batch` builds each FaceDetail
(DEFAULT, or ALL with every attribute the installed models really produce), each
attribute model running once over the faces of all frames of the batch. The recognizer
is not run: face detection does not need embeddings.

:func:`detect_faces` is the same path for one picture (a batch of one):
DetectFaces, CompareFaces, IndexFaces and the search-by-image operations run it on a
still, with DEFAULT, ALL, or DEFAULT plus named attributes.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import InvalidParameterException
from ..models import onnx_providers
from ..models.backend import backend, frame_batch_size, torch_device
from ..models.faces import face_pack
from ..results.schema import FACE_DETAIL_FIELDS, FACES_SCHEMA
from ..video import FrameBatch
from .face_attributes import bgr_frames, describe_faces, describe_faces_batch
from .face_quality import quality_reasons, wanted_keys

__all__ = ["FaceDetectionAnalyzer", "FaceDetection", "detect_faces", "detect_faces_image", "compare_faces",
           "MAX_IMAGE_FACES", "DEFAULT_SIMILARITY_THRESHOLD"]

_FACE_KEYS = [name for name, _ in FACE_DETAIL_FIELDS]
#: DetectFaces describes (and CompareFaces compares against) the 100 largest faces.
MAX_IMAGE_FACES = 100
DEFAULT_SIMILARITY_THRESHOLD = 80.0
#: ComparedFace (CompareFaces' FaceMatches[].Face and UnmatchedFaces[]) members.
_COMPARED_KEYS = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "Emotions", "Smile"}


class FaceDetection:
    """Faces found in one BGR picture: pixel ``boxes`` (N, 4), ``scores`` (N,),
    ``kps`` (N, 5, 2), ``details`` (N FaceDetail dicts) and the ``pack`` that ran."""

    __slots__ = ("pack", "boxes", "scores", "kps", "details")

    def __init__(self, pack, boxes, scores, kps, details):
        self.pack, self.boxes, self.scores, self.kps, self.details = pack, boxes, scores, kps, details

    def __iter__(self):  # (pack, boxes, scores, kps, details), as collections.detect_faces returned
        return iter((self.pack, self.boxes, self.scores, self.kps, self.details))

    def __len__(self) -> int:
        return len(self.details)

    def __repr__(self) -> str:
        return f"FaceDetection({len(self)} faces, pack={self.pack.name!r})"

    @property
    def areas(self) -> np.ndarray:
        b = self.boxes
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) if len(b) else np.zeros(0)

    @property
    def min_sides(self) -> np.ndarray:
        b = self.boxes
        return np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) if len(b) else np.zeros(0)

    def largest_first(self) -> list[int]:
        return [int(i) for i in np.argsort(-self.areas, kind="stable")]


def detect_faces(bgr: np.ndarray, detection_attributes: list[str] | str | None = None, *, pack=None,
                 max_faces: int | None = None) -> FaceDetection:
    """Detect and describe the faces of one BGR uint8 picture.

    ``detection_attributes``: ``"DEFAULT"``, ``"ALL"`` or a list of Rekognition
    ``Attribute`` names (``["DEFAULT", "EMOTIONS"]``: the default keys plus Emotions).
    ``max_faces``: keep only the largest faces (in detector order)."""
    pack = pack or face_pack()
    if isinstance(detection_attributes, str):
        detection_attributes = [detection_attributes]
    boxes, scores, kps = pack.detect(bgr)
    if max_faces is not None and len(boxes) > max_faces:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = np.sort(np.argsort(-areas, kind="stable")[:max_faces])
        boxes, scores = boxes[keep], scores[keep]
        kps = kps[keep] if kps is not None else None
    compute, keep_keys = wanted_keys(detection_attributes)
    details = describe_faces(bgr, boxes, kps, scores, pack.attributes, compute) if len(boxes) else []
    if keep_keys is not None:
        details = [{k: v for k, v in d.items() if k in keep_keys} for d in details]
    return FaceDetection(pack, boxes, scores, kps, details)


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
        frames = bgr_frames(batch.frames)  # the decoder gives RGB; models want BGR
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


# ============================================================================ image operations


def detect_faces_image(bgr: np.ndarray, attributes: list[str] | None = None) -> dict:
    """DetectFaces: ``{FaceDetails}`` for the 100 largest faces, in detector order."""
    return {"FaceDetails": detect_faces(bgr, attributes or ["DEFAULT"], max_faces=MAX_IMAGE_FACES).details}


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def compare_faces(source_bgr: np.ndarray, target_bgr: np.ndarray,
                  similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD, quality_filter: str = "NONE",
                  operation: str = "CompareFaces") -> dict:
    """CompareFaces: the largest face of the source (that passes ``quality_filter``)
    against each of the target's 100 largest faces that pass it.

    Similarity is :func:`rekolab.models.faces.similarity` of the embeddings' cosine,
    the calibration face search uses. No face (after the filter) in either image ->
    ``InvalidParameterException``, as Rekognition."""
    from ..models.faces import similarity

    wanted = ["DEFAULT", "EMOTIONS", "SMILE"]
    src = detect_faces(source_bgr, wanted, max_faces=MAX_IMAGE_FACES)
    ok_src = [i for i in src.largest_first()
              if not quality_reasons(src.details[i], src.min_sides[i], quality_filter)]
    if not ok_src:
        raise InvalidParameterException(
            "There are no faces in the source image" + (f" that pass QualityFilter {quality_filter}"
                                                        if len(src) else "")
            + ". Give an image with a face (QualityFilter NONE keeps every detected face)", operation)
    tgt = detect_faces(target_bgr, wanted, pack=src.pack, max_faces=MAX_IMAGE_FACES)
    ok_tgt = [i for i in range(len(tgt))
              if not quality_reasons(tgt.details[i], tgt.min_sides[i], quality_filter)]
    if not ok_tgt:
        raise InvalidParameterException(
            "There are no faces in the target image" + (f" that pass QualityFilter {quality_filter}"
                                                        if len(tgt) else "") + ".", operation)
    s = ok_src[0]
    query = _unit(src.pack.embed(source_bgr, src.kps[s:s + 1]))[0]
    emb = _unit(tgt.pack.embed(target_bgr, tgt.kps[ok_tgt]))
    sims = similarity(emb @ query)
    matches, unmatched = [], []
    for i, sim in sorted(zip(ok_tgt, np.atleast_1d(sims)), key=lambda t: -t[1]):
        face = {k: v for k, v in tgt.details[i].items() if k in _COMPARED_KEYS}
        if sim >= similarity_threshold:
            matches.append({"Similarity": float(sim), "Face": face})
        else:
            unmatched.append(face)
    detail = src.details[s]
    return {"SourceImageFace": {"BoundingBox": detail["BoundingBox"], "Confidence": detail["Confidence"]},
            "FaceMatches": matches, "UnmatchedFaces": unmatched}


def _engine() -> str:
    """The engine running the ONNX models, for the job's metadata: ``torch (cuda)``,
    ``onnxruntime (CPUExecutionProvider)``, ..."""
    if backend() == "torch":
        return f"torch ({torch_device()})"
    return f"onnxruntime ({onnx_providers()[0]})"
