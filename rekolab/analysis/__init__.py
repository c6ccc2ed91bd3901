"""One module per operation: FrameBatch -> pyarrow RecordBatch."""
from __future__ import annotations

import importlib

__all__ = ["analyzer_for"]

_ANALYZERS = {
    "StartFaceDetection": "rekolab.analysis.faces:FaceDetectionAnalyzer",
    "StartCelebrityRecognition": "rekolab.analysis.celebrities:CelebrityRecognitionAnalyzer",
    "StartFaceSearch": "rekolab.analysis.face_search:FaceSearchAnalyzer",
    "StartLabelDetection": "rekolab.analysis.labels:LabelDetectionAnalyzer",
    "StartSegmentDetection": "rekolab.analysis.segments:SegmentDetectionAnalyzer",
    "StartTextDetection": "rekolab.analysis.text:TextDetectionAnalyzer",
    "StartContentModeration": "rekolab.analysis.moderation:ContentModerationAnalyzer",
    "StartPersonTracking": "rekolab.analysis.persons:PersonTrackingAnalyzer",
}


def analyzer_for(operation: str, params: dict):
    """Build the analyzer of a Start* operation (loads its models)."""
    module, _, name = _ANALYZERS[operation].partition(":")
    return getattr(importlib.import_module(module), name)(params)
