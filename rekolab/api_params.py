"""Notebook inputs as Rekognition request members, for the notebook verbs of
:mod:`rekolab.api` and :mod:`rekolab.api_images`: a video, an image (path, bytes,
URL, PIL image or array), keyword filters, and dropping keywords left as None."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["video_param", "image_param"]


def video_param(video: Any) -> dict:
    """A path, ``s3://`` URL or Rekognition ``Video`` dict -> a ``Video`` request member."""
    if isinstance(video, dict):
        return video
    if isinstance(video, (str, os.PathLike)):
        return {"Path": os.fspath(video)}
    raise TypeError(f"video must be a path, an s3:// URL or a Video dict, not {type(video).__name__}")


def _params(**kwargs) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


def image_param(image: Any) -> dict:
    """A file path, image bytes, ``s3://bucket/key`` URL, Rekognition ``Image`` dict,
    PIL image or numpy array (H x W gray, or H x W x 3/4 RGB(A), uint8) -> an ``Image``
    request member (a path is read and sent as ``Bytes``; a PIL image or an array is
    encoded as PNG)."""
    if isinstance(image, dict):
        return image
    png = _png_bytes(image)
    if png is not None:
        return {"Bytes": png}
    if isinstance(image, (bytes, bytearray, memoryview)):
        return {"Bytes": bytes(image)}
    if isinstance(image, (str, os.PathLike)):
        text = os.fspath(image)
        if isinstance(text, str) and text.startswith("s3://"):
            bucket, _, key = text[5:].partition("/")
            return {"S3Object": {"Bucket": bucket, "Name": key}}
        return {"Bytes": Path(text).expanduser().read_bytes()}
    raise TypeError(f"image must be a path, bytes, an s3:// URL or an Image dict, not {type(image).__name__}")


def _png_bytes(image: Any) -> bytes | None:
    """PNG bytes of a PIL image or an RGB(A)/gray uint8 numpy array; None for anything else."""
    import io

    import numpy as np

    if hasattr(image, "save") and hasattr(image, "mode") and hasattr(image, "size"):  # PIL.Image.Image
        buf = io.BytesIO()
        (image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")).save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(image, np.ndarray):
        from .models import require

        cv2 = require("cv2", "video")
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise TypeError(f"an image array must be uint8 H x W, H x W x 3 (RGB) or H x W x 4 (RGBA), "
                            f"not {arr.dtype} {arr.shape}")
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
        ok, buf = cv2.imencode(".png", arr)
        return buf.tobytes()
    return None


def _text_filters(filters, min_confidence, min_bounding_box_height, min_bounding_box_width,
                  regions_of_interest) -> dict | None:
    filters = dict(filters or {})
    word = _params(MinConfidence=min_confidence, MinBoundingBoxHeight=min_bounding_box_height,
                   MinBoundingBoxWidth=min_bounding_box_width)
    if word:
        filters["WordFilter"] = {**filters.get("WordFilter", {}), **word}
    if regions_of_interest is not None:
        filters["RegionsOfInterest"] = list(regions_of_interest)
    return filters or None
