"""Results: one Arrow schema per operation; pages, Rekognition dicts and parquet
are views of the job's one Arrow table."""
from .pages import make_token, read_token
from .render import drop_nulls, face_detail, face_detection_items
from .schema import FACE_DETAIL_FIELDS, FACE_DETAIL_TYPE, FACES_SCHEMA

__all__ = ["make_token", "read_token", "drop_nulls", "face_detail", "face_detection_items",
           "FACE_DETAIL_FIELDS", "FACE_DETAIL_TYPE", "FACES_SCHEMA"]
