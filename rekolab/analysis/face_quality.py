"""Face quality bars (QualityFilter) and the FaceDetail keys a request asks for.

Shared by IndexFaces, SearchFacesByImage, SearchUsersByImage, CompareFaces and
DetectFaces (rekolab/collections.py, rekolab/users.py, rekolab/analysis/faces.py).
No heavy imports.
"""
from __future__ import annotations

import numpy as np

from ..models.faces import face_confidence, face_score
from ..results.schema import DEFAULT_FACE_KEYS

__all__ = ["QUALITY_BARS", "ATTRIBUTE_KEYS", "face_quality", "quality_reasons", "wanted_keys"]

#: QualityFilter bars. A face is filtered out with each reason whose test fails.
#: Measured on ../shared/media: sharp, frontal stills have detector scores 0.74-0.89,
#: Sharpness 30-94, Brightness 21-67, >= 96 px; the Hamilton clip's singer 71-86,
#: 29-77, 34-41, ~80 px; its dark, blurred audience Sharpness 0-9, Brightness 3-17.
#: ``min_side`` is the face box's shorter side in image pixels; ``quality`` bounds the
#: combined score of :func:`face_quality`. AUTO uses the MEDIUM bar. The confidence
#: bars are detector scores 0.5 / 0.6 / 0.7 put on the calibrated Confidence scale
#: (models.faces.face_confidence: 22.3 / 77.7 / 97.7).
QUALITY_BARS: dict[str, dict[str, float]] = {
    "LOW":    {"confidence": float(face_confidence(0.5)), "min_side": 16, "sharpness": 2, "brightness": 5,
               "yaw": 80, "pitch": 60, "quality": 0.10},
    "MEDIUM": {"confidence": float(face_confidence(0.6)), "min_side": 24, "sharpness": 5, "brightness": 10,
               "yaw": 70, "pitch": 45, "quality": 0.20},
    "HIGH":   {"confidence": float(face_confidence(0.7)), "min_side": 40, "sharpness": 15, "brightness": 20,
               "yaw": 45, "pitch": 30, "quality": 0.35},
}
QUALITY_BARS["AUTO"] = QUALITY_BARS["MEDIUM"]


def face_quality(detail: dict, min_side_px: float) -> float:
    """A 0..1 face quality: the geometric mean of detector confidence, sharpness
    (saturating at 50), brightness (best between 25 and 75) and size (saturating
    at a 64 px shorter side). Ranks faces for MaxFaces and gives LOW_FACE_QUALITY."""
    q = detail.get("Quality", {})
    terms = [
        float(face_score(detail["Confidence"])),  # the detector's own score (Confidence is calibrated)
        min(q.get("Sharpness", 0.0) / 50.0, 1.0),
        min(q.get("Brightness", 0.0) / 25.0, (100.0 - q.get("Brightness", 0.0)) / 25.0, 1.0),
        min(min_side_px / 64.0, 1.0),
    ]
    terms = np.clip(np.array(terms, dtype=np.float64), 1e-3, 1.0)
    return float(np.exp(np.log(terms).mean()))


def quality_reasons(detail: dict, min_side_px: float, level: str) -> list[str]:
    """The UnindexedFaces ``Reasons`` for a face under QualityFilter ``level``."""
    if level == "NONE":
        return []
    bar = QUALITY_BARS[level]
    q = detail.get("Quality", {})
    pose = detail.get("Pose", {})
    reasons = []
    if abs(pose.get("Yaw", 0.0)) > bar["yaw"] or abs(pose.get("Pitch", 0.0)) > bar["pitch"]:
        reasons.append("EXTREME_POSE")
    if q.get("Brightness", 100.0) < bar["brightness"]:
        reasons.append("LOW_BRIGHTNESS")
    if q.get("Sharpness", 100.0) < bar["sharpness"]:
        reasons.append("LOW_SHARPNESS")
    if detail["Confidence"] < bar["confidence"]:
        reasons.append("LOW_CONFIDENCE")
    if min_side_px < bar["min_side"]:
        reasons.append("SMALL_BOUNDING_BOX")
    if face_quality(detail, min_side_px) < bar["quality"]:
        reasons.append("LOW_FACE_QUALITY")
    return reasons


ATTRIBUTE_KEYS = {
    "AGE_RANGE": "AgeRange", "BEARD": "Beard", "EMOTIONS": "Emotions", "EYE_DIRECTION": "EyeDirection",
    "EYEGLASSES": "Eyeglasses", "EYES_OPEN": "EyesOpen", "GENDER": "Gender", "MOUTH_OPEN": "MouthOpen",
    "MUSTACHE": "Mustache", "FACE_OCCLUDED": "FaceOccluded", "SMILE": "Smile", "SUNGLASSES": "Sunglasses",
}


def wanted_keys(detection_attributes: list[str] | None) -> tuple[str, set[str] | None]:
    """("DEFAULT"|"ALL" to compute, keys to keep or None for all computed)."""
    attrs = set(detection_attributes or ["DEFAULT"])
    if "ALL" in attrs:
        return "ALL", None
    extra = {ATTRIBUTE_KEYS[a] for a in attrs if a in ATTRIBUTE_KEYS}
    if not extra:
        return "DEFAULT", None
    return "ALL", set(DEFAULT_FACE_KEYS) | extra
