"""StartCelebrityRecognition and RecognizeCelebrities against a rekolab gallery.

Per sampled frame (5 per second of video by default): the face pack's detector
(SCRFD) finds faces and five keypoints; its recognizer embeds each face
(L2-normalised, any dimension); :func:`describe_faces` gives the DEFAULT
FaceDetail (BoundingBox, Confidence, Landmarks, Pose, Quality).

**Appearances (stable identities over time).** Faces are linked across sampled
frames by :class:`rekolab.analysis.tracking.FaceTracker` (box overlap, or a
similar embedding nearby, within 1 s). FaceTracker links by box overlap alone,
which at a shot cut can join two different people standing in the same place;
so a face continues its appearance only when its embedding has cosine >=
``SPLIT_COSINE`` (0.30) with the previous face of that track, otherwise it starts
a new appearance. (Measured on the Hamilton clip: consecutive faces of one person
0.54-0.99; the two shot cuts where FaceTracker joined different people: -0.04 and
0.09.) ``TrackIndex`` numbers the appearances.

**One identity per appearance.** Once the whole video is read (``finalize``), each
appearance is scored against every person in the gallery: a face's cosine with a
person is the best cosine with that person's reference faces, and the
appearance's score is the mean of the best half (``ceil(n/2)``) of its faces'
cosines, so profile or blurred frames do not drag a clear appearance down and a
single lucky frame cannot name a long one. The appearance takes the best-scoring
person; ``Confidence = similarity(score)`` (:func:`rekolab.models.faces.similarity`,
cosine 0.33 -> 50, 0.40 -> 80). It is named only if ``Confidence >=
MinConfidence`` (default 50) and no appearance with a higher score already has that
person at one of its timestamps (one face per person per frame); otherwise it
tries its next person, and is dropped when none qualifies. Every row of a named
appearance carries the same Id, Name and Confidence, so the name cannot flicker;
``FrameConfidence`` keeps each frame's own similarity. Unrecognized faces do not
appear, as in GetCelebrityRecognition.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa

from ..celebrity_store import DEFAULT_MIN_CONFIDENCE, MAX_FACES_PER_IMAGE, GalleryMatcher, GalleryStore
from ..models.backend import frame_batch_size
from ..models.faces import face_pack, similarity
from ..results.celebrities import CELEBRITIES_SCHEMA, sort_celebrities
from ..results.schema import BOUNDING_BOX, DEFAULT_FACE_KEYS, FACE_DETAIL_TYPE
from ..video import FrameBatch
from .face_attributes import BASIC_LANDMARKS, bgr_frames, describe_faces, describe_faces_batch
from .tracking import FaceTracker

__all__ = ["CelebrityRecognitionAnalyzer", "recognize_image", "decide_appearances", "SPLIT_COSINE"]

#: A face continues its track's appearance only above this cosine with the
#: track's previous face (see the module docstring for the measurements).
SPLIT_COSINE = 0.30

#: What the analyzer streams while reading the video; ``finalize`` turns it into
#: CELEBRITIES_SCHEMA (one identity per appearance, unrecognized faces dropped).
RAW_SCHEMA = pa.schema([
    ("Timestamp", pa.int64()),
    ("FrameNumber", pa.int64()),
    ("TrackIndex", pa.int64()),
    ("BoundingBox", BOUNDING_BOX),
    ("Face", FACE_DETAIL_TYPE),
    ("Embedding", pa.list_(pa.float32())),
])

_COMPARED_FACE_KEYS = DEFAULT_FACE_KEYS + ("Emotions", "Smile")  # ComparedFace members rekolab fills


class CelebrityRecognitionAnalyzer:
    """FrameBatch -> faces with appearance ids and embeddings; ``finalize`` names them."""

    schema = RAW_SCHEMA

    def __init__(self, params: dict):
        self.pack = face_pack()
        self.gallery = GalleryStore(params.get("CelebrityGallery"))
        self.matcher: GalleryMatcher = self.gallery.matcher(self.pack)  # snapshot for this job
        self.min_confidence = float(params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE))
        self.tracker = FaceTracker()
        self.batch_size = frame_batch_size()
        self._previous: dict[int, tuple[np.ndarray, int]] = {}  # track id -> (last embedding, appearance)
        self._appearances = 0

    def models(self) -> dict:
        """What ran, stored with the job."""
        m = self.matcher
        return {
            "FacePack": self.pack.name,
            "Detector": type(self.pack.detector).__name__,
            "FaceModel": m.face_model,
            "Attributes": self.pack.attributes.methods("DEFAULT"),
            "Gallery": {"Path": m.path, "People": len(m.people), "ReferenceFaces": int(len(m.embeddings)),
                        "Sha256": m.sha256},
            "MinConfidence": self.min_confidence,
            "Identity": (f"FaceTracker tracks split where consecutive faces have cosine < {SPLIT_COSINE}; "
                         "per appearance, mean of the best half of per-frame cosines (best reference "
                         "face per person); Confidence = similarity(score); one person per frame"),
        }

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        frames = bgr_frames(batch.frames)  # the decoder gives RGB; models want BGR
        found = self.pack.detect_batch(frames)  # one detector call, one recognizer call per batch
        kps = [f[2] for f in found]
        embeddings = self.pack.embed_batch(frames, kps)
        details = describe_faces_batch(frames, [f[0] for f in found], kps, [f[1] for f in found],
                                       self.pack.attributes, "DEFAULT")
        rows: list[dict] = []
        for k, (frame, ts, index) in enumerate(zip(frames, batch.timestamps_ms, batch.indices)):
            boxes, emb = found[k][0], embeddings[k]
            if len(boxes) == 0:
                continue
            h, w = frame.shape[:2]
            ids = self.tracker.update(int(ts), boxes / np.array([w, h, w, h], np.float32), emb)
            for j, (tid, detail) in enumerate(zip(ids, details[k])):
                rows.append({
                    "Timestamp": int(ts), "FrameNumber": int(index), "TrackIndex": self._appearance(tid, emb[j]),
                    "BoundingBox": detail["BoundingBox"], "Face": detail,
                    "Embedding": emb[j].astype(np.float32).tolist(),
                })
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)

    def _appearance(self, track_id: int, embedding: np.ndarray) -> int:
        prev = self._previous.get(track_id)
        if prev is None or float(prev[0] @ embedding) < SPLIT_COSINE:
            appearance = self._appearances
            self._appearances += 1
        else:
            appearance = prev[1]
        self._previous[track_id] = (embedding, appearance)
        return appearance

    def finalize(self, table: pa.Table) -> pa.Table:
        """Name each appearance once (see the module docstring); drop the rest."""
        if table.num_rows == 0:
            return CELEBRITIES_SCHEMA.empty_table()
        n = table.num_rows
        emb = table.column("Embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        emb = emb.astype(np.float32).reshape(n, -1)
        appearance = table.column("TrackIndex").to_numpy()
        timestamps = table.column("Timestamp").to_numpy()
        decisions, frame_cos = decide_appearances(self.matcher, emb, appearance, timestamps, self.min_confidence)
        keep = np.array([i for i in range(n) if appearance[i] in decisions], dtype=np.int64)
        if len(keep) == 0:
            return CELEBRITIES_SCHEMA.empty_table()
        people = self.matcher.people
        person = [decisions[appearance[i]][0] for i in keep]
        kept = table.take(pa.array(keep))
        columns = {
            "Timestamp": kept.column("Timestamp"),
            "Id": pa.array([people[p]["Id"] for p in person], pa.string()),
            "Name": pa.array([people[p]["Name"] for p in person], pa.string()),
            "Confidence": pa.array([decisions[appearance[i]][1] for i in keep], pa.float64()),
            "BoundingBox": kept.column("BoundingBox"),
            "Urls": pa.array([people[p]["Urls"] for p in person], pa.list_(pa.string())),
            "KnownGender": pa.array([people[p]["KnownGender"] for p in person], pa.string()),
            "Face": kept.column("Face"),
            "TrackIndex": kept.column("TrackIndex"),
            "FrameNumber": kept.column("FrameNumber"),
            "FrameConfidence": pa.array([float(similarity(frame_cos[i])) for i in keep], pa.float64()),
        }
        out = pa.table([columns[name] for name in CELEBRITIES_SCHEMA.names], schema=CELEBRITIES_SCHEMA)
        return sort_celebrities(out, "TIMESTAMP")


def decide_appearances(matcher: GalleryMatcher, embeddings: np.ndarray, appearance: np.ndarray,
                       timestamps: np.ndarray, min_confidence: float
                       ) -> tuple[dict[int, tuple[int, float]], np.ndarray]:
    """``({appearance: (person index, Confidence)}, per-row cosine with the named person)``.

    Appearances are decided best score first; each takes its best person whose
    Confidence >= ``min_confidence`` and who is not already named at one of its
    timestamps."""
    candidates = []  # (score, appearance, person)
    rows_of: dict[int, np.ndarray] = {}
    cos_of: dict[int, np.ndarray] = {}
    for a in np.unique(appearance):
        idx = np.flatnonzero(appearance == a)
        cos = matcher.cosines(embeddings[idx])  # (n, P)
        k = math.ceil(len(idx) / 2)
        score = -np.sort(-cos, axis=0)[:k].mean(axis=0)  # mean of the best half, per person
        rows_of[int(a)], cos_of[int(a)] = idx, cos
        for p in np.argsort(-score):
            if similarity(score[p]) < min_confidence:
                break
            candidates.append((float(score[p]), int(a), int(p)))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    decisions: dict[int, tuple[int, float]] = {}
    taken: dict[int, set] = {}  # person -> timestamps already named
    for score, a, p in candidates:
        if a in decisions:
            continue
        times = set(timestamps[rows_of[a]].tolist())
        if times & taken.get(p, set()):
            continue  # that person is already someone else in one of these frames
        decisions[a] = (p, float(similarity(score)))
        taken.setdefault(p, set()).update(times)
    frame_cos = np.zeros(len(embeddings), np.float32)
    for a, (p, _) in decisions.items():
        frame_cos[rows_of[a]] = cos_of[a][:, p]
    return decisions, frame_cos


def recognize_image(img_bgr: np.ndarray, pack, matcher: GalleryMatcher, min_confidence: float) -> dict:
    """RecognizeCelebrities for one decoded image: the 64 largest faces, each named
    after its best person if ``MatchConfidence`` >= ``min_confidence`` (a person
    names at most one face: the best match), the others unrecognized."""
    boxes, scores, kps = pack.detect(img_bgr)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-area, kind="stable")[:MAX_FACES_PER_IMAGE]
    boxes, scores, kps = boxes[order], scores[order], kps[order]
    if len(boxes) == 0:
        return {"CelebrityFaces": [], "UnrecognizedFaces": []}
    emb = pack.embed(img_bgr, kps)
    cos = matcher.cosines(emb)  # (N, P)
    # ComparedFace has Emotions and Smile (ALL) but no AgeRange or Gender: skip genderage.
    attributes = dataclasses.replace(pack.attributes, genderage=None)
    details = describe_faces(img_bgr, boxes, kps, scores, attributes, "ALL")
    pairs = sorted(((float(cos[i, p]), i, p) for i in range(len(boxes)) for p in range(cos.shape[1])
                    if similarity(cos[i, p]) >= min_confidence), key=lambda c: (-c[0], c[1], c[2]))
    named: dict[int, tuple[int, float]] = {}
    used = set()
    for c, i, p in pairs:
        if i in named or p in used:
            continue
        named[i] = (p, c)
        used.add(p)
    celebrities, unrecognized = [], []
    for i, detail in enumerate(details):
        face = _compared_face(detail)
        if i in named:
            p, c = named[i]
            person = matcher.people[p]
            item = {"Urls": list(person["Urls"]), "Name": person["Name"], "Id": person["Id"], "Face": face,
                    "MatchConfidence": float(similarity(c))}
            if person["KnownGender"]:
                item["KnownGender"] = {"Type": person["KnownGender"]}
            celebrities.append(item)
        else:
            unrecognized.append(face)
    return {"CelebrityFaces": celebrities, "UnrecognizedFaces": unrecognized}


def _compared_face(detail: dict) -> dict:
    """A FaceDetail as a ``ComparedFace``: its members only, with the five basic
    landmarks (as Rekognition's RecognizeCelebrities returns them)."""
    face = {k: detail[k] for k in _COMPARED_FACE_KEYS if k in detail}
    if "Landmarks" in face:
        by_type = {lm["Type"]: lm for lm in face["Landmarks"]}
        face["Landmarks"] = [by_type[t] for t in BASIC_LANDMARKS if t in by_type]
    return face
