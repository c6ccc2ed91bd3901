"""The calibrations from face model outputs to Rekognition's 0-100 numbers: the
recognizer's cosine -> ``Similarity`` (:func:`similarity`) and the detector's score
-> face ``Confidence`` (:func:`face_confidence`), with their inverses.
:mod:`rekolab.models.faces` re-exports them; on its own so that the analysis modules
use them without importing the face pack's module."""
from __future__ import annotations

import os

import numpy as np

#: Cosine -> Rekognition ``Similarity`` (0-100): ``100 * sigmoid((cos - center) / scale)``.
#: Measured on the shared stills with MobileFaceNet (128-d): same person 0.58-0.78,
#: different people -0.10-0.08 (../shared/models/MANIFEST.md). With center 0.33 and
#: scale 0.05, same-person pairs score >= 99 and different people <= 1; Rekognition's
#: default FaceMatchThreshold of 80 falls at cosine 0.40. Override with
#: ``REKOLAB_FACE_SIMILARITY="center,scale"`` for another recognizer.
SIMILARITY_CENTER = 0.33
SIMILARITY_SCALE = 0.05


def _similarity_params() -> tuple[float, float]:
    override = os.environ.get("REKOLAB_FACE_SIMILARITY")
    if override:
        center, scale = (float(v) for v in override.split(","))
        return center, scale
    return SIMILARITY_CENTER, SIMILARITY_SCALE


def similarity(cosine):
    """Rekognition-style Similarity (0-100) from embedding cosine (scalar or array)."""
    center, scale = _similarity_params()
    return 100.0 / (1.0 + np.exp(-(np.asarray(cosine, dtype=np.float64) - center) / scale))


def cosine_for_similarity(percent: float) -> float:
    """The cosine at which :func:`similarity` equals ``percent`` (for thresholds)."""
    center, scale = _similarity_params()
    p = min(max(percent / 100.0, 1e-9), 1 - 1e-9)
    return center + scale * float(np.log(p / (1 - p)))


#: Detector score -> Rekognition ``Confidence`` (0-100), a logistic curve in the
#: score: ``100 * sigmoid((score - center) / scale)``. See :func:`face_confidence`.
FACE_CONFIDENCE_CENTER = 0.55
FACE_CONFIDENCE_SCALE = 0.04


def face_confidence(score):
    """Rekognition-style face ``Confidence`` (0-100) from the SCRFD detector score.

    SCRFD's score is a classifier output that tops out near 0.9 on sharp, frontal,
    well-lit faces; Rekognition reports such faces at 99.9+. The mapping is one
    monotone logistic curve (so ranking and any threshold on it are preserved),
    chosen from the scores measured on ../shared/media (scripts/measure_face_confidence.py,
    docs/server.md, "Face Confidence"): every clear face scored >= 0.74 there and
    maps to >= 99; a detection at the detector's own 0.5 floor reads 22, at 0.55 reads 50.
    Override with ``REKOLAB_FACE_CONFIDENCE="center,scale"``."""
    override = os.environ.get("REKOLAB_FACE_CONFIDENCE")
    center, scale = ((float(v) for v in override.split(",")) if override
                     else (FACE_CONFIDENCE_CENTER, FACE_CONFIDENCE_SCALE))
    return 100.0 / (1.0 + np.exp(-(np.asarray(score, dtype=np.float64) - center) / scale))


def face_score(confidence):
    """The inverse of :func:`face_confidence`: the detector score of a Confidence."""
    override = os.environ.get("REKOLAB_FACE_CONFIDENCE")
    center, scale = ((float(v) for v in override.split(",")) if override
                     else (FACE_CONFIDENCE_CENTER, FACE_CONFIDENCE_SCALE))
    p = np.clip(np.asarray(confidence, dtype=np.float64) / 100.0, 1e-12, 1 - 1e-12)
    return center + scale * np.log(p / (1 - p))
