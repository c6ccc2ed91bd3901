"""The insightface face pack: detector, recognizer, and attribute models.

Which pack, in order:

1. ``pack=`` given to :func:`face_pack` (a pack name, or a folder in insightface's
   layout ``<root>/models/<pack>/``), else ``REKOLAB_FACE_PACK``;
2. under ``REKOLAB_MODEL_DIR/insightface/models/``: ``buffalo_l`` when present, else
   the first pack (by name) that has a recognition model, else the first pack;
3. insightface's own ``buffalo_l`` (downloaded by insightface into ``~/.insightface``
   for users with internet).

The pack is loaded with insightface's ``FaceAnalysis`` (it picks each file's role
from its graph). Face detection uses only the detector and the attribute models;
the recognizer (any embedding size: 512-d for buffalo_l, 128-d for MobileFaceNet,
batch fixed at 1 for some exports) is loaded for search and celebrities.

The calibrations from the pack's outputs to Rekognition's 0-100 numbers
(:func:`face_confidence`, :func:`similarity`) are :mod:`rekolab.models.face_scores`,
re-exported here.
"""
from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import model_dir, on_release, onnx_providers, require, session_options
from .face_scores import (FACE_CONFIDENCE_CENTER, FACE_CONFIDENCE_SCALE, SIMILARITY_CENTER,  # noqa: F401
                          SIMILARITY_SCALE, cosine_for_similarity, face_confidence, face_score, similarity)

__all__ = ["FacePack", "face_pack", "resolve_pack_dir", "DEFAULT_PACK", "similarity", "cosine_for_similarity"]

DEFAULT_PACK = "buffalo_l"
DET_SIZE = (640, 640)


def resolve_pack_dir(pack: str | os.PathLike | None = None) -> tuple[str, Path | None]:
    """``(pack name, pack folder)``; the folder is None when insightface must download it."""
    pack = pack if pack is not None else os.environ.get("REKOLAB_FACE_PACK") or None
    # Cached per (pack, model dir): choosing a pack may read every graph in the folder.
    return _resolve_pack_dir(None if pack is None else str(pack), os.environ.get("REKOLAB_MODEL_DIR"))


@functools.lru_cache(maxsize=16)
def _resolve_pack_dir(pack: str | None, _model_dir_env: str | None) -> tuple[str, Path | None]:
    if pack is not None and (os.sep in str(pack) or Path(pack).is_dir()):
        folder = Path(pack).expanduser().resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"face pack folder not found: {folder}")
        return folder.name, folder
    root = model_dir()
    packs_root = root / "insightface" / "models" if root else None
    if packs_root is not None and packs_root.is_dir():
        if pack is not None:
            if (packs_root / pack).is_dir():
                return pack, packs_root / pack
        else:
            candidates = sorted(p for p in packs_root.iterdir() if p.is_dir() and any(p.glob("*.onnx")))
            if (packs_root / DEFAULT_PACK).is_dir():
                return DEFAULT_PACK, packs_root / DEFAULT_PACK
            for p in candidates:
                if _has_recognizer(p):
                    return p.name, p
            if candidates:
                return candidates[0].name, candidates[0]
    return (pack or DEFAULT_PACK), None


def _has_recognizer(folder: Path) -> bool:
    """True when one of the pack's graphs takes a 112x112 face (insightface's rule)."""
    onnx = require("onnx", "faces")
    for f in folder.glob("*.onnx"):
        try:
            graph = onnx.load(str(f), load_external_data=False).graph
            dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        except Exception:
            continue
        if len(dims) == 4 and dims[2] == 112 and dims[3] == 112 and len(graph.output) == 1:
            return True
    return False


@dataclass(frozen=True, repr=False)
class FacePack:
    """A loaded face pack. ``version`` is what collections call FaceModelVersion."""

    name: str
    folder: Path | None
    analysis: object  # insightface.app.FaceAnalysis
    attributes: object  # rekolab.analysis.face_attributes.FaceAttributeModels

    def __repr__(self) -> str:
        return f"FacePack({self.name!r}, models={sorted(self.analysis.models)})"

    @property
    def version(self) -> str:
        return self.name

    @property
    def detector(self):
        return self.analysis.det_model

    @property
    def recognizer(self):
        return self.analysis.models.get("recognition")

    def detect(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in one BGR frame: ``(boxes_xyxy (N,4), scores (N,), kps (N,5,2))``,
        highest score first.

        insightface letterboxes every frame into a 640x640 square; SCRFD is fully
        convolutional, so rekolab feeds it the same scale (long side 640) without
        the padding: a 16:9 frame costs 640x384 instead of 640x640 (same faces,
        same scores on the shared stills; ~35% less time)."""
        return self.detect_batch([frame_bgr])[0]

    def detect_batch(self, frames_bgr) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`detect` for many frames; frames of one size go to SCRFD as one batch
        (:func:`rekolab.models.face_batch.detect_frames`)."""
        from .face_batch import detect_frames

        frames = list(frames_bgr)
        out: list = [None] * len(frames)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            by_size.setdefault(f.shape[:2], []).append(i)
        static = getattr(self.detector, "static_input_size", None)  # a fixed-size export keeps its size
        for (h, w), idx in by_size.items():
            size = tuple(static) if static else _det_input_size(h, w)
            found = detect_frames(self.detector, [frames[i] for i in idx], size)
            for i, r in zip(idx, found):
                out[i] = r
        return out

    def embed(self, frame_bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings (N, D) of faces given their 5 keypoints."""
        return self.embed_batch([frame_bgr], [kps])[0]

    def embed_batch(self, frames_bgr, kps_per_frame) -> list[np.ndarray]:
        """:meth:`embed` for the faces of many frames, in one recognizer call where
        the engine allows (:func:`rekolab.models.face_batch.embed_faces`)."""
        rec = self.recognizer
        if rec is None:
            raise RuntimeError(f"face pack {self.name!r} has no recognition model")
        from .face_batch import embed_faces

        # Again here, not only at load: a test runner or a user may reset the filters.
        # (filterwarnings replaces an identical filter rather than adding a copy.)
        quiet_third_party_warnings()
        return embed_faces(rec, frames_bgr, kps_per_frame)


@functools.lru_cache(maxsize=64)
def _det_input_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) for SCRFD: long side DET_SIZE, both multiples of 32."""
    scale = max(DET_SIZE) / max(height, width)
    return (int(np.ceil(width * scale / 32) * 32), int(np.ceil(height * scale / 32) * 32))


_lock = threading.Lock()


def quiet_third_party_warnings() -> None:
    """Silence, at their source, the third-party warnings rekolab's own calls trigger
    and a user can do nothing about: insightface's face alignment calls
    scikit-image's deprecated ``SimilarityTransform.estimate`` on every face (a
    FutureWarning per call site, repeated in every notebook cell). Only that
    message from that module is ignored; rekolab's own warnings still show."""
    import warnings

    warnings.filterwarnings("ignore", message=r"`estimate` is deprecated", category=FutureWarning,
                            module=r"insightface(\.|$)")


@functools.lru_cache(maxsize=4)
def _load(name: str, folder: str | None) -> FacePack:
    require("insightface", "faces")
    quiet_third_party_warnings()
    from insightface.app import FaceAnalysis

    from ..analysis.face_attributes import FaceAttributeModels

    providers = onnx_providers()
    # FaceAnalysis passes extra kwargs down to each onnxruntime.InferenceSession.
    kwargs = dict(name=name, providers=providers, sess_options=session_options(),
                  allowed_modules=["detection", "recognition", "genderage"])
    if folder is not None:
        path = Path(folder)
        if path.parent.name != "models":
            raise ValueError(
                f"face pack folder {path} must sit in a folder named 'models' "
                "(insightface's layout: <root>/models/<pack>/*.onnx)")
        kwargs["root"] = str(path.parent.parent)
    analysis = FaceAnalysis(**kwargs)
    if "detection" not in analysis.models:
        raise RuntimeError(f"face pack {name!r} has no detection model")
    ctx_id = 0 if providers[0] == "CUDAExecutionProvider" else -1
    analysis.prepare(ctx_id=ctx_id, det_size=DET_SIZE)
    attributes = FaceAttributeModels.discover(Path(folder) if folder else None)
    return FacePack(name=name, folder=Path(folder) if folder else None, analysis=analysis,
                    attributes=attributes)


on_release(_load.cache_clear)


def face_pack(pack: str | os.PathLike | None = None) -> FacePack:
    """The loaded face pack (one per process and pack)."""
    name, folder = resolve_pack_dir(pack)
    with _lock:
        return _load(name, str(folder) if folder else None)
