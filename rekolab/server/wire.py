"""AWS JSON 1.1 as Rekognition speaks it: request bodies decoded and responses
encoded by walking botocore's own shapes (the protocol has no other rules).

* Requests: ``blob`` members arrive base64-encoded -> ``bytes``; ``timestamp``
  members arrive as epoch seconds -> aware ``datetime`` (UTC). Members the model
  does not know (rekolab extensions such as ``SampleRate``) pass through unchanged,
  so the validator, not the wire layer, decides about them.
* Responses: ``bytes`` -> base64, ``datetime`` -> epoch seconds (float), as
  botocore's JSON parser expects; ``ResponseMetadata`` is the transport's business
  and is dropped.
* Errors: ``{"__type": code, "message": ...}`` with ``x-amzn-ErrorType``.
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
from typing import Any

__all__ = ["decode_input", "encode_output", "error_body", "WireError"]


class WireError(ValueError):
    """A body that is not the JSON the input shape describes."""


def decode_input(value: Any, shape, path: str = "") -> Any:
    """JSON value -> the Python value boto3 users pass for ``shape``."""
    if value is None or shape is None:
        return value
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            raise WireError(f"{path or 'the request body'} must be a JSON object")
        members = shape.members
        return {k: decode_input(v, members.get(k), f"{path}.{k}" if path else k) for k, v in value.items()}
    if t == "list":
        if not isinstance(value, list):
            return value  # left for the validator to refuse with botocore's own message
        return [decode_input(v, shape.member, f"{path}[{i}]") for i, v in enumerate(value)]
    if t == "map":
        if not isinstance(value, dict):
            return value
        return {k: decode_input(v, shape.value, f"{path}[{k!r}]") for k, v in value.items()}
    if t == "blob":
        if not isinstance(value, str):
            raise WireError(f"{path} must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise WireError(f"{path} is not valid base64") from None
    if t == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WireError(f"{path} must be a timestamp in epoch seconds")
        return _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
    return value


def encode_output(value: Any, shape=None) -> Any:
    """A client response (or any part of it) -> JSON-ready data, per ``shape``."""
    if isinstance(value, dict):
        members = shape.members if shape is not None and shape.type_name == "structure" else {}
        inner = shape.value if shape is not None and shape.type_name == "map" else None
        return {k: encode_output(v, members.get(k, inner)) for k, v in value.items()
                if v is not None and k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        member = shape.member if shape is not None and shape.type_name == "list" else None
        return [encode_output(v, member) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if shape is not None and shape.type_name == "timestamp" and isinstance(value, (int, float)):
        return value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


def error_body(code: str, message: str, request_id: str | None = None) -> bytes:
    """The JSON error body: ``__type`` and ``message`` (what every SDK reads), plus
    ``Code`` and ``Logref`` as the Developer Guide's error example shows them."""
    out = {"__type": code, "Code": code, "message": message}
    if request_id:
        out["Logref"] = request_id
    return json.dumps(out).encode()
