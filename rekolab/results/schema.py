"""Arrow schemas: one per operation. Column names are Rekognition's, so a
DataFrame reads like a Get* response; a row renders to a Get* item by dropping
nulls (an attribute no model produced is absent, never invented)."""
from __future__ import annotations

import pyarrow as pa

__all__ = ["FACE_DETAIL_FIELDS", "FACE_DETAIL_TYPE", "FACES_SCHEMA", "BOUNDING_BOX", "DEFAULT_FACE_KEYS"]

F = pa.float64()
BOUNDING_BOX = pa.struct([("Width", F), ("Height", F), ("Left", F), ("Top", F)])
_BOOL_CONF = pa.struct([("Value", pa.bool_()), ("Confidence", F)])

#: FaceDetail members, in the service model's order, with their Arrow types.
#: FaceOccluded and EyeDirection are not here: Rekognition Video returns them null.
FACE_DETAIL_FIELDS: list[tuple[str, pa.DataType]] = [
    ("BoundingBox", BOUNDING_BOX),
    ("AgeRange", pa.struct([("Low", pa.int32()), ("High", pa.int32())])),
    ("Smile", _BOOL_CONF),
    ("Eyeglasses", _BOOL_CONF),
    ("Sunglasses", _BOOL_CONF),
    ("Gender", pa.struct([("Value", pa.string()), ("Confidence", F)])),
    ("Beard", _BOOL_CONF),
    ("Mustache", _BOOL_CONF),
    ("EyesOpen", _BOOL_CONF),
    ("MouthOpen", _BOOL_CONF),
    ("Emotions", pa.list_(pa.struct([("Type", pa.string()), ("Confidence", F)]))),
    ("Landmarks", pa.list_(pa.struct([("Type", pa.string()), ("X", F), ("Y", F)]))),
    ("Pose", pa.struct([("Roll", F), ("Yaw", F), ("Pitch", F)])),
    ("Quality", pa.struct([("Brightness", F), ("Sharpness", F)])),
    ("Confidence", F),
]
FACE_DETAIL_TYPE = pa.struct(FACE_DETAIL_FIELDS)
DEFAULT_FACE_KEYS = ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality")

#: StartFaceDetection: one row per face per sampled frame. FrameNumber (0-based,
#: decode order) is a rekolab extra for exports; it is not part of Get* items.
FACES_SCHEMA = pa.schema([("Timestamp", pa.int64()), ("FrameNumber", pa.int64())] + FACE_DETAIL_FIELDS)
