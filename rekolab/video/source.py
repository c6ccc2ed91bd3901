"""Resolve a Rekognition ``Video`` to a local file, safely.

Accepted forms (the request layer has already checked their shapes):

* ``{"S3Object": {"Bucket": b, "Name": n, "Version": v}}`` with ``b`` a configured
  *bucket root* (a local folder): ``rk.client(buckets={"media": "/data/videos"})``
  or ``REKOLAB_BUCKETS="media=/data/videos,raw=/mnt/raw"``. The object name is a
  path inside that folder and can never leave it: absolute names, ``..`` steps and
  symlinks that point outside are refused with ``InvalidS3ObjectException``.
* ``{"S3Object": ...}`` with a bucket that is *not* configured, when ``boto3`` is
  installed: the object is read from S3 through boto3's standard configuration
  (``AWS_ENDPOINT_URL_S3``, profiles; ``Version`` honoured) and cached under the
  rekolab home (never elsewhere), keyed by bucket/key/VersionId/ETag.
* ``{"Path": "clip.mp4"}``: a rekolab extension for the notebook surface, a local
  file path (or an ``s3://bucket/key`` URL, read through boto3).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidParameterException, InvalidS3ObjectException, VideoTooLargeException

__all__ = ["ResolvedVideo", "resolve_video", "parse_buckets", "MAX_VIDEO_BYTES"]

#: Rekognition Video's stored-video limits (Developer Guide, limits page).
MAX_VIDEO_BYTES = 10 * 1024**3


@dataclass(frozen=True)
class ResolvedVideo:
    """A video request resolved to a readable local file."""

    path: Path
    bucket: str | None
    name: str
    size_bytes: int

    def notification_video(self) -> dict:
        """The ``Video`` member of the SNS-shaped completion message."""
        out = {"S3ObjectName": self.name}
        if self.bucket:
            out["S3Bucket"] = self.bucket
        return out


def parse_buckets(value: str | None) -> dict[str, str]:
    """Parse ``REKOLAB_BUCKETS`` ("name=/path,other=/path2")."""
    buckets: dict[str, str] = {}
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, root = part.partition("=")
        if not sep or not name.strip() or not root.strip():
            raise ValueError(f"REKOLAB_BUCKETS entry {part!r} is not of the form name=/folder")
        buckets[name.strip()] = root.strip()
    return buckets


def resolve_video(video: dict, buckets: dict[str, str]) -> ResolvedVideo:
    """Turn a validated ``Video`` dict into a local, readable, non-empty file."""
    if "Path" in video:
        target = str(video["Path"])
        if target.startswith("s3://"):
            bucket, _, key = target[5:].partition("/")
            return _check_file(_fetch_s3(bucket, key, None), bucket, key)
        path = Path(target).expanduser()
        return _check_file(path, None, target)

    s3 = video["S3Object"]
    bucket, name, version = s3["Bucket"], s3["Name"], s3.get("Version")
    if bucket in buckets:
        if version is not None:
            raise InvalidParameterException(
                f"S3Object.Version is not supported for the local bucket {bucket!r}: "
                "local bucket roots keep one version of each object; drop Version")
        return _check_file(_inside_root(Path(buckets[bucket]), name, bucket), bucket, name)
    return _check_file(_fetch_s3(bucket, name, version), bucket, name)


def _inside_root(root: Path, name: str, bucket: str) -> Path:
    """``root/name``, refusing any name that would leave ``root``."""
    if name.startswith("/") or name.startswith("\\") or "\x00" in name:
        raise InvalidS3ObjectException(
            f"S3Object.Name {name!r} must be a relative key inside bucket {bucket!r}, not an absolute path")
    parts = name.replace("\\", "/").split("/")
    if any(p == ".." for p in parts):
        raise InvalidS3ObjectException(
            f"S3Object.Name {name!r} must not contain '..': object keys cannot leave bucket {bucket!r}")
    try:
        real_root = root.expanduser().resolve(strict=True)
    except (FileNotFoundError, OSError):
        raise InvalidS3ObjectException(
            f"the folder configured for bucket {bucket!r} does not exist: {root}") from None
    candidate = real_root.joinpath(*parts)
    real = Path(os.path.realpath(candidate))
    if real != real_root and real_root not in real.parents:
        raise InvalidS3ObjectException(
            f"S3Object {bucket}/{name} resolves outside its bucket root (a symlink out of {real_root}); refused")
    return real


def _fetch_s3(bucket: str, key: str, version: str | None) -> Path:
    """Copy an object from S3 into the rekolab home's cache, through boto3's standard
    configuration (rekolab/aws/s3.py: keyed by bucket/key/VersionId/ETag)."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise InvalidS3ObjectException(
            f"bucket {bucket!r} is not a configured local bucket root. Pass "
            f"rk.client(buckets={{'{bucket}': '/local/folder'}}) or set REKOLAB_BUCKETS, "
            "or pip install 'rekolab[aws]' to read S3 through boto3") from None
    from ..aws.s3 import fetch_object

    return fetch_object(bucket, key, version)


def _check_file(path: Path, bucket: str | None, name: str) -> ResolvedVideo:
    where = f"{bucket}/{name}" if bucket else str(name)
    try:
        st = os.stat(path)  # follows symlinks; a loop is ELOOP, a FIFO is not a regular file
    except OSError as exc:  # ENOENT, ENAMETOOLONG, ELOOP, ENOTDIR, EACCES: no such object here
        reason = "does not exist" if exc.errno == errno.ENOENT else (exc.strerror or "cannot be read").lower()
        raise InvalidS3ObjectException(f"video not found: {where} ({path.name[:80]}: {reason})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidS3ObjectException(f"video {where} is not a file ({path})")
    if not os.access(path, os.R_OK):
        raise InvalidS3ObjectException(f"video {where} is not readable (permission denied on {path})")
    size = st.st_size
    if size == 0:
        raise InvalidParameterException(f"video {where} is empty (0 bytes); give a video file")
    if size > MAX_VIDEO_BYTES:
        raise VideoTooLargeException(
            f"Video size in bytes: {size} is more than the maximum limit of: {MAX_VIDEO_BYTES} bytes.")
    return ResolvedVideo(path=path, bucket=bucket, name=name, size_bytes=size)
