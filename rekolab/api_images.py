"""Notebook verbs for the image operations (rekolab/image_ops.py): DetectFaces,
DetectLabels, CompareFaces and DetectText as DataFrames, DetectModerationLabels as
its response; one image, a list of them, or a folder. Re-exported by :mod:`rekolab.api`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from .api_params import _params, _text_filters, image_param
from .client import Client, default_client

__all__ = ["detect_faces", "detect_labels", "compare_faces", "detect_text", "detect_moderation_labels"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _image_inputs(images: Any) -> list[tuple[str, dict]]:
    """(name, Image member) for one image, a list of them, or a folder (its JPEG/PNG files)."""
    if isinstance(images, (list, tuple)):
        out = []
        for i, image in enumerate(images):
            out += [(f"<{i}>" if name.startswith("<") else name, img) for name, img in _image_inputs(image)]
        return out
    if isinstance(images, (str, os.PathLike)) and not os.fspath(images).startswith("s3://"):
        path = Path(images).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            return [(str(p), image_param(p)) for p in files]
        return [(str(images), image_param(images))]
    if isinstance(images, str):
        return [(images, image_param(images))]
    if isinstance(images, dict):
        s3 = images.get("S3Object")
        return [(f"s3://{s3['Bucket']}/{s3['Name']}" if s3 else "<bytes>", images)]
    return [(f"<{type(images).__name__}>", image_param(images))]


def _frame(table: pa.Table, **attrs):
    import pandas as pd

    df = table.to_pandas(types_mapper=pd.ArrowDtype)
    df.attrs.update(attrs)
    return df


def detect_faces(image, attributes: str | list[str] = "DEFAULT", *, client: Client | None = None):
    """DetectFaces on a path, folder, PIL image, numpy array (RGB), bytes or ``Image``
    dict (or a list of them): a DataFrame with one row per face, ``Image`` and the
    FaceDetail columns of a face-detection job.

        df = rk.detect_faces("photo.jpg", attributes="ALL")
        df[["BoundingBox", "AgeRange", "Emotions"]]
    """
    client = client or default_client()
    attrs = [attributes] if isinstance(attributes, str) else list(attributes)
    from .results.images import faces_table

    return _frame(faces_table([(name, client.detect_faces(Image=img, Attributes=attrs))
                               for name, img in _image_inputs(image)]))


def detect_labels(image, min_confidence: float | None = None, max_labels: int | None = None, *,
                  features: list[str] | None = None, settings: dict | None = None,
                  max_dominant_colors: int | None = None, extra_labels: list[str] | None = None,
                  models: list[str] | None = None, client: Client | None = None):
    """DetectLabels on one image (or a list / folder): a DataFrame with one row per label
    (``Image``, Name, Confidence, Parents, Aliases, Categories, Instances), highest
    confidence first per image. ``features=["GENERAL_LABELS", "IMAGE_PROPERTIES"]`` adds
    image quality and colours: ``df.attrs["ImageProperties"]`` maps each image to its
    ``ImageProperties``; ``df.attrs["LabelModelVersion"]`` says which models ran.

        df = rk.detect_labels("street.jpg", min_confidence=60,
                              features=["GENERAL_LABELS", "IMAGE_PROPERTIES"])
    """
    client = client or default_client()
    settings = dict(settings or {})
    if max_dominant_colors is not None:
        settings["ImageProperties"] = {**settings.get("ImageProperties", {}), "MaxDominantColors": max_dominant_colors}
    if settings.get("ImageProperties") and features is None:
        features = ["GENERAL_LABELS", "IMAGE_PROPERTIES"]
    from .results.images import labels_table

    responses = [(name, client.detect_labels(**_params(
        Image=img, MinConfidence=min_confidence, MaxLabels=max_labels, Features=features,
        Settings=settings or None, ExtraLabels=None if extra_labels is None else list(extra_labels),
        Models=None if models is None else list(models)))) for name, img in _image_inputs(image)]
    versions = sorted({r["LabelModelVersion"] for _, r in responses if "LabelModelVersion" in r})
    props = {name: r["ImageProperties"] for name, r in responses if "ImageProperties" in r}
    return _frame(labels_table(responses), LabelModelVersion=versions[0] if len(versions) == 1 else versions,
                  ImageProperties=props)


def compare_faces(source, target, similarity_threshold: float | None = None, *,
                  quality_filter: str | None = None, client: Client | None = None):
    """CompareFaces: the largest face of ``source`` against every face of ``target`` (a
    path, PIL image, array, bytes, or a list / folder of targets). One row per target
    face: ``Image``, ``Matched``, ``Similarity`` (null when under the threshold, default
    80), the face's box, confidence, landmarks, pose, quality; the source face's box is
    ``SourceBoundingBox``.

        rk.compare_faces("id_photo.jpg", "group.jpg")[["Matched", "Similarity", "BoundingBox"]]
    """
    client = client or default_client()
    sources = _image_inputs(source)
    if len(sources) != 1:
        raise ValueError(f"source must be one image, not {len(sources)}")
    src = sources[0][1]
    from .results.images import compare_table

    return _frame(compare_table([(name, client.compare_faces(**_params(
        SourceImage=src, TargetImage=img, SimilarityThreshold=similarity_threshold,
        QualityFilter=quality_filter))) for name, img in _image_inputs(target)]))


def _image_bytes(image: Any) -> dict:
    """A PIL image or an RGB uint8 numpy array (H, W, 3) -> ``{"Bytes": PNG}``; other
    inputs as :func:`image_param` (which does both)."""
    return image_param(image)


def detect_text(image, min_confidence: float | None = None, *, filters: dict | None = None,
                min_bounding_box_height: float | None = None, min_bounding_box_width: float | None = None,
                regions_of_interest: list[dict] | None = None, client: Client | None = None):
    """DetectText on one image: a path, bytes, an ``s3://`` URL, an Image dict, a PIL
    image or an RGB numpy array. Returns a DataFrame (one row per line or word:
    DetectedText, Type, Id, ParentId, Confidence, Geometry; ``pd.ArrowDtype``
    columns); ``df.attrs["response"]`` is the DetectText response.

        df = rk.detect_text("sign.jpg")
        df[df.Type == "LINE"].DetectedText
    """
    import pandas as pd

    from .results.text import TEXT_SCHEMA

    client = client or default_client()
    response = client.detect_text(**_params(
        Image=_image_bytes(image), Filters=_text_filters(filters, min_confidence, min_bounding_box_height,
                                                         min_bounding_box_width, regions_of_interest)))
    schema = pa.schema([f for f in TEXT_SCHEMA if f.name not in ("Timestamp", "FrameNumber")])
    df = pa.Table.from_pylist(response["TextDetections"], schema=schema).to_pandas(types_mapper=pd.ArrowDtype)
    df.attrs["response"] = response
    return df


def detect_moderation_labels(image, min_confidence: float | None = None, *, models: list[str] | None = None,
                             clip_model: dict | None = None, client: Client | None = None) -> dict:
    """DetectModerationLabels on one image: a path, bytes, ``s3://`` URL, PIL image or
    RGB ``ndarray``; returns the response (``ModerationLabels``, ``ModerationModelVersion``)."""
    client = client or default_client()
    return client.detect_moderation_labels(**_params(
        Image=_image_bytes(image), MinConfidence=min_confidence,
        Models=None if models is None else list(models), ClipModel=clip_model))
