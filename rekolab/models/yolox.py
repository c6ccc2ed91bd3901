"""YOLOX (COCO-80) object detector on onnxruntime.

The model is a YOLOX ONNX export as written by YOLOX's ``tools/export_onnx.py``
(YOLOX >= 0.1.1, no ``--decode_in_inference``): input ``[B,3,H,W]`` float32 and
output ``[B,A,5+C]`` where each row is ``(tx, ty, tw, th, obj, cls_0..cls_C-1)`` with
``obj`` and ``cls`` already sigmoided in the graph, and the anchors ``A`` run over the
stride-8, -16 and -32 grids in that order, row-major (y outer, x inner).

Where the weights come from, in order:

1. an explicit ``path``;
2. ``REKOLAB_MODEL_DIR/coco_detection/yolox_nano.onnx``.

There is no upstream auto-download; with neither, :meth:`YoloxDetector.available`
is ``False`` and label detection runs with CLIP alone.

The recipe (checked against the staged ``yolox_nano.onnx``; see
``shared/models/MANIFEST.md``):

- keep **BGR** and raw **0-255** floats, no mean/std;
- letterbox: ``r = min(H/h, W/w)``, bilinear resize to ``(int(w*r), int(h*r))``,
  paste at the **top-left** of a canvas filled with **114**;
- decode per stride ``s``: ``cx,cy = (t_xy + grid) * s``, ``w,h = exp(t_wh) * s``,
  box ``/ r`` back to image pixels;
- ``score = obj * cls``; class = argmax, score = max; keep ``score > threshold``;
- **per-class** NMS at IoU 0.45.

The input size is read from the graph, so a larger export (e.g. 640x640 YOLOX-s)
works unchanged; a graph with a dynamic batch axis is run in batches. With the torch
backend (:mod:`rekolab.models.backend`, the default on CUDA) the converted graph takes
any batch, so a fixed-batch export such as ``yolox_nano.onnx`` runs in batches too.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import find_model_file, onnx_session, require
from .backend import onnx_model
from .frame_threads import frame_map

__all__ = ["COCO80", "Detections", "YoloxDetector", "nms_per_class"]

DEFAULT_RELATIVE = "coco_detection/yolox_nano.onnx"
LABELS_FILE = "coco80_labels.txt"
STRIDES = (8, 16, 32)
PAD_VALUE = 114

COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


@dataclass
class Detections:
    """Detections in one frame, in original-image pixels.

    ``boxes_xyxy`` is ``(N, 4)`` float32 ``[x1, y1, x2, y2]`` (not clipped to the image),
    ``scores`` ``(N,)`` in 0..1, ``class_ids`` ``(N,)`` int64 and ``class_names`` the
    N names; sorted by score, highest first."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int64), [])

    def __repr__(self) -> str:
        items = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.class_names, self.scores))
        return f"Detections({len(self)}: {items})"


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms_per_class(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                  iou: float) -> np.ndarray:
    """Greedy per-class NMS (numpy). Returns kept indices, highest score first.

    Boxes of different classes never suppress each other: each class is offset by
    more than the whole coordinate range (the "batched NMS" trick), so one pass
    over all boxes is enough."""
    if len(scores) == 0:
        return np.zeros((0,), np.int64)
    boxes = boxes.astype(np.float64)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (class_ids.astype(np.float64) * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[_iou_one_to_many(shifted[i], shifted[rest]) <= iou]
    return np.asarray(keep, np.int64)


def _read_labels(model_path: Path, num_classes: int) -> list[str]:
    labels_path = model_path.with_name(LABELS_FILE)
    names: list[str] | None = None
    if labels_path.is_file():
        lines = [ln.strip() for ln in labels_path.read_text(encoding="utf-8").splitlines()]
        names = [ln for ln in lines if ln]
        if len(names) != num_classes:
            names = None  # a labels file for another head: do not trust it
    if names is None:
        names = list(COCO80) if num_classes == len(COCO80) else []
    if len(names) < num_classes:
        names += [f"class_{i}" for i in range(len(names), num_classes)]
    return names


class YoloxDetector:
    """A YOLOX ONNX detector.

    >>> det = YoloxDetector()                 # REKOLAB_MODEL_DIR/coco_detection/yolox_nano.onnx
    >>> dets = det.detect(frame_bgr)          # Detections
    >>> many = det.detect_batch(frames_bgr)   # list[Detections]

    ``path``: an explicit ``.onnx`` (must exist). ``score_threshold`` keeps boxes with
    ``obj*cls`` above it; ``nms_iou`` is the per-class NMS IoU. ``batch_size`` caps the
    batch (default 8, 32 on CUDA) when the graph's batch axis is dynamic (a fixed-batch graph is run one frame
    at a time). ``decoded=True`` is for exports made with ``--decode_in_inference``
    (rows are already ``cx, cy, w, h`` in input pixels).
    """

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.25,
                 nms_iou: float = 0.45, *, batch_size: int | None = None, decoded: bool = False):
        self.path = self.resolve(path)
        if self.path is None:
            raise FileNotFoundError(
                f"no YOLOX model: pass path=... or put {DEFAULT_RELATIVE} under REKOLAB_MODEL_DIR")
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.decoded = bool(decoded)
        self.session = onnx_session(self.path)
        inp = self.session.get_inputs()[0]
        out = self.session.get_outputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ValueError(f"{self.path.name}: expected a [B,3,H,W] input with fixed H, W, got {shape}")
        self.input_size: tuple[int, int] = (int(shape[2]), int(shape[3]))  # (H, W)
        batch = shape[0]
        self.model = onnx_model(self.path)  # the engine that runs it (onnxruntime or torch)
        self.fixed_batch: int | None = (int(batch) if isinstance(batch, int) and self.model.engine == "onnxruntime"
                                        else None)
        if batch_size is None:
            batch_size = 32 if self.model.device.startswith("cuda") else 8
        self.batch_size = self.fixed_batch if self.fixed_batch is not None else max(1, int(batch_size))
        width = out.shape[-1]
        self.num_classes = int(width) - 5 if isinstance(width, int) else len(COCO80)
        self.labels = _read_labels(self.path, self.num_classes)
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    # -- resolution -----------------------------------------------------------------

    @staticmethod
    def resolve(path: str | os.PathLike | None = None) -> Path | None:
        """The model file: ``path`` (must exist) or the one under REKOLAB_MODEL_DIR."""
        return find_model_file(DEFAULT_RELATIVE, path)

    @classmethod
    def available(cls, path: str | os.PathLike | None = None) -> bool:
        """True when a model file can be found (and onnxruntime is installed)."""
        try:
            found = cls.resolve(path)
        except FileNotFoundError:
            return False
        if found is None:
            return False
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return True

    @property
    def name(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        h, w = self.input_size
        return f"YoloxDetector({self.name}, {w}x{h}, {self.num_classes} classes, {self.model.engine})"

    # -- pre/post -------------------------------------------------------------------

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        """``(grid_xy (A,2), stride (A,1))`` for the input size, computed once."""
        key = self.input_size
        with self._lock:
            cached = self._grids.get(key)
            if cached is None:
                h, w = key
                grids, strides = [], []
                for s in STRIDES:
                    gh, gw = h // s, w // s
                    ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
                    grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
                    strides.append(np.full((gh * gw, 1), s))
                cached = (np.concatenate(grids).astype(np.float32),
                          np.concatenate(strides).astype(np.float32))
                self._grids[key] = cached
        return cached

    def preprocess(self, frame_bgr: np.ndarray, *, rgb: bool = False) -> tuple[np.ndarray, float]:
        """Letterbox one BGR uint8 frame: ``(CHW float32, ratio)``.

        ``rgb=True`` takes an RGB frame (a decoded :class:`~rekolab.video.FrameBatch`
        frame) and swaps the channels on the small letterboxed canvas instead of
        copying the whole frame: the resize works per channel, so the input is the
        same to the bit."""
        cv2 = require("cv2", "video")
        frame = np.asarray(frame_bgr)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ValueError(f"expected an HxWx3 {'RGB' if rgb else 'BGR'} frame, got shape {frame.shape}")
        if frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGBA2RGB if rgb else cv2.COLOR_BGRA2BGR)
        H, W = self.input_size
        h, w = frame.shape[:2]
        r = min(H / h, W / w)
        nw, nh = int(w * r), int(h * r)
        resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
        canvas = np.full((H, W, 3), PAD_VALUE, np.uint8)
        canvas[:nh, :nw] = resized
        chw = canvas.transpose(2, 0, 1)
        return np.ascontiguousarray(chw[::-1] if rgb else chw, dtype=np.float32), r

    def postprocess(self, raw: np.ndarray, ratio: float, image_hw: tuple[int, int]) -> Detections:
        """Decode one image's ``(A, 5+C)`` rows to :class:`Detections`."""
        raw = np.asarray(raw, np.float32)
        obj = raw[:, 4]
        cls = raw[:, 5:]
        cls_id = cls.argmax(axis=1)
        score = obj * cls[np.arange(cls.shape[0]), cls_id]
        keep = score > self.score_threshold
        if not keep.any():
            return Detections.empty()
        rows, score, cls_id = raw[keep], score[keep], cls_id[keep]
        if self.decoded:
            cxcy, wh = rows[:, 0:2], rows[:, 2:4]
        else:
            grid, stride = self._grid()
            if grid.shape[0] != raw.shape[0]:
                raise ValueError(
                    f"{self.name}: {raw.shape[0]} output rows, expected {grid.shape[0]} for "
                    f"strides {STRIDES} at {self.input_size}")
            grid, stride = grid[keep], stride[keep]
            cxcy = (rows[:, 0:2] + grid) * stride
            wh = np.exp(rows[:, 2:4]) * stride
        boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1) / ratio
        # Not clipped to the image: Rekognition's boxes may run past the frame edge.
        idx = nms_per_class(boxes, score, cls_id, self.nms_iou)
        ids = cls_id[idx].astype(np.int64)
        return Detections(boxes[idx].astype(np.float32), score[idx].astype(np.float32), ids,
                          [self.labels[i] for i in ids])

    # -- inference ------------------------------------------------------------------

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        """Detect objects in one BGR (OpenCV order) uint8 frame."""
        return self.detect_batch([frame_bgr])[0]

    def detect_batch(self, frames: Iterable[np.ndarray] | np.ndarray, *, rgb: bool = False) -> list[Detections]:
        """Detect in many BGR frames (RGB with ``rgb=True``: no full-frame channel
        swap, see :meth:`preprocess`); batched when the graph's batch axis allows it."""
        frames = list(frames)
        step = self.batch_size

        def run(start: int) -> list[Detections]:
            chunk: Sequence[np.ndarray] = frames[start:start + step]
            prepped = [self.preprocess(f, rgb=rgb) for f in chunk]
            batch = np.stack([p[0] for p in prepped])
            n = batch.shape[0]
            if self.fixed_batch is not None and n < self.fixed_batch:
                pad = np.full((self.fixed_batch - n, *batch.shape[1:]), PAD_VALUE, np.float32)
                batch = np.concatenate([batch, pad])
            out = self.model(batch)[0]
            return [self.postprocess(out[i], r, np.asarray(frame).shape[:2])
                    for i, (frame, (_, r)) in enumerate(zip(chunk, prepped))]

        # onnxruntime on the CPU: chunks (one frame each) side by side, see frame_threads.
        chunks = frame_map(run, range(0, len(frames), step), parallel=self.model.frame_parallel)
        return [d for chunk in chunks for d in chunk]
