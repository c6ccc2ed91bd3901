"""NudeNet's 320 px nudity detector (the ``320n.onnx`` inside the ``nudenet`` wheel)
on rekolab's onnxruntime sessions, in batches.

The graph is an Ultralytics YOLOv8n export: input ``images [B,3,H,W]`` float32 RGB
in 0..1 (batch, height and width dynamic; fed BGR, see below), output ``[B, 4+18, A]``: per anchor a
``(cx, cy, w, h)`` box in input pixels and 18 class scores (already sigmoided).

The recipe is nudenet's own (``nudenet/nudenet.py`` 3.4.2), kept exactly so scores
match ``NudeDetector.detect``:

- pad the BGR frame at the bottom/right with black to a square of its long side;
- resize to 320 x 320 (``cv2.dnn.blobFromImage``: bilinear), / 255, channels in
  **BGR** order: nudenet first calls ``cv2.cvtColor(mat, COLOR_RGBA2BGR)``, which on a
  3-channel BGR frame swaps it to RGB, and then ``blobFromImage(swapRB=True)`` swaps it
  back, so the graph has always been fed BGR by its own package;
- per anchor: class = argmax, score = max; keep score >= 0.2; boxes scaled back by
  ``long side / 320``; NMS (``cv2.dnn.NMSBoxes``, score 0.25, IoU 0.45), over all
  classes together, as nudenet does.

Unlike ``NudeDetector`` (one ``session.run`` per image, its own session on the
default providers), frames are stacked and run in one call per batch on the shared
session of :func:`rekolab.models.onnx_session` (CUDA when present, no spin-waiting).
On the CPU a batch goes in calls of 4 frames run side by side
(:mod:`rekolab.models.frame_threads`): 20.7 ms per frame on 2 cores against 22.4 in
calls of 8 on one session's 2 threads.

**License.** The wheel's metadata says MIT, but the ``LICENSE`` and ``LICENSE.md``
files it ships are the GNU AGPL-3.0, and the model is a fine-tuned Ultralytics
YOLOv8n (Ultralytics' code and weights are AGPL-3.0). Treat the weights as
AGPL-3.0: fine for local research; a network service built on them must offer its
source under the AGPL. See docs/moderation.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import require
from .backend import onnx_model
from .frame_threads import frame_map, frame_threads

__all__ = ["NUDENET_CLASSES", "NudeDetection", "NudeNetDetector", "nudenet_model_path"]

#: The 18 classes of the 320n graph, in output order (nudenet 3.4.2's ``__labels``).
NUDENET_CLASSES: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED",
    "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE",
    "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
INPUT_SIZE = 320
SCORE_MIN = 0.2     # nudenet's per-anchor cut
NMS_SCORE = 0.25    # nudenet's NMSBoxes score threshold
NMS_IOU = 0.45
#: Frames per call when the calls run side by side on the CPU (frame_threads).
CPU_CHUNK = 4


def nudenet_model_path(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``REKOLAB_NUDENET_MODEL``, else the 320n.onnx inside the
    installed ``nudenet`` wheel (ImportError with an install hint without it)."""
    value = explicit or os.environ.get("REKOLAB_NUDENET_MODEL")
    if value:
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"NudeNet model not found: {path}")
        return path
    import importlib.util

    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.origin:
        raise ImportError("content moderation needs nudenet: pip install 'rekolab[moderation]'")
    path = Path(spec.origin).parent / "320n.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"the nudenet package has no 320n.onnx at {path}")
    return path


@dataclass
class NudeDetection:
    """Detections in one frame: ``boxes_xyxy`` (N,4) in frame pixels (clipped to the
    frame, as nudenet does), ``scores`` (N,) 0..1, ``class_ids`` (N,) into
    :data:`NUDENET_CLASSES`; highest score first."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def class_names(self) -> list[str]:
        return [NUDENET_CLASSES[int(c)] for c in self.class_ids]


class NudeNetDetector:
    """``detect_batch(frames_bgr) -> [NudeDetection]`` (``rgb=True`` for RGB frames). ``batch_size`` frames per
    ``session.run`` (the graph's batch axis is dynamic)."""

    def __init__(self, path: str | os.PathLike | None = None, batch_size: int = 8):
        require("onnxruntime", "moderation")
        self.path = nudenet_model_path(path)
        self.model = onnx_model(self.path, "onnxruntime")  # rekolab's shared session of the file
        self.batch_size = int(batch_size)

    @property
    def name(self) -> str:
        return f"nudenet-{self.path.stem}"

    def __repr__(self) -> str:
        return f"NudeNetDetector({self.path.name}, batch_size={self.batch_size})"

    @staticmethod
    def preprocess(frame: np.ndarray, rgb: bool = False) -> tuple[np.ndarray, float]:
        """``(3, 320, 320)`` float32 0..1 (BGR, as nudenet feeds it) and the scale back
        to frame pixels. ``rgb``: the frame is RGB (a decoded frame as it comes): the
        channels are swapped inside ``blobFromImage`` (padding and resizing are per
        channel, so the blob is bit for bit the one of the BGR copy, without the copy)."""
        cv2 = require("cv2", "video")
        h, w = frame.shape[:2]
        side = max(h, w)
        padded = cv2.copyMakeBorder(frame, 0, side - h, 0, side - w, cv2.BORDER_CONSTANT)
        blob = cv2.dnn.blobFromImage(padded, 1 / 255.0, (INPUT_SIZE, INPUT_SIZE), (0, 0, 0),
                                     swapRB=rgb, crop=False)
        return blob[0], side / INPUT_SIZE

    @staticmethod
    def postprocess(raw: np.ndarray, scale: float, image_hw: tuple[int, int]) -> NudeDetection:
        """One image's ``(4+18, A)`` output -> detections (nudenet's rules, vectorised)."""
        cv2 = require("cv2", "video")
        out = np.asarray(raw, np.float32).T  # (A, 22)
        cls_scores = out[:, 4:]
        class_ids = np.argmax(cls_scores, axis=1)
        scores = cls_scores[np.arange(len(out)), class_ids]
        keep = scores >= SCORE_MIN
        if not keep.any():
            return NudeDetection(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        out, scores, class_ids = out[keep], scores[keep], class_ids[keep]
        h, w = image_hw
        x = (out[:, 0] - out[:, 2] / 2) * scale
        y = (out[:, 1] - out[:, 3] / 2) * scale
        bw = out[:, 2] * scale
        bh = out[:, 3] * scale
        x = np.clip(x, 0, w)
        y = np.clip(y, 0, h)
        bw = np.minimum(bw, w - x)
        bh = np.minimum(bh, h - y)
        boxes = np.stack([x, y, bw, bh], axis=1)
        idx = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), NMS_SCORE, NMS_IOU)
        idx = np.asarray(idx, np.int64).reshape(-1)
        if len(idx) == 0:
            return NudeDetection(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        b = boxes[idx]
        xyxy = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1).astype(np.float32)
        return NudeDetection(xyxy, scores[idx].astype(np.float32), class_ids[idx].astype(np.int64))

    def detect_batch(self, frames: Sequence[np.ndarray], rgb: bool = False) -> list[NudeDetection]:
        """Detections per frame; frames are BGR, or RGB with ``rgb=True``."""
        frames = list(frames)
        step = self.batch_size
        if self.model.frame_parallel and frame_threads() > 1:
            step = min(step, CPU_CHUNK)

        def run(start: int) -> list[NudeDetection]:
            chunk = frames[start:start + step]
            prepared = [self.preprocess(f, rgb) for f in chunk]
            raw = self.model(np.stack([p[0] for p in prepared]))[0]
            return [self.postprocess(raw[k], scale, frame.shape[:2])
                    for k, (frame, (_, scale)) in enumerate(zip(chunk, prepared))]

        chunks = frame_map(run, range(0, len(frames), step), parallel=self.model.frame_parallel)
        return [d for chunk in chunks for d in chunk]

    def detect(self, frame_bgr: np.ndarray) -> NudeDetection:
        return self.detect_batch([frame_bgr])[0]
