"""DetectLabels on one image, on the label analyzer's code path.

GENERAL_LABELS runs :class:`rekolab.analysis.labels.LabelDetectionAnalyzer` (CLIP
zero-shot over the taxonomy when a CLIP can be loaded, YOLOX instances) on the image as
a one-frame batch, so a still and a video frame get the same labels, confidences,
Parents, Aliases, Categories and Instances. IMAGE_PROPERTIES adds
:func:`rekolab.analysis.image_properties.image_properties`.

**Which models ran** is in ``LabelModelVersion`` (``"rekolab-labels/1 detector=yolox_nano"``
when CLIP is not available, ``"... clip=... detector=..."`` with it). A request whose
labels only CLIP could find (inclusion filters naming no label the detector or its
parents can produce) is refused with ``InvalidParameterException`` when CLIP cannot run,
instead of silently returning nothing; naming a model with the rekolab extension
``Models`` / ``ClipModel`` / ``DetectorModel`` makes it required, as in StartLabelDetection.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict

import numpy as np

from ..errors import InvalidParameterException
from .colors import INSTANCE_COLORS, box_colors
from .image_properties import DEFAULT_MAX_DOMINANT_COLORS, image_properties

__all__ = ["detect_labels", "DEFAULT_MIN_CONFIDENCE", "MAX_LABELS", "check_request"]

#: DetectLabels' documented defaults (StartLabelDetection's MinConfidence default is 50).
DEFAULT_MIN_CONFIDENCE = 55.0
MAX_LABELS = 1000
_EXTENSIONS = ("ExtraLabels", "Models", "ClipModel", "DetectorModel")

_LOCK = threading.Lock()
_ANALYZERS: "OrderedDict[str, object]" = OrderedDict()
_CACHE_SIZE = 4


def check_request(params: dict, operation: str = "DetectLabels") -> tuple[bool, bool]:
    """(GENERAL_LABELS?, IMAGE_PROPERTIES?) of a validated request; refuses Settings for
    a feature that was not asked for, and bad label/category filters (before any
    image is decoded)."""
    from .labels import check_start

    features = set(params.get("Features") or ["GENERAL_LABELS"])
    general, props = "GENERAL_LABELS" in features, "IMAGE_PROPERTIES" in features
    settings = params.get("Settings") or {}
    if "GeneralLabels" in settings and not general:
        raise InvalidParameterException(
            "Settings.GeneralLabels applies to the GENERAL_LABELS feature; add it to Features", operation)
    if "ImageProperties" in settings and not props:
        raise InvalidParameterException(
            "Settings.ImageProperties applies to the IMAGE_PROPERTIES feature; add it to Features", operation)
    if general:
        try:
            check_start(params)
        except InvalidParameterException as exc:
            raise InvalidParameterException(exc.message, operation) from None
    return general, props


def _analyzer(params: dict, operation: str):
    """The (cached) label analyzer of the request's label options."""
    from .labels import LabelDetectionAnalyzer, LabelModelsUnavailable

    opts = {k: params[k] for k in _EXTENSIONS if k in params}
    opts["MinConfidence"] = float(params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE))
    general = (params.get("Settings") or {}).get("GeneralLabels")
    if general:
        opts["Settings"] = {"GeneralLabels": general}
    key = json.dumps(opts, sort_keys=True)
    with _LOCK:
        found = _ANALYZERS.get(key)
        if found is not None:
            _ANALYZERS.move_to_end(key)
            return found
    try:
        analyzer = LabelDetectionAnalyzer(opts)
    except LabelModelsUnavailable as exc:
        raise InvalidParameterException(f"DetectLabels cannot run here: {exc}", operation) from None
    except FileNotFoundError as exc:
        raise InvalidParameterException(str(exc), operation) from None
    if analyzer.clip is None:
        _check_detector_can_answer(analyzer, operation)
    with _LOCK:
        _ANALYZERS[key] = analyzer
        while len(_ANALYZERS) > _CACHE_SIZE:
            _ANALYZERS.popitem(last=False)
    return analyzer


def _check_detector_can_answer(analyzer, operation: str) -> None:
    """Without CLIP only the detector's classes (and their ancestors) can be found: a
    request that asks only for other labels would come back empty, so it is refused."""
    labels = analyzer.labels
    reachable = np.zeros(len(labels), bool)
    for idx in analyzer.class_to_label:
        if idx < 0:
            continue
        reachable[idx] = True
        for parent in labels.parents[idx]:
            j = labels.index.get(parent["Name"])
            if j is not None:
                reachable[j] = True
    if not (reachable & labels.allowed).any():
        reason = analyzer.models()["Clip"].get("Reason", "CLIP is not available")
        raise InvalidParameterException(
            "The requested labels can only be found by CLIP, which cannot run here "
            f"({reason}); the YOLOX detector finds only its 80 COCO classes and their parents. "
            "Install CLIP weights (see docs/labels.md) or filter on detector labels", operation)


def detect_labels(bgr: np.ndarray, params: dict, operation: str = "DetectLabels") -> dict:
    """The DetectLabels response for a decoded BGR image and a validated request."""
    general, props = check_request(params, operation)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    max_colors = int(((params.get("Settings") or {}).get("ImageProperties") or {}).get(
        "MaxDominantColors", DEFAULT_MAX_DOMINANT_COLORS))
    out: dict = {}
    boxes: list[dict] = []
    if general:
        analyzer = _analyzer(params, operation)
        clip_conf = analyzer.clip_confidence([rgb]) if analyzer.clip is not None else None
        if analyzer.detector is not None:
            det_conf, instances = analyzer.detect([rgb])
        else:
            det_conf, instances = None, None
        rows = analyzer.rows([0], [0], [0], clip_conf, det_conf, instances)
        rows.sort(key=lambda r: (-r["Confidence"], r["Name"]))
        rows = rows[:min(int(params.get("MaxLabels", MAX_LABELS)), MAX_LABELS)]
        labels = []
        for r in rows:
            inst = []
            for i in r["Instances"]:
                boxes.append(i["BoundingBox"])
                colors = box_colors(rgb, i["BoundingBox"], min(INSTANCE_COLORS, max_colors)) if props else []
                inst.append({"BoundingBox": i["BoundingBox"], "Confidence": i["Confidence"],
                             "DominantColors": colors})
            labels.append({"Name": r["Name"], "Confidence": r["Confidence"], "Instances": inst,
                           "Parents": r["Parents"], "Aliases": r["Aliases"], "Categories": r["Categories"]})
        out["Labels"] = labels
        out["LabelModelVersion"] = analyzer.models()["LabelModelVersion"]
    if props:
        if not general:
            boxes = _instance_boxes(rgb, params)
        out["ImageProperties"] = image_properties(rgb, boxes, max_colors)
    return out


_DETECTORS: dict[float, object] = {}


def _instance_boxes(rgb: np.ndarray, params: dict) -> list[dict]:
    """Detector boxes for the Foreground when only IMAGE_PROPERTIES was asked for
    ([] without a detector: the saliency proxy is used)."""
    from .labels import CONFIDENCE_FLOOR, load_detector

    threshold = max(float(params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)), CONFIDENCE_FLOOR)
    with _LOCK:
        detector = _DETECTORS.get(threshold)
    if detector is None:
        detector, _ = load_detector({}, threshold)
        if detector is None:
            return []
        with _LOCK:
            _DETECTORS.clear()
            _DETECTORS[threshold] = detector
    h, w = rgb.shape[:2]
    dets = detector.detect_batch([np.ascontiguousarray(rgb[:, :, ::-1])])[0]
    return [{"Width": float(x2 - x1) / w, "Height": float(y2 - y1) / h, "Left": float(x1) / w, "Top": float(y1) / h}
            for (x1, y1, x2, y2), score in zip(dets.boxes_xyxy, dets.scores) if 100 * score >= threshold]
