"""Which operations split into segments, and how they are stitched (see
:mod:`rekolab.executors.segments` for the splitting and the stitching): the
:data:`POLICIES` of the operations rekolab ships, or an analyzer class's own
``segmenting = {"identity": "<column>" | None}`` attribute. An operation with no
policy (e.g. one whose rows are decided only at the end, or one that plans its own
decode, as segment detection does) runs unsplit, on one worker, whatever its length.
"""
from __future__ import annotations

import importlib

__all__ = ["POLICIES", "policy_for", "analyzer_class", "own_decode"]

#: operation -> {"identity": identity column or None}; see the module docstring.
POLICIES = {
    "StartFaceDetection": {"identity": None},
    "StartLabelDetection": {"identity": None},
    "StartFaceSearch": {"identity": "Index"},
    "StartCelebrityRecognition": {"identity": "TrackIndex"},
}


def analyzer_class(operation: str):
    """The registered analyzer class of ``operation`` (None if it cannot be imported here)."""
    from ..analysis import _ANALYZERS

    spec = _ANALYZERS.get(operation)
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:  # it fails with its own error where it runs
        return None


def own_decode(operation: str) -> bool:
    """True for an analyzer that plans its own decode (``decode_plan``, e.g. segment
    detection reads every frame): it never shares a decode and never splits."""
    return hasattr(analyzer_class(operation), "decode_plan")


def policy_for(operation: str) -> dict | None:
    """How ``operation`` splits (None: it runs unsplit)."""
    cls = analyzer_class(operation)
    declared = cls.__dict__.get("segmenting") if cls is not None else None
    if declared is not None:
        return dict(declared)
    if own_decode(operation):
        return None
    return POLICIES.get(operation)
