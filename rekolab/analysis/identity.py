"""One identity per face track: embeddings and shot cuts for face-detection results.

GetFaceDetection rows carry neither a track id nor an embedding, so the notebook
views link faces at view time (:func:`rekolab.widgets.detections.face_tracks`).
Boxes alone join two people standing in the same place across a shot cut (on
the Hamilton clip, Lin-Manuel Miranda at 3.5-7.0 s and Obama from 7.5 s, box IoU
0.39). :func:`face_evidence` decodes only the frames that have results and gives
the tracker two more facts:

* an **embedding per face row**: the face pack's detector runs again on the frame,
  the detection overlapping the stored box most (IoU >= 0.3) gives the five
  keypoints, and the pack's recognizer embeds the aligned face; a track never
  continues with a face whose cosine with it is below ``SPLIT_COSINE`` (0.30, the
  rule celebrity recognition uses);
* **shot cuts** (:func:`cuts_from_frames`): between consecutive decoded result
  frames, both the picture's layout (a 32x18 grey thumbnail, standardised, mean
  absolute difference > ``CUT_LAYOUT`` 0.75) and its colours (joint RGB histogram,
  half L1 distance > ``CUT_COLOUR`` 0.12) change. A cheap check tuned on the
  shared clips (Hamilton: the cuts at 0.8, 2.8 and 7.2 s score 0.85-0.91 / 0.16-0.37,
  movement within a shot at most 0.78 / 0.11); a caller with a real shot detector
  (segment detection's shots) passes its cut timestamps instead (``cuts_ms=``).

Cost: one decode, one detection and one recognizer call per face of every frame
with results (~10 ms per face on 2 CPU cores with the shared pack). On a long
video this runs once per job handle; ``JobView(identity="boxes")`` skips it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SPLIT_COSINE", "CUT_LAYOUT", "CUT_COLOUR", "face_evidence", "cuts_from_frames", "signature"]

#: A face never continues a track below this cosine with it (celebrities.py's rule).
SPLIT_COSINE = 0.30

#: A cut needs both changes (see the module docstring).
CUT_LAYOUT = 0.75
CUT_COLOUR = 0.12


def signature(frame_rgb: np.ndarray, bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(standardised 32x18 grey thumbnail, normalised joint RGB histogram)`` of a frame."""
    from PIL import Image

    grey = np.asarray(Image.fromarray(frame_rgb).convert("L").resize((32, 18), Image.BILINEAR), np.float64)
    grey = (grey - grey.mean()) / (grey.std() + 1e-6)
    small = frame_rgb[::4, ::4].reshape(-1, 3).astype(np.int64) * bins // 256
    code = (small[:, 0] * bins + small[:, 1]) * bins + small[:, 2]
    h = np.bincount(code, minlength=bins ** 3).astype(np.float64)
    return grey, h / max(h.sum(), 1.0)


def cuts_from_frames(timestamps_ms, signatures) -> list[int]:
    """Cut timestamps: the later frame of each consecutive pair whose
    :func:`signature` changed in both layout and colour."""
    ts = list(timestamps_ms)
    out = []
    for i in range(1, len(ts)):
        (g0, h0), (g1, h1) = signatures[i - 1], signatures[i]
        if float(np.mean(np.abs(g1 - g0))) > CUT_LAYOUT and 0.5 * float(np.abs(h1 - h0).sum()) > CUT_COLOUR:
            out.append(int(ts[i]))
    return out


def face_evidence(video_path, timestamps_ms: np.ndarray, frame_numbers: np.ndarray | None,
                  boxes_xywh: np.ndarray, *, pack=None, source=None):
    """``(embeddings (N, D) float32 with NaN rows where no face was found again,
    cut timestamps)`` for face rows given by their result timestamp, frame number
    (or None) and Rekognition box (ratios)."""
    from ..models.faces import face_pack
    from ..widgets.frames import FrameSource
    from .tracking import iou_matrix

    pack = pack or face_pack()
    source = source or FrameSource(video_path)
    n = len(timestamps_ms)
    ts = np.asarray(timestamps_ms, np.int64)
    if frame_numbers is None or np.any(np.asarray(frame_numbers) < 0):
        index = np.array([source.index_at(int(t)) for t in ts], np.int64)
    else:
        index = np.asarray(frame_numbers, np.int64)
    emb: np.ndarray | None = None
    hist_ts, hists = [], []
    for idx, frame in source.frames(np.unique(index)):
        rows = np.flatnonzero(index == idx)
        h, w = frame.shape[:2]
        hist_ts.append(int(ts[rows[0]]))
        hists.append(signature(frame))
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        det_boxes, _, kps = pack.detect(bgr)
        if len(det_boxes) == 0:
            continue
        b = boxes_xywh[rows]
        stored = np.stack([b[:, 0] * w, b[:, 1] * h, (b[:, 0] + b[:, 2]) * w, (b[:, 1] + b[:, 3]) * h], 1)
        iou = iou_matrix(stored, det_boxes.astype(np.float64))
        best = iou.argmax(axis=1)
        ok = iou[np.arange(len(rows)), best] >= 0.3
        if not ok.any():
            continue
        vecs = pack.embed(bgr, kps[best[ok]])
        if emb is None:
            emb = np.full((n, vecs.shape[1]), np.nan, np.float32)
        emb[rows[ok]] = vecs
    order = np.argsort(hist_ts)
    cuts = cuts_from_frames(np.asarray(hist_ts)[order], [hists[i] for i in order])
    return emb, cuts
