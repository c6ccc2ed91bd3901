"""Rekognition ``FaceDetail`` attributes for detected faces, from local models.

The face detector (SCRFD) gives a box, a score and five keypoints per face.
:func:`describe_faces` turns those, plus the optional attribute models in
:class:`FaceAttributeModels`, into Rekognition ``FaceDetail`` dicts. An attribute
that no installed model produces is **left out**, never invented; ``FaceOccluded``,
``EyeDirection``, ``Eyeglasses``, ``Sunglasses``, ``Beard`` and ``Mustache`` are
never produced (no model for them here).

Attribute -> model -> method
============================

``DEFAULT`` (always):

* **BoundingBox** -- detector box divided by the frame width/height. Not clamped,
  so it can run past 0..1 at the frame edges, as Rekognition's does.
* **Confidence** -- detector score x 100.
* **Landmarks** -- with ``landmarks_68_pfld.onnx``: the 30 Rekognition landmark
  types, taken from iBUG-68 points (table in ``LANDMARKS_68`` below; a point
  listed with several indices is their mean). PFLD runs as one batched call for
  all faces of the frame on a square of side 1.1 x max(box w, h) around the box
  centre (the model's recipe). With ALL, a second pass runs on a square of side
  1.2 x max(extent of the pass-1 points) around their centre, and its points are
  returned: it puts the face where PFLD saw faces framed in training, and on the
  test media it separated open from closed inner lips much better (closed <= 0.073,
  open >= 0.118 mouth ratio, against 0.088 / 0.104 after one pass), which
  MouthOpen and EyesOpen need. DEFAULT skips it: the pass costs as much as the
  detector, and Landmarks/Pose do not need it. Without the
  68 model: the five basic types (eyeLeft, eyeRight, nose, mouthLeft, mouthRight)
  from the detector keypoints. "Left" always means the left side of the *image*
  (smaller X), as in Rekognition. X, Y are ratios of the frame width/height.
* **Pose** -- with 68 points: ``cv2.solvePnP`` (iterative) of 14 points on the
  generic anthropometric 3D head (``MODEL_3D``), with a pinhole camera of focal
  length max(W, H) pixels centred on the frame and no distortion; the rotation
  is read as yaw/pitch of the face's forward axis and roll about it. With only
  the 5 keypoints, a closed form: Roll = angle of the eye line; after levelling
  it, Yaw = asin(dx / (0.63 EM)) and Pitch = atan((0.50 - t) / 0.63), where EM
  is the eye-midpoint to mouth-midpoint distance, dx the nose tip's offset from
  that midline and t the nose tip's height between eye line (0) and mouth line
  (1); 0.63 (nose depth / EM) was fitted to the 68-point Yaw on the test media.
  Sign convention (Rekognition documents none):

  - **Roll** > 0: the face is turned clockwise in the image (its image-right eye
    is lower than its image-left eye); Roll = the angle of the eye line.
  - **Yaw** > 0: the face looks toward the image's right (the person's own left).
  - **Pitch** > 0: the face looks up (chin up).

  A horizontally flipped image gives the same Pitch and Yaw, Roll of opposite sign.
* **Quality** -- from the pixels of the box (clipped to the frame), in gray
  (``cv2.COLOR_BGR2GRAY`` luma):

  - Brightness = 100 x mean(luma) / 255.
  - Sharpness = 100 x (1 - exp(-v / 300)), where v is the variance of the 3x3
    Laplacian of the crop resized to 112x112 (``INTER_AREA`` when shrinking).
    Resizing to a fixed size makes v a property of the face, not of its pixel
    count; a face that is small in the frame is upscaled, so it reads soft, as it
    should. The saturating curve maps v = 0 to 0, v = 300 to 63, v = 690 to 90.

``ALL`` adds, each only when its model is there:

* **AgeRange**, **Gender** -- ``genderage.onnx`` (insightface): the box centre
  and 1.5 x max(w, h) are warped to 96x96 (no rotation), RGB, 0..255, NCHW; the
  output is ``[female, male, a]``. Age = round(100 a); AgeRange = age +- max(3,
  round(0.15 age)), Low >= 0. Gender = argmax(female, male) (index 0 female, 1
  male); Confidence = 100 x softmax(female, male) of the winner. The model's
  output is ``[1, 3]``, so it runs once per face.
* **Emotions** -- ``emotion_mini_xception_fer2013_64.onnx`` (FER2013): gray box
  crop, 64x64, (x/255 - 0.5) x 2, NHWC, one batched call per frame. All 7 classes
  are reported, Confidence = 100 x probability, sorted by Confidence descending:
  angry -> ANGRY, disgust -> DISGUSTED, fear -> FEAR, happy -> HAPPY, sad -> SAD,
  surprise -> SURPRISED, neutral -> CALM. (Rekognition's CONFUSED and UNKNOWN
  have no FER class and are never produced.)
* **Smile** -- P(smile) = P(happy) from the emotion model; with the 68 points it
  is 0.6 x P(happy) + 0.4 x sigmoid((mouth width / eye distance - 0.98) / 0.04),
  the mouth corners (48, 54) against the eye centres: a smile widens the mouth,
  and this keeps a talking, open mouth (which FER often calls "happy") from
  counting as a smile. Value = P >= 0.5; Confidence = 100 x max(P, 1 - P).
* **EyesOpen** -- 68 points only: eye aspect ratio EAR = (|p1-p5| + |p2-p4|) /
  (2 |p0-p3|) per eye (points 36-41, 42-47), averaged over both eyes.
  P(open) = sigmoid((EAR - 0.10) / 0.03); Value = P >= 0.5; Confidence = 100 x
  max(P, 1 - P), so it is 50 at the threshold and grows with the distance to it.
  PFLD's eyelid points are coarse: open eyes read 0.11-0.48 on the test media
  (squinting smiles lowest), and on faces under ~100 px it does not follow a blink.
* **MouthOpen** -- 68 points only: inner-lip ratio MAR = mean(|61-67|, |62-66|,
  |63-65|) / |60-64|. P(open) = sigmoid((MAR - 0.095) / 0.02); Value and
  Confidence as for EyesOpen. Closed mouths read <= 0.08 on the test media,
  slightly parted lips (singing) ~0.12, a wide-open mouth ~0.4.

:meth:`FaceAttributeModels.methods` gives the same information per attribute, as
``"<model file name>: <method>"`` text (``detector`` / ``pixels`` where no
attribute model is involved), for the README table and each job's metadata.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rekolab.models import find_model_file, model_dir, require
from rekolab.models.face_scores import face_confidence

cv2 = require("cv2", "video")

__all__ = [
    "FaceAttributeModels",
    "describe_faces",
    "describe_faces_batch",
    "bgr_frames",
    "DEFAULT_ATTRIBUTES",
    "ALL_ONLY_ATTRIBUTES",
    "LANDMARKS_68",
    "BASIC_LANDMARKS",
    "EMOTION_TYPES",
    "MODEL_3D",
]

LANDMARKS_MODEL = "face_attributes/landmarks_68_pfld.onnx"
EMOTION_MODEL = "face_attributes/emotion_mini_xception_fer2013_64.onnx"
GENDERAGE_FILE = "genderage.onnx"

# Rekognition's DEFAULT attribute set, and what ALL adds (FaceDetail member order).
DEFAULT_ATTRIBUTES = ("BoundingBox", "Landmarks", "Pose", "Quality", "Confidence")
ALL_ONLY_ATTRIBUTES = ("AgeRange", "Smile", "Gender", "EyesOpen", "MouthOpen", "Emotions")
# Order of keys in a FaceDetail, as in botocore's service model.
_KEY_ORDER = (
    "BoundingBox", "AgeRange", "Smile", "Gender", "EyesOpen", "MouthOpen",
    "Emotions", "Landmarks", "Pose", "Quality", "Confidence",
)

# Rekognition landmark type -> iBUG-68 indices (0-based; averaged when several).
# iBUG numbers points as seen in the image: 0 is the jaw end on the image's left,
# 36-41 the image-left eye, so "left" here is the image's left, as in Rekognition.
#
# | Rekognition type   | iBUG-68            | what it is                          |
# |--------------------|--------------------|-------------------------------------|
# | eyeLeft            | 36, 39             | midpoint of the eye corners         |
# | eyeRight           | 42, 45             | midpoint of the eye corners         |
# | nose               | 30                 | nose tip                            |
# | mouthLeft          | 48                 | outer mouth corner                  |
# | mouthRight         | 54                 | outer mouth corner                  |
# | leftEyeBrowLeft    | 17                 | brow outer end                      |
# | leftEyeBrowRight   | 21                 | brow inner end                      |
# | leftEyeBrowUp      | 19                 | brow top (middle point)             |
# | rightEyeBrowLeft   | 22                 | brow inner end                      |
# | rightEyeBrowRight  | 26                 | brow outer end                      |
# | rightEyeBrowUp     | 24                 | brow top (middle point)             |
# | leftEyeLeft        | 36                 | outer eye corner                    |
# | leftEyeRight       | 39                 | inner eye corner                    |
# | leftEyeUp          | 37, 38             | upper lid                           |
# | leftEyeDown        | 40, 41             | lower lid                           |
# | rightEyeLeft       | 42                 | inner eye corner                    |
# | rightEyeRight      | 45                 | outer eye corner                    |
# | rightEyeUp         | 43, 44             | upper lid                           |
# | rightEyeDown       | 46, 47             | lower lid                           |
# | noseLeft           | 31                 | nostril wing                        |
# | noseRight          | 35                 | nostril wing                        |
# | mouthUp            | 51                 | top of the upper lip                |
# | mouthDown          | 57                 | bottom of the lower lip             |
# | leftPupil          | 36-41              | eye contour centroid                |
# | rightPupil         | 42-47              | eye contour centroid                |
# | upperJawlineLeft   | 0                  | jaw at ear level                    |
# | midJawlineLeft     | 4                  | jaw, halfway to the chin            |
# | chinBottom         | 8                  | chin                                |
# | midJawlineRight    | 12                 | jaw, halfway to the chin            |
# | upperJawlineRight  | 16                 | jaw at ear level                    |
LANDMARKS_68: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("eyeLeft", (36, 39)),
    ("eyeRight", (42, 45)),
    ("nose", (30,)),
    ("mouthLeft", (48,)),
    ("mouthRight", (54,)),
    ("leftEyeBrowLeft", (17,)),
    ("leftEyeBrowRight", (21,)),
    ("leftEyeBrowUp", (19,)),
    ("rightEyeBrowLeft", (22,)),
    ("rightEyeBrowRight", (26,)),
    ("rightEyeBrowUp", (24,)),
    ("leftEyeLeft", (36,)),
    ("leftEyeRight", (39,)),
    ("leftEyeUp", (37, 38)),
    ("leftEyeDown", (40, 41)),
    ("rightEyeLeft", (42,)),
    ("rightEyeRight", (45,)),
    ("rightEyeUp", (43, 44)),
    ("rightEyeDown", (46, 47)),
    ("noseLeft", (31,)),
    ("noseRight", (35,)),
    ("mouthUp", (51,)),
    ("mouthDown", (57,)),
    ("leftPupil", (36, 37, 38, 39, 40, 41)),
    ("rightPupil", (42, 43, 44, 45, 46, 47)),
    ("upperJawlineLeft", (0,)),
    ("midJawlineLeft", (4,)),
    ("chinBottom", (8,)),
    ("midJawlineRight", (12,)),
    ("upperJawlineRight", (16,)),
)

# The detector's keypoints, in insightface order.
BASIC_LANDMARKS = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")

# One (30, 68) averaging matrix, so all landmarks of all faces are one matmul.
_LANDMARK_MATRIX = np.zeros((len(LANDMARKS_68), 68), dtype=np.float64)
for _row, (_name, _idx) in enumerate(LANDMARKS_68):
    _LANDMARK_MATRIX[_row, list(_idx)] = 1.0 / len(_idx)

# FER2013 class order of the emotion model -> Rekognition EmotionName.
EMOTION_TYPES = ("ANGRY", "DISGUSTED", "FEAR", "HAPPY", "SAD", "SURPRISED", "CALM")
_HAPPY = 3

# Generic 3D head for solvePnP: the 14-point anthropometric model of the ISR
# Coimbra "glAnthropometric3DModel" (as used by lincolnhard/head-pose-estimation),
# in centimetres-like units. The source has X toward the image's left, Y up and Z
# toward the camera; here every axis is negated into OpenCV camera axes (X right,
# Y down, Z away from the camera), so the identity rotation is a face looking
# straight into the camera. Rows pair with the iBUG indices in _POSE_IDX.
MODEL_3D = -np.array(
    [
        [6.825897, 6.760612, 4.402142],    # 17 brow, outer end (image left)
        [1.330353, 7.122144, 6.903745],    # 21 brow, inner end (image left)
        [-1.330353, 7.122144, 6.903745],   # 22 brow, inner end (image right)
        [-6.825897, 6.760612, 4.402142],   # 26 brow, outer end (image right)
        [5.311432, 5.485328, 3.987654],    # 36 eye, outer corner (image left)
        [1.789930, 5.393625, 4.413414],    # 39 eye, inner corner (image left)
        [-1.789930, 5.393625, 4.413414],   # 42 eye, inner corner (image right)
        [-5.311432, 5.485328, 3.987654],   # 45 eye, outer corner (image right)
        [2.005628, 1.409845, 6.165652],    # 31 nostril wing (image left)
        [-2.005628, 1.409845, 6.165652],   # 35 nostril wing (image right)
        [2.774015, -2.080775, 5.048531],   # 48 mouth corner (image left)
        [-2.774015, -2.080775, 5.048531],  # 54 mouth corner (image right)
        [0.000000, -3.116408, 6.097667],   # 57 lower lip, bottom
        [0.000000, -7.415691, 4.070434],   # 8 chin
    ],
    dtype=np.float64,
)
_POSE_IDX = (17, 21, 22, 26, 36, 39, 42, 45, 31, 35, 48, 54, 57, 8)

# 5-keypoint pose constants (see _pose_from_5). _K_NOSE: nose-tip depth in front
# of the eyes/mouth plane as a fraction of the eye-to-mouth distance; fitted so
# that the 5-point Yaw agrees with the 68-point solvePnP Yaw on the test media
# (106 faces over 60 px wide, stills, video frames and their mirror images:
# least squares of sin(yaw), correlation 0.90) and reused for Pitch. _NOSE_T0:
# where the nose tip sits between the eye line (0) and the mouth line (1) when the
# face is level (the test faces average 0.54 at a mean 68-point pitch of -5 deg).
_K_NOSE = 0.63
_NOSE_T0 = 0.50

# Decision thresholds and softness (see the module docstring).
_EAR_THRESHOLD, _EAR_SCALE = 0.10, 0.03
_MAR_THRESHOLD, _MAR_SCALE = 0.095, 0.02
_SMILE_WIDTH, _SMILE_WIDTH_SCALE, _SMILE_HAPPY_WEIGHT = 0.98, 0.04, 0.6
_SHARPNESS_K = 300.0
_QUALITY_SIZE = 112


@dataclass(frozen=True)
class FaceAttributeModels:
    """Paths of the optional face attribute models; ``None`` = not installed."""

    landmarks68: Path | None
    emotion: Path | None
    genderage: Path | None

    @classmethod
    def discover(cls, pack_dir: str | os.PathLike | None = None) -> "FaceAttributeModels":
        """Find the models under ``REKOLAB_MODEL_DIR``.

        ``genderage.onnx`` comes from ``pack_dir`` (an insightface model pack
        folder) when it has one, else from the first (sorted) pack under
        ``REKOLAB_MODEL_DIR/insightface/models/*/``.
        """
        genderage: Path | None = None
        if pack_dir is not None and (Path(pack_dir) / GENDERAGE_FILE).is_file():
            genderage = Path(pack_dir) / GENDERAGE_FILE
        else:
            root = model_dir()
            if root is not None:
                found = sorted((root / "insightface" / "models").glob(f"*/{GENDERAGE_FILE}"))
                genderage = found[0] if found else None
        return cls(
            landmarks68=find_model_file(LANDMARKS_MODEL),
            emotion=find_model_file(EMOTION_MODEL),
            genderage=genderage,
        )

    def attributes(self, attributes: str = "DEFAULT") -> tuple[str, ...]:
        """The FaceDetail keys :func:`describe_faces` produces with these models."""
        want_all = _check_attributes(attributes) == "ALL"
        keys = set(DEFAULT_ATTRIBUTES)
        if want_all:
            if self.genderage is not None:
                keys |= {"AgeRange", "Gender"}
            if self.emotion is not None:
                keys |= {"Emotions", "Smile"}
            if self.landmarks68 is not None:
                keys |= {"EyesOpen", "MouthOpen"}
        return tuple(k for k in _KEY_ORDER if k in keys)

    def methods(self, attributes: str = "ALL") -> dict[str, str]:
        """Attribute name -> ``"<model file name>: <method>"`` for each attribute
        that will be produced with these models (README table, job metadata)."""
        lm = self.landmarks68.name if self.landmarks68 is not None else None
        em = self.emotion.name if self.emotion is not None else None
        ga = self.genderage.name if self.genderage is not None else None
        text = {
            "BoundingBox": "detector: face box / frame width and height (not clamped)",
            "Confidence": "detector: detection score x 100",
            "Quality": (
                "pixels: Brightness = 100 x mean gray of the box / 255; Sharpness = "
                f"100 x (1 - exp(-var(Laplacian) / {_SHARPNESS_K:g})) of the box resized "
                f"to {_QUALITY_SIZE}x{_QUALITY_SIZE} gray"
            ),
        }
        if lm is not None:
            text["Landmarks"] = (
                f"{lm}: 30 Rekognition types from iBUG-68 points (PFLD, a second refining pass with ALL; "
                "pupils = eye contour centroid)"
            )
            text["Pose"] = (
                f"{lm}: cv2.solvePnP of 14 points on a generic 3D head, focal length "
                "max(W, H); Roll > 0 clockwise, Yaw > 0 toward image right, Pitch > 0 up"
            )
            text["EyesOpen"] = (
                f"{lm}: eye aspect ratio (36-41, 42-47) vs {_EAR_THRESHOLD:g}, "
                f"Confidence = 100 x sigmoid(|EAR - {_EAR_THRESHOLD:g}| / {_EAR_SCALE:g})"
            )
            text["MouthOpen"] = (
                f"{lm}: inner-lip ratio (60-67) vs {_MAR_THRESHOLD:g}, "
                f"Confidence = 100 x sigmoid(|MAR - {_MAR_THRESHOLD:g}| / {_MAR_SCALE:g})"
            )
        else:
            text["Landmarks"] = "detector: the 5 keypoints (eyeLeft, eyeRight, nose, mouthLeft, mouthRight)"
            text["Pose"] = (
                "detector: closed form from the 5 keypoints (Roll = eye line; Yaw, Pitch "
                "from the nose offset); Roll > 0 clockwise, Yaw > 0 toward image right, Pitch > 0 up"
            )
        if ga is not None:
            text["AgeRange"] = f"{ga}: age = round(100 a), range age +- max(3, 15%)"
            text["Gender"] = f"{ga}: argmax(female, male), Confidence = softmax x 100"
        if em is not None:
            text["Emotions"] = (
                f"{em}: FER2013 7-class softmax x 100 (neutral -> CALM), sorted descending"
            )
            if lm is not None:
                text["Smile"] = (
                    f"{em} + {lm}: P = {_SMILE_HAPPY_WEIGHT:g} x P(happy) + "
                    f"{1 - _SMILE_HAPPY_WEIGHT:g} x sigmoid((mouth width / eye distance - "
                    f"{_SMILE_WIDTH:g}) / {_SMILE_WIDTH_SCALE:g}); Value = P >= 0.5"
                )
            else:
                text["Smile"] = f"{em}: P = P(happy); Value = P >= 0.5"
        return {k: text[k] for k in self.attributes(attributes)}


def bgr_frames(frames_rgb) -> list[np.ndarray]:
    """Decoded RGB frames (the decoder's) as the contiguous BGR frames the face models take:
    ``cv2.cvtColor`` swaps the channels in one pass (the same bytes as
    ``np.ascontiguousarray(f[:, :, ::-1])``: 0.04 against 2.0 ms of CPU per 640x360 frame)."""
    return [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames_rgb]


def describe_faces(
    frame_bgr: np.ndarray,
    boxes_xyxy: np.ndarray,
    kps5: np.ndarray | None,
    scores: np.ndarray,
    models: FaceAttributeModels,
    attributes: str = "DEFAULT",
) -> list[dict]:
    """Rekognition ``FaceDetail`` dicts for the faces detected in one frame.

    ``frame_bgr``: HxWx3 uint8 BGR. ``boxes_xyxy``: (N, 4) pixel boxes.
    ``kps5``: (N, 5, 2) pixel keypoints in insightface order (image-left eye,
    image-right eye, nose, image-left mouth corner, image-right mouth corner), or
    ``None``. ``scores``: (N,) detector scores 0..1. ``attributes``: ``"DEFAULT"``
    or ``"ALL"``, as in Rekognition. Returns N dicts, in the order of the boxes.

    Without keypoints and without the 68-point model there are no points to give,
    so Landmarks and Pose are left out.
    """
    return describe_faces_batch([frame_bgr], [boxes_xyxy], [kps5], [scores], models, attributes)[0]


def describe_faces_batch(frames_bgr, boxes_per_frame, kps_per_frame, scores_per_frame,
                         models: FaceAttributeModels, attributes: str = "DEFAULT") -> list[list[dict]]:
    """:func:`describe_faces` for many frames: each attribute model runs once on the
    faces of all the frames (one PFLD call per pass, one expression call, one
    age/gender call), not once per frame. The result is identical per frame."""
    want_all = _check_attributes(attributes) == "ALL"
    inputs = [_face_inputs(*args) for args in zip(frames_bgr, boxes_per_frame, kps_per_frame, scores_per_frame)]
    live = [i for i, (_, boxes, _, _) in enumerate(inputs) if len(boxes)]
    out: list[list[dict]] = [[] for _ in inputs]
    if not live:
        return out
    frames = [inputs[i][0] for i in live]
    boxes = [inputs[i][1] for i in live]
    grays = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    pts68 = (_landmarks68(frames, boxes, models.landmarks68, refine=want_all)
             if models.landmarks68 is not None else [None] * len(live))
    emotions = genderage = [None] * len(live)
    if want_all and models.emotion is not None:
        emotions = _emotion_probs(grays, boxes, models.emotion)
    if want_all and models.genderage is not None:
        genderage = _genderage(frames, boxes, models.genderage)
    for j, i in enumerate(live):
        frame, b, kps, scores = inputs[i]
        out[i] = _details(frame, grays[j], b, kps, scores, pts68[j], emotions[j], genderage[j], want_all)
    return out


def _face_inputs(frame_bgr, boxes_xyxy, kps5, scores):
    """One frame's detector outputs, checked and as float64 arrays."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"frame_bgr must be HxWx3, got shape {frame_bgr.shape}")
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    boxes = boxes.reshape(-1, boxes.shape[-1] if boxes.ndim == 2 else 4)[:, :4]  # (N,5) with scores is fine
    n = len(boxes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != n:
        raise ValueError(f"{n} boxes but {len(scores)} scores")
    kps = None if kps5 is None else np.asarray(kps5, dtype=np.float64).reshape(n, 5, 2)
    return frame_bgr, boxes, kps, scores


def _details(frame_bgr, gray, boxes, kps, scores, pts68, emotions, genderage, want_all) -> list[dict]:
    """The FaceDetail dicts of one frame from its model outputs."""
    n = len(boxes)
    h, w = frame_bgr.shape[:2]
    # Landmarks and pose for all faces at once.
    if pts68 is not None:
        named = np.einsum("lk,nkd->nld", _LANDMARK_MATRIX, pts68)  # (N, 30, 2)
        names: Sequence[str] = [name for name, _ in LANDMARKS_68]
        poses = [_pose_from_68(p, w, h) for p in pts68]
    elif kps is not None:
        named = kps
        names = BASIC_LANDMARKS
        poses = [_pose_from_5(k) for k in kps]
    else:
        named, names, poses = None, (), []
    if pts68 is not None and want_all:
        ear = _eye_aspect_ratio(pts68)
        mar = _mouth_aspect_ratio(pts68)
        width_ratio = _mouth_width_ratio(pts68)

    out: list[dict] = []
    scale = np.array([w, h], dtype=np.float64)
    for i in range(n):
        x1, y1, x2, y2 = boxes[i]
        d: dict = {
            "BoundingBox": {
                "Width": float((x2 - x1) / w),
                "Height": float((y2 - y1) / h),
                "Left": float(x1 / w),
                "Top": float(y1 / h),
            },
            "Confidence": _pct(float(face_confidence(scores[i]))),  # calibrated, see models.face_scores
            "Quality": _quality(gray, boxes[i]),
        }
        if named is not None:
            rel = (named[i] / scale).tolist()  # Python floats, as float() of each gives
            d["Landmarks"] = [{"Type": t, "X": x, "Y": y} for t, (x, y) in zip(names, rel)]
            roll, yaw, pitch = poses[i]
            d["Pose"] = {"Roll": _deg(roll), "Yaw": _deg(yaw), "Pitch": _deg(pitch)}
        if want_all:
            if genderage is not None:
                female, male, a = genderage[i]
                age = max(0, int(round(a * 100.0)))
                half = max(3, int(round(0.15 * age)))
                d["AgeRange"] = {"Low": max(0, age - half), "High": age + half}
                p_male = _sigmoid(male - female)  # softmax of the two logits
                d["Gender"] = {
                    "Value": "Male" if p_male >= 0.5 else "Female",
                    "Confidence": _pct(100.0 * max(p_male, 1.0 - p_male)),
                }
            if emotions is not None:
                probs = emotions[i]
                order = np.argsort(-probs, kind="stable")
                d["Emotions"] = [
                    {"Type": EMOTION_TYPES[j], "Confidence": _pct(100.0 * probs[j])} for j in order
                ]
                p_smile = float(probs[_HAPPY])
                if pts68 is not None:
                    p_geom = _sigmoid((width_ratio[i] - _SMILE_WIDTH) / _SMILE_WIDTH_SCALE)
                    p_smile = _SMILE_HAPPY_WEIGHT * p_smile + (1.0 - _SMILE_HAPPY_WEIGHT) * p_geom
                d["Smile"] = _boolean(p_smile)
            if pts68 is not None:
                d["EyesOpen"] = _boolean(_sigmoid((ear[i] - _EAR_THRESHOLD) / _EAR_SCALE))
                d["MouthOpen"] = _boolean(_sigmoid((mar[i] - _MAR_THRESHOLD) / _MAR_SCALE))
        out.append({k: d[k] for k in _KEY_ORDER if k in d})
    return out


# --------------------------------------------------------------------------- helpers


def _check_attributes(attributes: str) -> str:
    value = str(attributes).upper()
    if value not in ("DEFAULT", "ALL"):
        raise ValueError(f"attributes must be 'DEFAULT' or 'ALL', got {attributes!r}")
    return value


def _sigmoid(x: float) -> float:
    # math.exp overflows past ~709; clip, the result is 0 or 1 there anyway.
    return 1.0 / (1.0 + math.exp(-max(-500.0, min(500.0, float(x)))))


def _pct(x: float) -> float:
    """A Rekognition Percent: float in 0..100."""
    return float(min(100.0, max(0.0, x)))


def _deg(x: float) -> float:
    """A Rekognition Degree: float in -180..180."""
    x = (float(x) + 180.0) % 360.0 - 180.0
    return float(min(180.0, max(-180.0, x)))


def _boolean(p_true: float) -> dict:
    """{Value, Confidence} from the probability of True."""
    return {"Value": bool(p_true >= 0.5), "Confidence": _pct(100.0 * max(p_true, 1.0 - p_true))}


def _crop(img: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """img[y0:y1, x0:x1] with zero padding where the window leaves the image."""
    h, w = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return np.zeros((max(y1 - y0, 1), max(x1 - x0, 1)) + img.shape[2:], img.dtype)
    part = img[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
        return part
    return cv2.copyMakeBorder(
        part, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_CONSTANT, value=0
    )


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize; area averaging when shrinking, so big faces do not alias."""
    interp = cv2.INTER_AREA if img.shape[0] > size and img.shape[1] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


#: Faces per PFLD call when it runs on the CPU. PFLD's activations at 112x112 outgrow
#: the core caches in big batches: on 2 cores (AMD EPYC, 1 MiB L2 per core) it took
#: 4.7-5.3 ms of CPU per face in calls of 1-4 faces, 6.4-7.9 in calls of 16-64, and
#: the ALL analyzer over the Hamilton clip 2.76-2.86 CPU s with chunks of 4 against
#: 2.86-4.3 with one call per batch (interleaved runs on a loaded machine). The outputs are bit-identical whatever the chunk.
#: On a GPU the whole batch goes in one call.
PFLD_CPU_CHUNK = 4
#: Faces per expression / age-gender call on the CPU. Their CPU per face is flat from 1
#: to 64 faces, but onnxruntime's memory arena grows to the largest batch it has seen
#: (in power-of-two steps), and a batch's face count varies: in whole batches, peak RSS
#: of a long job kept rising with the length of the video. Fixed-size calls bound it.
SMALL_MODEL_CPU_CHUNK = 16


def _run(path: Path, batch: np.ndarray, cpu_chunk: int | None = None) -> np.ndarray:
    """The model's first output for one batch, on the configured engine
    (:mod:`rekolab.models.backend`); on the CPU in calls of at most ``cpu_chunk``,
    side by side on onnxruntime (:mod:`rekolab.models.frame_threads`)."""
    from rekolab.models.backend import onnx_model
    from rekolab.models.frame_threads import frame_map

    model = onnx_model(path)
    if cpu_chunk is None or model.device != "cpu" or len(batch) <= cpu_chunk:
        return model(batch)[0]
    return np.concatenate(frame_map(lambda i: model(batch[i:i + cpu_chunk])[0], range(0, len(batch), cpu_chunk),
                                    parallel=model.frame_parallel))


def _split(values: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Per-frame rows of a batch that held the faces of every frame in order."""
    return np.split(values, np.cumsum([len(b) for b in boxes])[:-1])


def _pfld_pass(frames, centers, sides, path: Path) -> list[np.ndarray]:
    """One batched PFLD call on squares (centre, side) of every frame -> per frame
    (N, 68, 2) frame pixels."""
    crops, origins, sizes = [], [], []
    for frame, c, sd in zip(frames, centers, sides):
        for (cx, cy), side in zip(c, sd):
            s = max(int(round(side)), 2)
            x0, y0 = int(round(cx - s / 2.0)), int(round(cy - s / 2.0))
            crops.append(_resize(_crop(frame, x0, y0, x0 + s, y0 + s), 112))
            origins.append((x0, y0))
            sizes.append(s)
    # BGR -> RGB, /255, NHWC -> NCHW (the model's recipe).
    batch = np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    out = _run(path, batch, PFLD_CPU_CHUNK).reshape(-1, 68, 2).astype(np.float64)
    sizes_ = np.asarray(sizes, dtype=np.float64)[:, None, None]
    return _split(out * sizes_ + np.asarray(origins, dtype=np.float64)[:, None, :], list(centers))


def _landmarks68(frames, boxes, path: Path, refine: bool = True) -> list[np.ndarray]:
    """PFLD (see the module docstring) -> per frame (N, 68, 2) frame pixels;
    ``refine`` adds the second pass. ``frames`` and ``boxes`` are per-frame lists."""
    wh = [b[:, 2:4] - b[:, 0:2] for b in boxes]
    centers = [(b[:, 0:2] + b[:, 2:4]) / 2.0 for b in boxes]
    first = _pfld_pass(frames, centers, [1.1 * x.max(axis=1) for x in wh], path)
    if not refine:
        return first
    lo, hi = [p.min(axis=1) for p in first], [p.max(axis=1) for p in first]
    return _pfld_pass(frames, [(a + b) / 2.0 for a, b in zip(lo, hi)],
                      [1.2 * (b - a).max(axis=1) for a, b in zip(lo, hi)], path)


def _emotion_probs(grays, boxes, path: Path) -> list[np.ndarray]:
    """Per frame (N, 7) FER2013 probabilities, one batched call for all frames."""
    crops = []
    for gray, frame_boxes in zip(grays, boxes):
        for x1, y1, x2, y2 in frame_boxes:
            x0, y0 = int(round(x1)), int(round(y1))
            crop = _crop(gray, x0, y0, max(int(round(x2)), x0 + 1), max(int(round(y2)), y0 + 1))
            crops.append(cv2.resize(crop, (64, 64)))  # the model's recipe: plain cv2.resize
    batch = (np.stack(crops).astype(np.float32) / 255.0 - 0.5) * 2.0
    return _split(_run(path, batch[..., None], SMALL_MODEL_CPU_CHUNK).reshape(-1, 7).astype(np.float64), boxes)


def _genderage(frames, boxes, path: Path) -> list[np.ndarray]:
    """Per frame (N, 3) [female, male, age/100], one batched call for all frames (the
    graph declares its output [1, 3], but its batch axis is free: a batch gives the
    same numbers as single faces, tests/test_backend.py)."""
    blobs = []
    for frame, frame_boxes in zip(frames, boxes):
        for x1, y1, x2, y2 in frame_boxes:
            cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
            s = 96.0 / (1.5 * max(x2 - x1, y2 - y1, 1e-6))
            m = np.array([[s, 0.0, 48.0 - s * cx], [0.0, s, 48.0 - s * cy]])
            crop = cv2.warpAffine(frame, m, (96, 96), borderValue=0)
            blobs.append(crop[..., ::-1].transpose(2, 0, 1))  # RGB, 0..255
    out = _run(path, np.stack(blobs).astype(np.float32), SMALL_MODEL_CPU_CHUNK).reshape(-1, 3)[:, :3].astype(np.float64)
    return _split(out, boxes)


def _quality(gray: np.ndarray, box: np.ndarray) -> dict:
    """{Brightness, Sharpness} in 0..100 from the box's gray pixels."""
    h, w = gray.shape
    x1, y1, x2, y2 = box
    x0, y0 = max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0)
    x3, y3 = min(int(math.ceil(x2)), w), min(int(math.ceil(y2)), h)
    if x3 - x0 < 2 or y3 - y0 < 2:
        return {"Brightness": 0.0, "Sharpness": 0.0}
    crop = gray[y0:y3, x0:x3]
    brightness = 100.0 * float(crop.mean()) / 255.0
    small = _resize(crop, _QUALITY_SIZE)
    variance = float(cv2.Laplacian(small, cv2.CV_64F, ksize=1).var())
    sharpness = 100.0 * (1.0 - math.exp(-variance / _SHARPNESS_K))
    return {"Brightness": _pct(brightness), "Sharpness": _pct(sharpness)}


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def _eye_aspect_ratio(p: np.ndarray) -> np.ndarray:
    """(N,) mean EAR of both eyes from (N, 68, 2)."""
    ears = []
    for e in (p[:, 36:42], p[:, 42:48]):
        vertical = _dist(e[:, 1], e[:, 5]) + _dist(e[:, 2], e[:, 4])
        ears.append(vertical / np.maximum(2.0 * _dist(e[:, 0], e[:, 3]), 1e-6))
    return (ears[0] + ears[1]) / 2.0


def _mouth_aspect_ratio(p: np.ndarray) -> np.ndarray:
    """(N,) inner-lip opening / inner-lip width from (N, 68, 2)."""
    gap = (_dist(p[:, 61], p[:, 67]) + _dist(p[:, 62], p[:, 66]) + _dist(p[:, 63], p[:, 65])) / 3.0
    return gap / np.maximum(_dist(p[:, 60], p[:, 64]), 1e-6)


def _mouth_width_ratio(p: np.ndarray) -> np.ndarray:
    """(N,) outer mouth-corner distance / eye-centre distance from (N, 68, 2)."""
    eyes = _dist(p[:, 36:42].mean(axis=1), p[:, 42:48].mean(axis=1))
    return _dist(p[:, 48], p[:, 54]) / np.maximum(eyes, 1e-6)


def _pose_from_68(pts: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """(roll, yaw, pitch) degrees from 68 frame-pixel points by solvePnP."""
    focal = float(max(width, height))
    camera = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    image_points = np.ascontiguousarray(pts[list(_POSE_IDX)], dtype=np.float64)
    ok, rvec, _tvec = cv2.solvePnP(MODEL_3D, image_points, camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.all(np.isfinite(rvec)):
        # Degenerate points: fall back to the 5-point estimate from the same points.
        five = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])
        return _pose_from_5(five)
    rot, _ = cv2.Rodrigues(rvec)
    return _euler(rot)


def _euler(rot: np.ndarray) -> tuple[float, float, float]:
    """(roll, yaw, pitch) degrees of a model->camera rotation (module convention).

    The face looks along f = R (0, 0, -1). Yaw and pitch are f's azimuth and
    elevation; roll is how far the face's own X axis (image right when frontal)
    is turned, about f, from the zero-roll axis cross(down, -f).
    """
    f = -rot[:, 2]
    yaw = math.degrees(math.atan2(f[0], -f[2]))
    pitch = math.degrees(math.atan2(-f[1], math.hypot(f[0], f[2])))
    back = -f
    x0 = np.cross(np.array([0.0, 1.0, 0.0]), back)
    norm = np.linalg.norm(x0)
    if norm < 1e-9:  # looking straight up or down: roll is undefined, report 0
        return 0.0, yaw, pitch
    x0 /= norm
    y0 = np.cross(back, x0)
    ax = rot[:, 0]
    roll = math.degrees(math.atan2(float(ax @ y0), float(ax @ x0)))
    return roll, yaw, pitch


def _pose_from_5(kps: np.ndarray) -> tuple[float, float, float]:
    """(roll, yaw, pitch) degrees from the 5 detector keypoints, closed form.

    Roll is the angle of the eye line, folded into -90..90 (on a profile the
    detector can swap the eyes). The points are then turned upright about the
    eye midpoint. The nose tip stands out of the eyes/mouth plane by about
    K x (eye-to-mouth distance), so turning the head moves it off the face's
    midline by K x EM x sin(angle):

    - Yaw = asin(dx / (K x EM)), dx = the nose's offset from the eye-mid ->
      mouth-mid line at the nose's height, EM = eye-mid to mouth-mid distance
      (EM does not shrink with yaw, so this stays bounded on profiles).
    - Pitch = atan((T0 - t) / K), t = the nose's height between the eye line (0)
      and the mouth line (1), T0 = its frontal value.
    """
    kps = np.asarray(kps, dtype=np.float64)
    left_eye, right_eye = kps[0], kps[1]
    dx, dy = right_eye - left_eye
    roll = math.atan(dy / dx) if abs(dx) > 1e-9 else math.copysign(math.pi / 2.0, dy)
    c, s = math.cos(-roll), math.sin(-roll)
    upright = (kps - (left_eye + right_eye) / 2.0) @ np.array([[c, -s], [s, c]]).T
    mouth_mid = (upright[3] + upright[4]) / 2.0
    nose = upright[2]
    eye_mouth = max(float(np.hypot(*mouth_mid)), 1e-6)
    height = mouth_mid[1] if abs(mouth_mid[1]) > 1e-6 else 1e-6
    t = nose[1] / height
    offset = (nose[0] - t * mouth_mid[0]) / (_K_NOSE * eye_mouth)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, offset))))
    pitch = math.degrees(math.atan((_NOSE_T0 - t) / _K_NOSE))
    return math.degrees(roll), yaw, pitch
