"""Text detection: StartTextDetection (sampled video frames) and DetectText (one
image) share :func:`detect_text` on the PP-OCRv4 model of :mod:`rekolab.models.ocr`.

Per image::

    lines, words = OCR lines and their words (see rekolab.models.ocr)
    a word is kept when    Confidence >= WordFilter.MinConfidence     (default 80)
                           BoundingBox.Height >= MinBoundingBoxHeight  (default 0)
                           BoundingBox.Width  >= MinBoundingBoxWidth   (default 0)
                           and, with RegionsOfInterest, more than half of its
                           area lies inside the regions (their union)
    a line is kept when at least one of its words is; when some of its words were
    dropped, its DetectedText is the kept words joined by spaces and its Geometry
    spans them (first kept word to last kept word, along the line)
    at most 100 words per image (Rekognition's limit), in reading order

``Id``: lines first (0, 1, ... top to bottom), then the words; a word's
``ParentId`` is its line's Id. ``Confidence``: a line's is the recogniser's score
for the line x 100, a word's the mean of its characters' scores x 100.
``Geometry.Polygon`` is the four corners (top-left, top-right, bottom-right,
bottom-left, clockwise) as ratios of the image; ``BoundingBox`` their bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import InvalidParameterException
from ..requests import check_range
from ..results.text import TEXT_SCHEMA
from ..video import FrameBatch

__all__ = ["TextFilters", "parse_filters", "detect_text", "TextDetectionAnalyzer", "check_start",
           "DEFAULT_MIN_CONFIDENCE", "MAX_WORDS", "MAX_POLYGON_POINTS"]

DEFAULT_MIN_CONFIDENCE = 80.0
MAX_WORDS = 100
MAX_POLYGON_POINTS = 10


@dataclass(frozen=True)
class TextFilters:
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    min_height: float = 0.0
    min_width: float = 0.0
    regions: tuple = ()  # shapely geometries in ratio coordinates

    def to_dict(self) -> dict:
        return {"MinConfidence": self.min_confidence, "MinBoundingBoxHeight": self.min_height,
                "MinBoundingBoxWidth": self.min_width, "RegionsOfInterest": len(self.regions)}


def _region(region, where: str, op: str):
    from shapely.geometry import Polygon, box

    if not isinstance(region, dict) or ("BoundingBox" in region) == ("Polygon" in region):
        raise InvalidParameterException(f"{where} must have exactly one of BoundingBox or Polygon", op)
    if "BoundingBox" in region:
        bb = region["BoundingBox"]
        missing = [k for k in ("Left", "Top", "Width", "Height") if not isinstance(bb, dict) or k not in bb]
        if missing:
            raise InvalidParameterException(f"{where}.BoundingBox needs {', '.join(missing)}", op)
        left = check_range(bb["Left"], f"{where}.BoundingBox.Left", 0, 1, op)
        top = check_range(bb["Top"], f"{where}.BoundingBox.Top", 0, 1, op)
        width = check_range(bb["Width"], f"{where}.BoundingBox.Width", 0, 1, op)
        height = check_range(bb["Height"], f"{where}.BoundingBox.Height", 0, 1, op)
        if width <= 0 or height <= 0:
            raise InvalidParameterException(f"{where}.BoundingBox must have a positive Width and Height", op)
        if left + width > 1 + 1e-9 or top + height > 1 + 1e-9:
            raise InvalidParameterException(
                f"{where}.BoundingBox reaches outside the image (Left + Width and Top + Height must be <= 1)", op)
        return box(left, top, left + width, top + height)
    points = region["Polygon"]
    if not isinstance(points, list) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
        raise InvalidParameterException(
            f"{where}.Polygon must have 3 to {MAX_POLYGON_POINTS} points", op)
    xy = []
    for i, p in enumerate(points):
        if not isinstance(p, dict) or "X" not in p or "Y" not in p:
            raise InvalidParameterException(f"{where}.Polygon[{i}] needs X and Y", op)
        xy.append((check_range(p["X"], f"{where}.Polygon[{i}].X", 0, 1, op),
                   check_range(p["Y"], f"{where}.Polygon[{i}].Y", 0, 1, op)))
    poly = Polygon(xy)
    if not poly.is_valid or poly.area <= 0:
        raise InvalidParameterException(
            f"{where}.Polygon is not a simple polygon with an area (its edges cross or its points are in a line)", op)
    return poly


def parse_filters(filters: dict | None, operation: str = "DetectText") -> TextFilters:
    """``Filters`` of StartTextDetection / DetectText -> :class:`TextFilters`.

    Values botocore's model already bounds are checked again here so a bad value
    names its field whichever surface it came from."""
    filters = filters or {}
    word = filters.get("WordFilter") or {}
    kw = {}
    for key, attr in (("MinConfidence", "min_confidence"), ("MinBoundingBoxHeight", "min_height"),
                      ("MinBoundingBoxWidth", "min_width")):
        if key in word:
            hi = 100 if key == "MinConfidence" else 1
            kw[attr] = check_range(word[key], f"Filters.WordFilter.{key}", 0, hi, operation)
    regions = filters.get("RegionsOfInterest") or []
    if len(regions) > 10:
        raise InvalidParameterException(
            f"Filters.RegionsOfInterest has {len(regions)} regions; at most 10 are allowed", operation)
    kw["regions"] = tuple(_region(r, f"Filters.RegionsOfInterest[{i}]", operation) for i, r in enumerate(regions))
    return TextFilters(**kw)


def check_start(params: dict) -> TextFilters:
    """The StartTextDetection checks beyond the service model (before the job starts)."""
    return parse_filters(params.get("Filters"), "StartTextDetection")


def _geometry(quad_px: np.ndarray, width: int, height: int) -> dict:
    pts = np.asarray(quad_px, np.float64) / np.array([width, height], np.float64)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return {"BoundingBox": {"Width": float(x1 - x0), "Height": float(y1 - y0), "Left": float(x0), "Top": float(y0)},
            "Polygon": [{"X": float(x), "Y": float(y)} for x, y in pts]}


def _inside(quad_px: np.ndarray, width: int, height: int, regions) -> bool:
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    word = Polygon(np.asarray(quad_px, np.float64) / np.array([width, height], np.float64))
    if word.area <= 0:
        return False
    return word.intersection(unary_union(regions)).area > 0.5 * word.area


def detect_text(image_bgr: np.ndarray, filters: TextFilters | None = None, ocr=None) -> list[dict]:
    """Rekognition ``TextDetection`` dicts (lines, then words) for one BGR image."""
    from ..models.ocr import ocr_model

    filters = filters or TextFilters()
    ocr = ocr or ocr_model()
    h, w = image_bgr.shape[:2]
    lines_out, words_out = [], []
    n_words = 0
    for line in ocr.read(image_bgr):
        kept = []
        for word in line.words:
            if n_words + len(kept) >= MAX_WORDS:
                break
            geometry = _geometry(word.quad, w, h)
            box = geometry["BoundingBox"]
            if (word.confidence * 100 < filters.min_confidence or box["Height"] < filters.min_height
                    or box["Width"] < filters.min_width):
                continue
            if filters.regions and not _inside(word.quad, w, h, filters.regions):
                continue
            kept.append((word, geometry))
        if not kept:
            continue
        n_words += len(kept)
        line_id = len(lines_out)
        if len(kept) == len(line.words):
            text, quad = line.text, line.quad
        else:
            text = " ".join(wd.text for wd, _ in kept)
            first, last = kept[0][0].quad, kept[-1][0].quad
            quad = np.array([first[0], last[1], last[2], first[3]])
        lines_out.append({"DetectedText": text, "Type": "LINE", "Id": line_id, "ParentId": None,
                          "Confidence": float(min(100.0, line.confidence * 100)),
                          "Geometry": _geometry(quad, w, h)})
        for word, geometry in kept:
            words_out.append({"DetectedText": word.text, "Type": "WORD", "ParentId": line_id,
                              "Confidence": float(min(100.0, word.confidence * 100)), "Geometry": geometry})
    for i, word in enumerate(words_out):
        word["Id"] = len(lines_out) + i
    return lines_out + words_out


class TextDetectionAnalyzer:
    """StartTextDetection: :func:`detect_text` on each sampled frame."""

    schema = TEXT_SCHEMA

    def __init__(self, params: dict):
        from ..models.ocr import ocr_model

        self.filters = parse_filters(params.get("Filters"), "StartTextDetection")
        self.ocr = ocr_model()

    def models(self) -> dict:
        from ..models.ocr import DET_MAX_SIDE

        return {"TextModelVersion": self.ocr.version,
                "Detector": f"PP-OCRv4 DB text detector (long side <= {DET_MAX_SIDE} px)",
                "Recognizer": "PP-OCRv4 SVTR-LCNet CTC recognizer, words split at spaces and ink gaps",
                "Filters": self.filters.to_dict()}

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        from ..models.frame_threads import frame_map
        from ..models.ocr import frame_ocr, ocr_frames_in_parallel

        def read(frame_rgb):
            # On the CPU frames are read side by side, each thread with its own
            # one-thread OCR model (rekolab.models.ocr.frame_ocr); in order.
            return detect_text(np.ascontiguousarray(frame_rgb[:, :, ::-1]), self.filters, frame_ocr())

        found = frame_map(read, batch.frames, parallel=ocr_frames_in_parallel())
        rows = [{"Timestamp": int(ts), "FrameNumber": int(index), **det}
                for dets, ts, index in zip(found, batch.timestamps_ms, batch.indices) for det in dets]
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)


def detect_text_image(params: dict, buckets: dict[str, str]) -> dict:
    """DetectText: ``{TextDetections, TextModelVersion}`` for one image (Image.Bytes
    up to 5 MB or Image.S3Object up to 15 MB, JPEG or PNG; see rekolab.images)."""
    from ..images import load_image, normalize_image_request
    from ..models.ocr import MODEL_VERSION
    from ..requests import validate_request
    from ..results.text import text_detection

    op = "DetectText"
    params = normalize_image_request(params, op)
    validate_request(op, params)
    filters = parse_filters(params.get("Filters"), op)
    bgr, _ = load_image(params["Image"], buckets, op)
    return {"TextDetections": [text_detection(d) for d in detect_text(bgr, filters)],
            "TextModelVersion": MODEL_VERSION}
