"""TagResource, UntagResource, ListTagsForResource for collections and stream processors.

A resource is named by its ARN in Rekognition's format, the one CreateCollection and
CreateStreamProcessor return::

    arn:aws:rekognition:<region>:<account>:collection/<CollectionId>
    arn:aws:rekognition:<region>:<account>:streamprocessor/<Name>

An ARN that does not parse, or names another kind of resource (Custom Labels projects),
is ``InvalidParameterException``; one whose resource does not exist, or exists under
another ARN (region or account), is ``ResourceNotFoundException``.

Limits (AWS tagging rules): at most 50 tags per resource (``ServiceQuotaExceededException``,
nothing is changed); keys 1-128 characters, values 0-256, no ``aws:`` key prefix, the
characters of the service model's patterns (``InvalidParameterException``, checked by
:func:`rekolab.requests.validate_request` before this module runs). Tagging an existing
key replaces its value; untagging a key the resource does not have is not an error.

Collection tags live in the collection's manifest (written under its lock, like faces);
a stream processor's in its definition (``ResourceTags``; its creation request, and so
CreateStreamProcessor's Name idempotency, is left as it was).
"""
from __future__ import annotations

import re

from .errors import InvalidParameterException, ResourceNotFoundException, ServiceQuotaExceededException

__all__ = ["MAX_TAGS", "parse_arn", "tag_resource", "untag_resource", "list_tags_for_resource"]

MAX_TAGS = 50
_ARN = re.compile(r"arn:aws[a-z-]*:rekognition:([a-z0-9-]+):(\d{12}):(collection|streamprocessor)/(.+)")


def parse_arn(arn: str, op: str) -> tuple[str, str]:
    """(kind, id) of a collection or stream processor ARN."""
    m = _ARN.fullmatch(arn)
    if m is None:
        raise InvalidParameterException(
            f"ResourceArn {arn!r} is not a Rekognition collection or stream processor ARN "
            "(arn:aws:rekognition:<region>:<account>:collection/<id> or .../streamprocessor/<name>)", op)
    return m.group(3), m.group(4)


def _not_found(arn: str, op: str):
    return ResourceNotFoundException(f"Resource {arn} not found", op)


def _update(arn: str, op: str, change) -> dict:
    """Apply ``change(tags) -> tags`` to the resource's tags atomically; return the new tags."""
    kind, rid = parse_arn(arn, op)
    if kind == "collection":
        from . import collection_store as C

        with C._locked(rid, exclusive=True):
            try:
                view = C._read_view(rid, op)
            except ResourceNotFoundException:
                raise _not_found(arn, op) from None
            manifest = dict(view.manifest)
            if manifest["CollectionArn"] != arn:
                raise _not_found(arn, op)
            tags = change(dict(manifest.get("Tags") or {}))
            if tags is not None:
                manifest["Tags"] = tags
                C._commit(rid, manifest)
            return dict(manifest.get("Tags") or {})
    from .streaming import definitions as S

    with S._LOCK:
        try:
            d = S._read_def(rid, op)
        except ResourceNotFoundException:
            raise _not_found(arn, op) from None
        if d["StreamProcessorArn"] != arn:
            raise _not_found(arn, op)
        current = dict(d.get("ResourceTags", d["Request"].get("Tags") or {}))
        tags = change(current)
        if tags is not None:
            d["ResourceTags"] = tags
            S._write_def(d)
            current = tags
        return current


def tag_resource(params: dict, op: str = "TagResource") -> dict:
    arn, new = params["ResourceArn"], params["Tags"]

    def change(tags: dict) -> dict:
        merged = {**tags, **new}
        if len(merged) > MAX_TAGS:
            raise ServiceQuotaExceededException(
                f"{arn} would have {len(merged)} tags; a resource has at most {MAX_TAGS}", op)
        return merged

    _update(arn, op, change)
    return {}


def untag_resource(params: dict, op: str = "UntagResource") -> dict:
    arn, keys = params["ResourceArn"], set(params["TagKeys"])
    _update(arn, op, lambda tags: {k: v for k, v in tags.items() if k not in keys})
    return {}


def list_tags_for_resource(params: dict, op: str = "ListTagsForResource") -> dict:
    return {"Tags": _update(params["ResourceArn"], op, lambda tags: None)}
