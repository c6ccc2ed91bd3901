"""Batched face-pack inference: SCRFD over a batch of frames, the recognizer over
every face of a batch, in one model call each.

insightface's ``SCRFD.detect`` and ``ArcFaceONNX.get_feat`` take one image (and
MobileFaceNet's ONNX graph has its batch fixed at 1), so a video ran the detector
once per frame and the recognizer once per face. These functions keep insightface's
exact recipe (the same resize, padding, blob, anchor decoding, score threshold and
NMS) and only change how many images go into one call:

* the detector gets every frame of a batch that shares one input size (a video's
  frames all do) as one ``(N, 3, H, W)`` blob; SCRFD's graph has a dynamic batch;
* the recognizer gets all aligned faces of the batch as one ``(F, 3, 112, 112)``
  blob: one call with the torch backend (its converted graph takes any batch), one
  call per face with onnxruntime where the graph's batch is fixed.

On onnxruntime (CPU) a batch gives bit-identical outputs to single images;
``tests/test_backend.py`` checks batched == unbatched on the Hamilton clip.
"""
from __future__ import annotations

import numpy as np

from . import require
from .backend import OnnxModel, backend, detector_chunk, onnx_model
from .frame_threads import frame_map

__all__ = ["detect_frames", "embed_faces", "detector_model", "recognizer_model"]

_EMPTY = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


def detector_model(det) -> OnnxModel:
    """The engine running an insightface ``SCRFD`` object's ONNX file (on onnxruntime,
    insightface's own session, not a second copy; frames run side by side on the CPU
    use a one-thread session of the file, :mod:`rekolab.models.frame_threads`)."""
    return _pack_model(det)


def recognizer_model(rec) -> OnnxModel:
    return _pack_model(rec)


def _pack_model(obj) -> OnnxModel:
    if backend() != "onnxruntime":
        return onnx_model(obj.model_file)
    model = getattr(obj, "_rekolab_model", None)
    if model is None:
        model = obj._rekolab_model = OnnxModel(obj.model_file, "onnxruntime", session=obj.session)
    return model


def _anchor_centers(det, height: int, width: int, stride: int) -> np.ndarray:
    """insightface's anchor centres for one stride (its ``center_cache`` recipe)."""
    key = (height, width, stride)
    cached = det.center_cache.get(key)
    if cached is None:
        cached = np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32)
        cached = (cached * stride).reshape((-1, 2))
        if det._num_anchors > 1:
            cached = np.stack([cached] * det._num_anchors, axis=1).reshape((-1, 2))
        if len(det.center_cache) < 100:
            det.center_cache[key] = cached
    return cached


def _letterbox(det, frame: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """insightface ``SCRFD._detect_candidates``'s resize and top-left padding."""
    cv2 = require("cv2", "video")
    im_ratio = float(frame.shape[0]) / frame.shape[1]
    model_ratio = float(input_size[1]) / input_size[0]
    if im_ratio > model_ratio:
        new_height = input_size[1]
        new_width = int(new_height / im_ratio)
    else:
        new_width = input_size[0]
        new_height = int(new_width * im_ratio)
    det_scale = float(new_height) / frame.shape[0]
    resized = cv2.resize(frame, (new_width, new_height))
    canvas = np.zeros((input_size[1], input_size[0], 3), dtype=np.uint8)
    canvas[:new_height, :new_width, :] = resized
    return canvas, det_scale


def detect_frames(det, frames_bgr, input_size: tuple[int, int], model: OnnxModel | None = None):
    """SCRFD on many BGR frames of one size: a list of ``(boxes (N,4), scores (N,),
    kps (N,5,2))`` per frame, highest score first -- ``det.detect(frame, input_size,
    max_num=0)`` for each frame, computed in one model call.

    ``det`` is the pack's insightface ``SCRFD`` (for its thresholds, strides and NMS);
    ``input_size`` is ``(width, height)``."""
    cv2 = require("cv2", "video")
    frames = list(frames_bgr)
    if not frames:
        return []
    model = model or detector_model(det)
    step = detector_chunk(model, len(frames))

    def run(start: int):  # one blob per call: 16 frames at 640x384 are 47 MB
        canvases, chunk_scales = zip(*(_letterbox(det, f, input_size) for f in frames[start:start + step]))
        blob = cv2.dnn.blobFromImages(list(canvases), 1.0 / det.input_std, input_size,
                                      (det.input_mean, det.input_mean, det.input_mean), swapRB=True)
        return model(blob), chunk_scales

    # On the CPU the chunks (one frame each) run side by side (frame_threads).
    done = frame_map(run, range(0, len(frames), step), parallel=model.frame_parallel)
    parts = [p for p, _ in done]
    scales = [s for _, chunk_scales in done for s in chunk_scales]
    outs = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
    threshold = float(getattr(det, "det_thresh", 0.5))
    width, height = input_size
    fmc = det.fmc
    results = []
    for i, det_scale in enumerate(scales):
        scores_l, boxes_l, kps_l = [], [], []
        for idx, stride in enumerate(det._feat_stride_fpn):
            scores = outs[idx][i] if det.batched else outs[idx]
            bbox_preds = (outs[idx + fmc][i] if det.batched else outs[idx + fmc]) * stride
            centers = _anchor_centers(det, height // stride, width // stride, stride)
            pos = np.where(scores >= threshold)[0]
            boxes = _distance2bbox(centers, bbox_preds)
            scores_l.append(scores[pos])
            boxes_l.append(boxes[pos])
            if det.use_kps:
                kps_preds = (outs[idx + fmc * 2][i] if det.batched else outs[idx + fmc * 2]) * stride
                kps = _distance2kps(centers, kps_preds)
                kps_l.append(kps.reshape((kps.shape[0], -1, 2))[pos])
        results.append(_finish(det, scores_l, boxes_l, kps_l, det_scale))
    return results


def _distance2bbox(points, distance):
    return np.stack([points[:, 0] - distance[:, 0], points[:, 1] - distance[:, 1],
                     points[:, 0] + distance[:, 2], points[:, 1] + distance[:, 3]], axis=-1)


def _distance2kps(points, distance):
    preds = []
    for i in range(0, distance.shape[1], 2):
        preds.append(points[:, i % 2] + distance[:, i])
        preds.append(points[:, i % 2 + 1] + distance[:, i + 1])
    return np.stack(preds, axis=-1)


def _finish(det, scores_l, boxes_l, kps_l, det_scale):
    """insightface's ``_detect_candidates`` tail and ``detect`` (max_num=0), then
    rekolab's (boxes, scores, kps) with the highest score first."""
    if sum(s.size for s in scores_l) == 0:
        return _EMPTY
    scores = np.vstack(scores_l)
    order = np.argsort(-scores.ravel(), kind="stable")
    boxes = np.vstack(boxes_l) / det_scale
    pre_det = np.hstack((boxes, scores)).astype(np.float32, copy=False)[order, :]
    kpss = (np.vstack(kps_l) / det_scale)[order, :, :] if det.use_kps else None
    # detect(): one input size, so the second sort keeps this order; then NMS.
    order = np.argsort(-pre_det[:, 4], kind="stable")
    pre_det = pre_det[order, :]
    kpss = kpss[order] if kpss is not None else None
    keep = det.nms(pre_det)
    bboxes = pre_det[keep, :]
    kpss = kpss[keep, :, :] if kpss is not None else np.zeros((len(bboxes), 5, 2), np.float32)
    order = np.argsort(-bboxes[:, 4], kind="stable")
    bboxes, kpss = bboxes[order], kpss[order]
    return bboxes[:, :4].astype(np.float32), bboxes[:, 4].astype(np.float32), kpss.astype(np.float32)


def embed_faces(rec, frames_bgr, kps_per_frame, model: OnnxModel | None = None) -> list[np.ndarray]:
    """L2-normalised embeddings ``(N_i, D)`` of the faces of each frame, given their 5
    keypoints: insightface's ``norm_crop`` + ``get_feat`` recipe, one batched call."""
    cv2 = require("cv2", "video")
    from insightface.utils import face_align

    frames = list(frames_bgr)
    counts = [len(k) for k in kps_per_frame]
    crops = [face_align.norm_crop(frame, landmark=k, image_size=rec.input_size[0])
             for frame, kps in zip(frames, kps_per_frame) for k in kps]
    dim = rec.output_shape[-1] if isinstance(rec.output_shape[-1], int) else None
    if not crops:
        return [np.zeros((0, dim or 0), np.float32) for _ in counts]
    blob = cv2.dnn.blobFromImages(crops, 1.0 / rec.input_std, rec.input_size,
                                  (rec.input_mean, rec.input_mean, rec.input_mean), swapRB=True)
    emb = (model or recognizer_model(rec))(blob)[0].reshape(len(crops), -1).astype(np.float32)
    # Row by row, as insightface users normalise one face: the same float32 rounding.
    emb = np.stack([e / max(float(np.linalg.norm(e)), 1e-12) for e in emb])
    return np.split(emb, np.cumsum(counts)[:-1])
