"""S3 objects (videos, images) read through boto3, cached in the rekolab home.

The cache is keyed by bucket, key, VersionId and ETag: ``HeadObject`` runs on every
request, so an overwritten object is fetched again and never served stale. A
missing bucket, object or version is ``InvalidS3ObjectException`` with the reason.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import store
from ..errors import InvalidS3ObjectException
from .session import aws_client

__all__ = ["fetch_object", "upload_folder"]


def _code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def fetch_object(bucket: str, key: str, version: str | None = None, max_bytes: int | None = None,
                 too_large=None) -> Path:
    """A local copy of ``s3://bucket/key`` (``version``: its VersionId)."""
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"s3://{bucket}/{key}" + (f" (version {version})" if version else "")
    s3 = aws_client("s3")
    extra = {"VersionId": version} if version else {}
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        code = _code(exc)
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "400"):
            reason = _missing_reason(s3, bucket, key, version, code)
            raise InvalidS3ObjectException(f"Unable to get object metadata from S3: {where}: {reason}") from None
        if code in ("403", "AccessDenied"):
            raise InvalidS3ObjectException(
                f"Unable to get object metadata from S3: access denied to {where} "
                "(check the credentials boto3 finds and the bucket policy)") from None
        raise InvalidS3ObjectException(f"Unable to get object metadata from S3: {where}: {exc}") from None
    except BotoCoreError as exc:  # no endpoint, no credentials, connection refused
        raise InvalidS3ObjectException(
            f"bucket {bucket!r} is not a configured local bucket root, and S3 could not be reached for "
            f"{where}: {exc}. Map the bucket to a folder (rk.client(buckets={{'{bucket}': '/local/folder'}}) "
            "or REKOLAB_BUCKETS), or configure boto3 (credentials, AWS_ENDPOINT_URL_S3)") from None
    size = int(head.get("ContentLength") or 0)
    if max_bytes is not None and size > max_bytes and too_large is not None:
        raise too_large(size)
    etag = str(head.get("ETag", "")).strip('"')
    version_id = head.get("VersionId") or version or ""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version_id}\n{etag}".encode()).hexdigest()[:32]
    cache = store.home() / "cache" / "s3" / f"{digest}{Path(key).suffix[:8]}"
    if cache.is_file() and cache.stat().st_size == size:
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.part")
    try:
        kwargs = dict(extra)
        if etag:
            kwargs["IfMatch"] = head["ETag"]  # the object we looked at, not one written since
        body = s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"]
        with open(tmp, "wb") as f:
            for chunk in iter(lambda: body.read(1 << 20), b""):
                f.write(chunk)
        os.replace(tmp, cache)
    except (ClientError, BotoCoreError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidS3ObjectException(f"Unable to get object {where} from S3: {exc}") from None
    return cache


def _missing_reason(s3, bucket: str, key: str, version: str | None, code: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    if code == "NoSuchBucket":
        return f"the bucket {bucket} does not exist"
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchBucket"):
            return f"the bucket {bucket} does not exist"
    except BotoCoreError:
        pass
    if version:
        return f"the object {key} has no version {version} in bucket {bucket} (or the object does not exist)"
    return f"the object {key} does not exist in bucket {bucket}"


def upload_folder(folder: Path, bucket: str, prefix: str) -> int:
    """Upload every file under ``folder`` to ``s3://bucket/prefix/<relative path>``;
    returns the number of objects written."""
    s3 = aws_client("s3")
    n = 0
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        key = "/".join(x for x in (prefix.strip("/"), path.relative_to(folder).as_posix()) if x)
        try:
            s3.upload_file(str(path), bucket, key)
        except Exception as exc:  # boto3's S3UploadFailedError, botocore errors, OSError
            raise RuntimeError(f"could not write s3://{bucket}/{key}: {exc}") from None
        n += 1
    return n
