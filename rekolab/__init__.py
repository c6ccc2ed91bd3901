"""rekolab: Amazon Rekognition Video, run locally.

    import rekolab as rk
    job = rk.start_face_detection("clip.mp4", face_attributes="ALL")
    df = job.wait().to_pandas()

    client = rk.client(buckets={"media": "/data/videos"})   # boto3-shaped

Importing rekolab imports no torch, insightface or PyAV (FFmpeg): they load when a job
needs them.
"""
from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# torch's OpenMP threads (libgomp) spin after every parallel region by default. Next to any
# other work on the machine (a second job, the decoder, a browser, another process) that
# spinning took the cores: one CLIP encode loop ran 3.4x slower beside one busy process, 1.7x
# with passive waiting (docs/performance.md). libgomp reads this when torch loads, and
# importing rekolab imports no torch, so it is set here; a value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import celebrities, errors, export
from .api import (Collection, Job, StreamProcessor, StreamSession, analyze, create_stream_processor,
                  start_celebrity_recognition, start_face_detection, start_face_search,
                  start_label_detection)
from .api import compare_faces, detect_faces, detect_labels
from .api import detect_text, start_segment_detection, start_text_detection
from .api import detect_moderation_labels, start_content_moderation, start_person_tracking
from .client import Client, client
from .datasets import DatasetRun
from .errors import ClientError, ParamValidationError
from .widgets import live_view

__all__ = [
    "__version__",
    "Client",
    "ClientError",
    "Collection",
    "DatasetRun",
    "Job",
    "ParamValidationError",
    "StreamProcessor",
    "StreamSession",
    "analyze",
    "celebrities",
    "client",
    "compare_faces",
    "create_stream_processor",
    "detect_faces",
    "detect_labels",
    "detect_text",
    "errors",
    "export",
    "live_view",
    "start_celebrity_recognition",
    "start_face_detection",
    "start_face_search",
    "start_label_detection",
    "start_segment_detection",
    "start_text_detection",
    "start_content_moderation",
    "detect_moderation_labels",
    "start_person_tracking",
]
