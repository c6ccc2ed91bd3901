"""Rekognition's image input, shared by IndexFaces, SearchFacesByImage and
RecognizeCelebrities: ``Image`` is ``{"Bytes": ...}`` or ``{"S3Object": {Bucket,
Name}}``, with the service's limits: ``Image.Bytes`` at most 5 MB, an S3 object at
most 15 MB, JPEG or PNG only (by the file's signature, not its name), at least 80 x 80
pixels, and at most 10000 x 10000 pixels for DetectLabels and DetectModerationLabels
(``ImageTooLargeException``). A JPEG's EXIF orientation is applied when it is decoded
(OpenCV's ``IMREAD_COLOR`` does it), and the limits are checked on the upright image;
boxes are then ratios of the upright image, as Rekognition's are. ``OrientationCorrection``
is never returned: Rekognition returns it only for its legacy model versions.

``Image.Bytes`` takes what botocore takes for a blob: ``bytes``, ``bytearray``, a
file-like object (read once, from its current position) or ``str`` (sent as UTF-8).
:func:`normalize_image_request` turns it into ``bytes`` once, before the request is
validated. ``S3Object`` is read from a configured local bucket root (the same
safety rules as videos), or through the S3 fetcher for other buckets.

Nothing heavy is imported at module level (OpenCV only when decoding).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .errors import (ImageTooLargeException, InvalidImageFormatException, InvalidParameterException,
                     InvalidS3ObjectException)

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_S3_IMAGE_BYTES",
    "MIN_IMAGE_PIXELS",
    "MAX_IMAGE_PIXELS",
    "declared_size",
    "normalize_image_request",
    "read_image",
    "image_kind",
    "decode_image",
    "load_image",
]

MAX_IMAGE_BYTES = 5 * 1024 * 1024        # Image.Bytes
MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024    # Image.S3Object
MIN_IMAGE_PIXELS = 80                    # minimum image height and width
#: Maximum height and width, per operation (Developer Guide, "Guidelines and quotas").
MAX_IMAGE_SIDE = {"DetectLabels": 10_000, "DetectModerationLabels": 10_000}
#: The most pixels an image may *declare* (its PNG IHDR / JPEG SOF header), checked
#: before decoding: a 748 KB PNG can declare 16000 x 16000 (768 MB decoded). 50 MP
#: takes any camera photo (8K is 33 MP); over it -> ImageTooLargeException.
MAX_IMAGE_PIXELS = 50_000_000


def normalize_image_request(params: dict, operation: str, keys: tuple[str, ...] = ("Image",)) -> dict:
    """``params`` with each ``<key>.Bytes`` as ``bytes`` (a new dict; ``params`` is not
    changed). ``keys``: the Image members of the operation (CompareFaces has
    ``SourceImage`` and ``TargetImage``).

    Converts as botocore does: ``bytearray`` -> ``bytes``, a file-like object -> what
    its ``read()`` returns, ``str`` -> its UTF-8 bytes. Anything else is left for the
    validator to refuse. Raises ``ImageTooLargeException`` over 5 MB (checked here,
    before botocore's length rule would call it an invalid parameter)."""
    out = params
    for key in keys:
        image = params.get(key)
        if not isinstance(image, dict) or "Bytes" not in image:
            continue
        data = image["Bytes"]
        if not isinstance(data, (bytes, bytearray, str)) and hasattr(data, "read"):
            data = data.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif isinstance(data, bytearray):
            data = bytes(data)
        if isinstance(data, bytes) and len(data) > MAX_IMAGE_BYTES:
            raise ImageTooLargeException(
                f"Image size is too large: {key}.Bytes is {len(data)} bytes; the maximum is {MAX_IMAGE_BYTES} "
                "bytes (5 MB). Pass a larger file as S3Object (up to 15 MB) or downscale it", operation)
        out = dict(out, **{key: dict(image, Bytes=data)})
    return out


def read_image(image: dict, buckets: dict[str, str], operation: str | None = None) -> bytes:
    """The encoded bytes of a validated (and normalised) ``Image`` member."""
    op = operation or "rekolab"
    if not isinstance(image, dict) or ("Bytes" in image) == ("S3Object" in image):
        both = isinstance(image, dict) and "Bytes" in image
        raise InvalidParameterException(
            "Image must have exactly one of Bytes or S3Object" + (", not both" if both else " {Bucket, Name}"), op)
    if "Bytes" in image:
        data = image["Bytes"]
        if not data:
            raise InvalidParameterException("Image.Bytes is empty; give the bytes of a JPEG or PNG file", op)
        return bytes(data)
    return _read_s3_image(image["S3Object"], buckets, op)


def _read_s3_image(s3: dict, buckets: dict[str, str], op: str) -> bytes:
    from .video.source import _fetch_s3, _inside_root

    bucket, name, version = s3.get("Bucket"), s3.get("Name"), s3.get("Version")
    if not bucket or not name:
        raise InvalidParameterException("Image.S3Object needs Bucket and Name", op)
    if bucket in buckets:
        if version is not None:
            raise InvalidParameterException(
                f"S3Object.Version is not supported for the local bucket {bucket!r}: local bucket roots keep "
                "one version of each object; drop Version", op)
        path = _inside_root(Path(buckets[bucket]), name, bucket)
    else:
        path = _fetch_s3(bucket, name, version)
    try:
        is_file, size = path.is_file(), path.stat().st_size if path.is_file() else 0
    except OSError:  # a name too long for the file system, a symlink loop: no such object
        is_file = False
    if not is_file:
        raise InvalidS3ObjectException(
            f"Unable to get object metadata from S3: {bucket}/{name} does not exist ({path})", op)
    if size > MAX_S3_IMAGE_BYTES:
        raise ImageTooLargeException(
            f"Image size is too large: {bucket}/{name} is {size} bytes; the maximum from S3 is "
            f"{MAX_S3_IMAGE_BYTES} bytes (15 MB)", op)
    try:
        return path.read_bytes()
    except PermissionError:
        raise InvalidS3ObjectException(f"{bucket}/{name} is not readable (permission denied on {path})", op) from None


def image_kind(data: bytes) -> str | None:
    """``"jpg"``, ``"png"`` or None, from the file's signature."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG's IHDR or a JPEG's SOF header declares, without decoding;
    None when the header is not there (truncated, or another format)."""
    import struct

    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        i += 2 + length
    return None


def check_declared_size(data: bytes, operation: str | None = None) -> None:
    """Refuse, before decoding, an image whose header declares more than
    :data:`MAX_IMAGE_PIXELS` (``ImageTooLargeException``) or no pixels at all."""
    size = declared_size(data)
    if size is None:
        return
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImageFormatException(
            f"Request has invalid image format: its header declares {width}x{height} pixels",
            operation or "rekolab")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeException(
            f"Image size is too large: the image declares {width}x{height} pixels "
            f"({width * height / 1e6:.0f} MP); the maximum is {MAX_IMAGE_PIXELS / 1e6:.0f} MP. "
            "Downscale it", operation or "rekolab")


def decode_image(data: bytes, source: str = "the image", operation: str | None = None) -> np.ndarray:
    """BGR uint8 image from encoded bytes (any format OpenCV reads), or
    ``InvalidImageFormatException`` (``ImageTooLargeException`` when its header
    declares more than :data:`MAX_IMAGE_PIXELS`)."""
    from .models import require

    cv2 = require("cv2", "video")
    check_declared_size(data, operation)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:  # OpenCV's own limits (e.g. CV_IO_MAX_IMAGE_PIXELS) or a broken file
        img = None
    if img is None or img.size == 0:
        raise InvalidImageFormatException(
            f"Request has invalid image format: {source} could not be decoded as an image "
            "(truncated or corrupt? give a JPEG or PNG file)", operation or "rekolab")
    return img


def load_image(image: dict, buckets: dict[str, str], operation: str | None = None) -> tuple[np.ndarray, str]:
    """A validated ``Image`` member -> (BGR uint8 array, sha256 of the file bytes):
    JPEG or PNG only, at least 80 x 80 pixels, as Rekognition."""
    op = operation or "rekolab"
    data = read_image(image, buckets, op)
    if image_kind(data) is None:
        raise InvalidImageFormatException(
            "Request has invalid image format: the image must be a JPEG or PNG file (save it as PNG or JPEG)", op)
    bgr = decode_image(data, "the JPEG/PNG data", op)
    h, w = bgr.shape[:2]
    if h < MIN_IMAGE_PIXELS or w < MIN_IMAGE_PIXELS:
        raise InvalidParameterException(
            f"The image is {w}x{h} pixels; height and width must be at least {MIN_IMAGE_PIXELS} pixels", op)
    most = MAX_IMAGE_SIDE.get(op)
    if most is not None and (h > most or w > most):
        raise ImageTooLargeException(
            f"Image size is too large: the image is {w}x{h} pixels; {op} takes at most {most} pixels in "
            "height and width. Downscale it", op)
    return bgr, hashlib.sha256(data).hexdigest()
