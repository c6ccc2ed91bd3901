"""Rekognition's synchronous image operations, request to response:
DetectFaces, CompareFaces, DetectLabels and SearchUsersByImage.

Each one: ``Image.Bytes`` made ``bytes`` and checked against 5 MB
(:func:`rekolab.images.normalize_image_request`), the request validated against
botocore's model, the operation's own checks, then the image read and checked (JPEG/PNG,
15 MB from S3, 80 px minimum, 10000 px maximum for DetectLabels, EXIF orientation
applied: :func:`rekolab.images.load_image`) -- all before any model is loaded. See
docs/images.md.
"""
from __future__ import annotations

from .images import load_image, normalize_image_request
from .requests import validate_request

__all__ = ["detect_faces", "compare_faces", "detect_labels", "search_users_by_image"]


def _prepare(op: str, params: dict, keys: tuple[str, ...] = ("Image",)) -> dict:
    params = normalize_image_request(params, op, keys)
    extensions = validate_request(op, params)
    return {**{k: v for k, v in params.items() if k not in extensions}, **extensions}


def detect_faces(params: dict, buckets: dict[str, str]) -> dict:
    """DetectFaces: ``{FaceDetails}`` of the 100 largest faces (``Attributes``
    DEFAULT, ALL, or DEFAULT plus named attributes)."""
    from .analysis.faces import detect_faces_image

    op = "DetectFaces"
    params = _prepare(op, params)
    bgr, _ = load_image(params["Image"], buckets, op)
    return detect_faces_image(bgr, params.get("Attributes") or ["DEFAULT"])


def compare_faces(params: dict, buckets: dict[str, str]) -> dict:
    """CompareFaces: the source's largest face against the target's faces."""
    from .analysis.faces import DEFAULT_SIMILARITY_THRESHOLD
    from .analysis.faces import compare_faces as compare

    op = "CompareFaces"
    params = _prepare(op, params, ("SourceImage", "TargetImage"))
    source, _ = load_image(params["SourceImage"], buckets, op)
    target, _ = load_image(params["TargetImage"], buckets, op)
    return compare(source, target, float(params.get("SimilarityThreshold", DEFAULT_SIMILARITY_THRESHOLD)),
                   params.get("QualityFilter", "NONE"), op)


def detect_labels(params: dict, buckets: dict[str, str]) -> dict:
    """DetectLabels: GENERAL_LABELS (default) and/or IMAGE_PROPERTIES."""
    from .analysis.image_labels import check_request
    from .analysis.image_labels import detect_labels as detect

    op = "DetectLabels"
    params = _prepare(op, params)
    check_request(params, op)  # filters and Settings: before the image is read
    bgr, _ = load_image(params["Image"], buckets, op)
    return detect(bgr, params, op)


def search_users_by_image(params: dict, buckets: dict[str, str]) -> dict:
    """SearchUsersByImage: the largest face of the image against the collection's users."""
    from . import collections, users

    op = "SearchUsersByImage"
    params = _prepare(op, params)
    collections.check_searchable(params["CollectionId"], op)  # unknown collection: before decoding
    bgr, _ = load_image(params["Image"], buckets, op)
    return users.search_users_by_image(params, bgr, op)
