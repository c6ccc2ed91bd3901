"""Arrow rows -> Rekognition dicts."""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from .schema import FACE_DETAIL_FIELDS

__all__ = ["drop_nulls", "face_detail", "face_detection_items"]

_FACE_KEYS = [name for name, _ in FACE_DETAIL_FIELDS]


def drop_nulls(value: Any) -> Any:
    """Remove None members recursively: absent, as botocore shows a missing member."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def face_detail(row: dict, keys=None) -> dict:
    return drop_nulls({k: row.get(k) for k in (keys or _FACE_KEYS)})


def face_detection_items(table: pa.Table) -> list[dict]:
    """GetFaceDetection ``Faces[]`` items for the rows of ``table``."""
    return [{"Timestamp": row["Timestamp"], "Face": face_detail(row)} for row in table.to_pylist()]
