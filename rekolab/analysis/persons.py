"""StartPersonTracking: sampled frames -> one Arrow row per tracked person per frame.

Per sampled frame (docs/persons.md):

1. **Shot cuts.** :class:`FrameDifferenceCuts` (hue-saturation histogram distance
   between consecutive samples, the same test face search uses) says whether a cut
   happened before this frame. A cut resets the tracker: every person gets a new
   track. *Seam:* the cut detector is any object with ``is_cut(frame_bgr,
   timestamp_ms) -> bool``, passed as ``cuts=`` or built by :func:`default_cuts`;
   the shot detector of ``rekolab/analysis/shots.py`` goes there at merge.
2. **Persons.** YOLOX (``coco_detection/yolox_nano.onnx``, the label detector's
   model, frames batched) finds ``person`` boxes scoring >= 0.1.
3. **Tracks.** ByteTrack (Roboflow's ``trackers.ByteTrackTracker``, the maintained
   successor of ``supervision.ByteTrack``, which supervision 0.27+ no longer ships)
   links them over time, one tracker step per sampled frame with the frame rate set
   to SampleRate (so its lost-track buffer is 1 s of video at any SampleRate); a
   track needs a detection >= 0.5 to start. ByteTrack confirms a new track when it is matched again in the next sample:
   a track is reported from its second sampled frame on, and a box on no confirmed
   track is not reported (so a person seen in a single sampled frame is absent).
4. **Faces.** The face pack's detector runs on the frame; a face belongs to the
   person box that holds at least 80% of it (the tightest such box; one face per
   person, best face first). ``Person.Face`` is its FaceDetail with the DEFAULT
   attributes (BoundingBox, Confidence, Landmarks, Pose, Quality). Each face is also
   embedded (the pack's recognizer), for step 5. The face models run once per batch of
   frames (SCRFD on the frames that have person boxes, PFLD and the recognizer on the
   faces that belong to a person), with the same result as frame by frame.
5. **One Index per person** (:meth:`PersonTrackingAnalyzer.finalize`, once per job):
   tracks are taken in order of first appearance; a track joins an earlier person
   it never shares a frame with when their mean face embeddings have cosine >= 0.40
   (face Similarity 80; same person 0.58-0.78, different people <= 0.08 on the
   shared stills), so a person seen again after a cut keeps their Index; or, with
   no face to tell, when it starts in the same shot within 1 s of the person's last
   box and overlaps it (IoU >= 0.3): ByteTrack lost them and started a new track.
   ``Index`` is 0, 1, 2, ... by first appearance.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..models import require
from ..results.persons import PERSONS_SCHEMA
from ..results.schema import DEFAULT_FACE_KEYS
from ..video import DEFAULT_SAMPLE_RATE, FrameBatch

__all__ = ["PersonTrackingAnalyzer", "FrameDifferenceCuts", "default_cuts", "assign_faces",
           "merge_tracks", "PERSON_SCORE_MIN", "TRACK_START_SCORE", "REID_COSINE"]

log = logging.getLogger("rekolab.persons")

PERSON_SCORE_MIN = 0.10     # YOLOX boxes handed to ByteTrack (its second stage uses the low ones)
TRACK_START_SCORE = 0.50    # a detection needs this to start a track
LOST_TRACK_S = 1.0          # a lost track can be picked up again within this time
FACE_INSIDE = 0.80          # share of the face box inside the person box
REID_COSINE = 0.40          # mean face embeddings at or above this: the same person
STITCH_IOU = 0.30           # a new track where a lost one was, within LOST_TRACK_S: the same person
_FACE_KEYS = list(DEFAULT_FACE_KEYS)


class FrameDifferenceCuts:
    """Shot cuts from consecutive sampled frames: the Bhattacharyya distance of their
    16 x 16 hue-saturation histograms above ``threshold`` (0.35) is a cut (as
    :mod:`rekolab.analysis.face_search` decides it)."""

    def __init__(self, threshold: float | None = None):
        from .face_search import SHOT_CUT_DISTANCE

        self.threshold = SHOT_CUT_DISTANCE if threshold is None else float(threshold)
        self._last = None

    def describe(self) -> str:
        return f"HS histogram Bhattacharyya distance > {self.threshold} between consecutive samples"

    def is_cut(self, frame_bgr: np.ndarray, timestamp_ms: int) -> bool:
        import cv2

        from .face_search import _hs_histogram

        hist = _hs_histogram(frame_bgr)
        prev, self._last = self._last, hist
        return prev is not None and cv2.compareHist(prev, hist, cv2.HISTCMP_BHATTACHARYYA) > self.threshold


def default_cuts(params: dict):
    """The cut detector of a job. (The seam for ``rekolab.analysis.shots``.)"""
    return FrameDifferenceCuts()


def assign_faces(person_xyxy: np.ndarray, face_xyxy: np.ndarray, inside: float = FACE_INSIDE) -> np.ndarray:
    """For each person box, the index of its face (-1: none). Faces are taken in the
    given order (best first); a face goes to the smallest free person box holding at
    least ``inside`` of its area."""
    out = np.full(len(person_xyxy), -1, np.int64)
    if len(person_xyxy) == 0 or len(face_xyxy) == 0:
        return out
    p = np.asarray(person_xyxy, np.float64)
    f = np.asarray(face_xyxy, np.float64)
    ix = np.clip(np.minimum(f[:, None, 2], p[None, :, 2]) - np.maximum(f[:, None, 0], p[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(f[:, None, 3], p[None, :, 3]) - np.maximum(f[:, None, 1], p[None, :, 1]), 0, None)
    face_area = np.maximum((f[:, 2] - f[:, 0]) * (f[:, 3] - f[:, 1]), 1e-9)
    share = ix * iy / face_area[:, None]
    person_area = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    for j in range(len(f)):
        free = np.flatnonzero((share[j] >= inside) & (out < 0))
        if len(free):
            out[free[np.argmin(person_area[free])]] = j
    return out


@dataclass
class _TrackInfo:
    first_ms: int
    last_ms: int
    shot: int = 0
    first_box: np.ndarray | None = None
    last_box: np.ndarray | None = None
    frames: set = field(default_factory=set)
    emb_sum: np.ndarray | None = None
    faces: int = 0

    def add(self, ts: int, box: np.ndarray, emb: np.ndarray | None) -> None:
        if self.first_box is None:
            self.first_box = box
        self.last_ms, self.last_box = ts, box
        self.frames.add(ts)
        if emb is not None:
            self.emb_sum = emb.astype(np.float64) if self.emb_sum is None else self.emb_sum + emb
            self.faces += 1

    @property
    def embedding(self) -> np.ndarray | None:
        if self.emb_sum is None:
            return None
        return self.emb_sum / max(float(np.linalg.norm(self.emb_sum)), 1e-12)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    from .tracking import iou_matrix

    return float(iou_matrix(a[None], b[None])[0, 0])


def merge_tracks(tracks: dict[int, _TrackInfo], cosine: float = REID_COSINE,
                 gap_ms: int = int(LOST_TRACK_S * 1000), iou: float = STITCH_IOU) -> dict[int, int]:
    """Track id -> person Index. Tracks are taken in order of first appearance; a track
    joins an earlier person it never shares a frame with when

    * their mean face embeddings have cosine >= ``cosine`` (the closest such person), or
    * it starts in the same shot at most ``gap_ms`` after the person was last seen,
      where the person's last box overlaps its first box (IoU >= ``iou``): ByteTrack
      lost the person for a moment and started a new track;

    else it is a new person. Indices are 0-based and dense, by first appearance."""
    order = sorted(tracks, key=lambda t: (tracks[t].first_ms, t))
    persons: list[dict] = []
    out: dict[int, int] = {}
    for tid in order:
        info = tracks[tid]
        emb = info.embedding
        best, best_cos = -1, cosine
        for k, person in enumerate(persons):
            if person["frames"] & info.frames:
                continue
            if emb is not None and person["emb"] is not None:
                pe = person["emb"] / max(float(np.linalg.norm(person["emb"])), 1e-12)
                c = float(pe @ emb)
                if c >= best_cos:
                    best, best_cos = k, c
        if best < 0:  # no face says who it is: a short gap in the same place
            near = [k for k, person in enumerate(persons)
                    if not person["frames"] & info.frames and person["shot"] == info.shot
                    and 0 < info.first_ms - person["last_ms"] <= gap_ms
                    and _iou(person["last_box"], info.first_box) >= iou]
            if near:
                best = max(near, key=lambda k: _iou(persons[k]["last_box"], info.first_box))
        if best < 0:
            persons.append({"frames": set(), "emb": None, "last_ms": -1, "last_box": None, "shot": info.shot})
            best = len(persons) - 1
        person = persons[best]
        person["frames"] |= info.frames
        if info.emb_sum is not None:
            person["emb"] = info.emb_sum.copy() if person["emb"] is None else person["emb"] + info.emb_sum
        if info.last_ms > person["last_ms"]:
            person.update(last_ms=info.last_ms, last_box=info.last_box, shot=info.shot)
        out[tid] = best
    return out


class PersonTrackingAnalyzer:
    """FrameBatch -> person rows (:data:`~rekolab.results.persons.PERSONS_SCHEMA`)."""

    schema = PERSONS_SCHEMA

    def __init__(self, params: dict, *, cuts=None):
        from .labels import load_detector

        self.detector, self._detector_info = load_detector({}, PERSON_SCORE_MIN * 100)
        if self.detector is None:
            raise RuntimeError(f"person tracking needs the YOLOX detector: {self._detector_info['Reason']}")
        self.person_class = list(self.detector.labels).index("person")
        self._trackers = require("trackers", "persons")
        self.sample_rate = float(params.get("SampleRate") or DEFAULT_SAMPLE_RATE)
        self.cuts = cuts if cuts is not None else default_cuts(params)
        self.pack = None
        self._face_reason = None
        try:
            from ..models.faces import face_pack

            self.pack = face_pack()
            if self.pack.recognizer is None:
                self._face_reason = f"face pack {self.pack.name} has no recognizer: no re-identification"
        except Exception as exc:  # no insightface / no pack: persons without Face
            self._face_reason = f"no face pack: {exc}"
        if self.pack is not None:
            from .face_attributes import describe_faces_batch

            self._describe = describe_faces_batch
        self.tracker = self._new_tracker()
        self.shot = 0
        self._track_of: dict[tuple[int, int], int] = {}
        self._pending: list = []  # last frame's unconfirmed detections (row, box, embedding)
        self.tracks: dict[int, _TrackInfo] = {}

    def _new_tracker(self):
        # Fixed-step mode, one step per sampled frame (samples are evenly spaced): on the
        # shared clips its Kalman steps hold tracks far better than timestamp mode
        # (basketball at 5 fps: 5 tracks instead of 11 for 2 players).
        return self._trackers.ByteTrackTracker(
            lost_track_buffer=int(round(LOST_TRACK_S * 30)), frame_rate=self.sample_rate,
            track_activation_threshold=TRACK_START_SCORE, minimum_consecutive_frames=1,
            high_conf_det_threshold=TRACK_START_SCORE)

    def models(self) -> dict:
        return {
            "Detector": {**self._detector_info, "Class": "person", "ScoreMin": PERSON_SCORE_MIN},
            "Tracker": (f"trackers.ByteTrackTracker (track start >= {TRACK_START_SCORE}, lost-track buffer "
                        f"{LOST_TRACK_S} s, one step per sample at SampleRate)"),
            "ShotCuts": self.cuts.describe() if hasattr(self.cuts, "describe") else type(self.cuts).__name__,
            "Faces": ({"FacePack": self.pack.name, "Attributes": "DEFAULT", "Assignment":
                       f">= {FACE_INSIDE:.0%} of the face inside the person box"}
                      if self.pack is not None else {"Ran": False, "Reason": self._face_reason}),
            "Identity": (f"tracks that never share a frame merge when mean face embeddings have cosine >= "
                         f"{REID_COSINE}" if self.pack is not None and self._face_reason is None
                         else f"tracks only ({self._face_reason})"),
        }

    # -- per batch of frames -------------------------------------------------------------
    def _faces(self, frames_bgr, persons_per_frame):
        """Per frame, per person box: ``(FaceDetail or None, embedding or None)``. The
        face models run once per batch of frames (SCRFD on the frames with person boxes,
        the attribute models and the recognizer on the faces that have a person)."""
        out = [([None] * len(p), [None] * len(p)) for p in persons_per_frame]
        need = [k for k, p in enumerate(persons_per_frame) if len(p)] if self.pack is not None else []
        if not need:
            return out
        found = self.pack.detect_batch([frames_bgr[k] for k in need])
        owners, used = [], []
        for k, (boxes, _, _) in zip(need, found):
            owners.append(assign_faces(persons_per_frame[k], boxes))
            used.append([int(j) for j in owners[-1] if j >= 0])
        live = [i for i, u in enumerate(used) if u]
        if not live:
            return out
        frames = [frames_bgr[need[i]] for i in live]
        sel = [(found[i][0][used[i]], found[i][1][used[i]], found[i][2][used[i]]) for i in live]
        details = self._describe(frames, [b for b, _, _ in sel], [kp for _, _, kp in sel], [sc for _, sc, _ in sel],
                                 self.pack.attributes, "DEFAULT")
        embs = (self.pack.embed_batch(frames, [kp for _, _, kp in sel]) if self._face_reason is None
                else [[None] * len(used[i]) for i in live])
        for i, frame_details, frame_embs in zip(live, details, embs):
            by_face = {j: (d, e) for j, d, e in zip(used[i], frame_details, frame_embs)}
            faces, emb = out[need[i]]
            for p, j in enumerate(owners[i]):
                if j >= 0:
                    detail, e = by_face[int(j)]
                    faces[p] = {key: detail.get(key) for key in _FACE_KEYS}
                    emb[p] = e
        return out

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        import supervision as sv

        bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in batch.frames]
        dets = self.detector.detect_batch(bgr)
        steps = []  # per frame: (cut, shot, tracked boxes, track ids, confidences)
        for frame, det, ts in zip(bgr, dets, batch.timestamps_ms):
            cut = self.cuts.is_cut(frame, int(ts))
            if cut:
                self.tracker.reset()
                self.shot += 1
            keep = det.class_ids == self.person_class
            people = sv.Detections(xyxy=det.boxes_xyxy[keep].astype(np.float32).reshape(-1, 4),
                                   confidence=det.scores[keep].astype(np.float32),
                                   class_id=det.class_ids[keep].astype(int))
            tracked = self.tracker.update(people)
            ids = (tracked.tracker_id if tracked.tracker_id is not None
                   else np.full(len(tracked), -1)).astype(np.int64)
            conf = (tracked.confidence if tracked.confidence is not None
                    else np.ones(len(tracked), np.float32)).astype(np.float64)
            # tracked boxes, and the unconfirmed ones that may seed a track next frame
            wanted = (ids >= 0) | (conf >= TRACK_START_SCORE)
            steps.append((cut, self.shot, tracked.xyxy[wanted], ids[wanted], conf[wanted]))
        faces_per_frame = self._faces(bgr, [s[2] for s in steps])
        rows = []
        for frame, ts, index, (cut, shot, xyxy, ids, conf), (faces, embs) in zip(
                bgr, batch.timestamps_ms, batch.indices, steps, faces_per_frame):
            ts = int(ts)
            if cut:
                self._pending = []
            h, w = frame.shape[:2]
            pending, self._pending = self._pending, []
            for box, tid, c, face, emb in zip(xyxy, ids, conf, faces, embs):
                x1, y1, x2, y2 = (float(v) for v in box)
                ratio = np.array([x1 / w, y1 / h, x2 / w, y2 / h])
                row = {"Timestamp": ts, "FrameNumber": int(index),
                       "BoundingBox": {"Width": (x2 - x1) / w, "Height": (y2 - y1) / h, "Left": x1 / w, "Top": y1 / h},
                       "Face": face, "Confidence": c * 100.0, "Shot": shot}
                emb = None if emb is None else np.asarray(emb, np.float64)
                if tid < 0:
                    self._pending.append((row, ratio, emb))
                    continue
                key = (shot, int(tid))
                track = self._track_of.get(key)
                if track is None:
                    track = self._track_of[key] = len(self._track_of)
                    info = self.tracks[track] = _TrackInfo(ts, ts, shot)
                    seed = self._seed(pending, ratio)
                    if seed is not None:  # ByteTrack held this box back last frame, unconfirmed
                        seed_row, seed_box, seed_emb = seed
                        info.first_ms = seed_row["Timestamp"]
                        info.add(seed_row["Timestamp"], seed_box, seed_emb)
                        rows.append({**seed_row, "Index": track, "Track": track})
                info = self.tracks[track]
                info.add(ts, ratio, emb)
                rows.append({**row, "Index": track, "Track": track})
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)

    @staticmethod
    def _seed(pending: list, box: np.ndarray):
        """The previous frame's unconfirmed detection a new track grew from: the best
        overlap (IoU >= 0.3) among those not taken yet (taken ones are removed)."""
        best, best_iou = None, STITCH_IOU
        for k, (_, seed_box, _) in enumerate(pending):
            v = _iou(seed_box, box)
            if v >= best_iou:
                best, best_iou = k, v
        return None if best is None else pending.pop(best)

    # -- whole job -----------------------------------------------------------------------
    def finalize(self, table: pa.Table) -> pa.Table:
        """Person Index from tracks (see the module docstring), rows in TIMESTAMP order."""
        mapping = merge_tracks(self.tracks)
        track = table.column("Track").to_numpy()
        lut = np.zeros(max(mapping, default=-1) + 1, np.int64)
        for t, person in mapping.items():
            lut[t] = person
        index = pa.array(lut[track] if len(track) else np.zeros(0, np.int64), pa.int64())
        out = table.set_column(table.schema.get_field_index("Index"), "Index", index)
        return out.take(pc.sort_indices(out, [("Timestamp", "ascending"), ("Index", "ascending")]))

