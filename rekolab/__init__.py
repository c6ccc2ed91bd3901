"""rekolab: Amazon Rekognition Video, run locally.

    import rekolab as rk
    job = rk.start_face_detection("clip.mp4", face_attributes="ALL")
    df = job.wait().to_pandas()

    client = rk.client(buckets={"media": "/data/videos"})   # boto3-shaped

Importing rekolab imports no torch, insightface or decord: they load when a job
needs them.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import errors
from .api import Job, start_face_detection
from .client import Client, client
from .errors import ClientError, ParamValidationError

__all__ = [
    "__version__",
    "Client",
    "ClientError",
    "Job",
    "ParamValidationError",
    "client",
    "errors",
    "start_face_detection",
]
