"""Arrow tables of the image operations (the notebook verbs' DataFrames).

``rk.detect_faces``: one row per face, ``Image`` then the FaceDetail columns of the
video face-detection table (:data:`~rekolab.results.schema.FACE_DETAIL_FIELDS`).
``rk.detect_labels``: one row per label, ``Image`` then the label columns of the video
label table (Name, Confidence, Parents, Aliases, Categories, Instances with their
DominantColors). ``rk.compare_faces``: one row per target face, matched or not.
"""
from __future__ import annotations

import pyarrow as pa

from .labels import INSTANCE_TYPE, NAME_LIST
from .schema import BOUNDING_BOX, FACE_DETAIL_FIELDS

__all__ = ["IMAGE_FACES_SCHEMA", "IMAGE_LABELS_SCHEMA", "COMPARE_FACES_SCHEMA",
           "faces_table", "labels_table", "compare_table"]

F = pa.float64()
IMAGE_FACES_SCHEMA = pa.schema([("Image", pa.string())] + FACE_DETAIL_FIELDS)
IMAGE_LABELS_SCHEMA = pa.schema([("Image", pa.string()), ("Name", pa.string()), ("Confidence", F),
                                 ("Parents", NAME_LIST), ("Aliases", NAME_LIST), ("Categories", NAME_LIST),
                                 ("Instances", pa.list_(INSTANCE_TYPE))])
_COMPARED = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "Emotions", "Smile"}
COMPARE_FACES_SCHEMA = pa.schema([("Image", pa.string()), ("Matched", pa.bool_()), ("Similarity", F)]
                                 + [(n, t) for n, t in FACE_DETAIL_FIELDS if n in _COMPARED]
                                 + [("SourceBoundingBox", BOUNDING_BOX), ("SourceConfidence", F)])


def faces_table(responses: list[tuple[str, dict]]) -> pa.Table:
    """(image name, DetectFaces response) pairs -> one row per face."""
    rows = [{"Image": name, **face} for name, r in responses for face in r["FaceDetails"]]
    return pa.Table.from_pylist(rows, schema=IMAGE_FACES_SCHEMA)


def labels_table(responses: list[tuple[str, dict]]) -> pa.Table:
    """(image name, DetectLabels response) pairs -> one row per label."""
    rows = [{"Image": name, **label} for name, r in responses for label in r.get("Labels", [])]
    return pa.Table.from_pylist(rows, schema=IMAGE_LABELS_SCHEMA)


def compare_table(responses: list[tuple[str, dict]]) -> pa.Table:
    """(target name, CompareFaces response) pairs -> one row per target face."""
    rows = []
    for name, r in responses:
        src = r["SourceImageFace"]
        extra = {"SourceBoundingBox": src["BoundingBox"], "SourceConfidence": src["Confidence"]}
        rows += [{"Image": name, "Matched": True, "Similarity": m["Similarity"], **m["Face"], **extra}
                 for m in r["FaceMatches"]]
        rows += [{"Image": name, "Matched": False, "Similarity": None, **f, **extra} for f in r["UnmatchedFaces"]]
    return pa.Table.from_pylist(rows, schema=COMPARE_FACES_SCHEMA)
