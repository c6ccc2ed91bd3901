"""Shot boundaries on every frame, with PySceneDetect's ContentDetector.

A reusable building block, independent of the job machinery: segment detection
uses it for ``SHOT`` segments, and anything that must not carry a track across a
cut (face tracks in notebooks, person tracking) can call it on a video file::

    from rekolab.analysis.shots import detect_shots
    for shot in detect_shots("clip.mp4"):
        print(shot.index, shot.start_frame, shot.end_frame, shot.start_ms, shot.end_ms, shot.confidence)

or feed frames it already decodes, one by one, in order::

    detector = ShotDetector(fps=29.97)
    for frame_number, pts_ms, rgb in frames:
        detector.update(frame_number, pts_ms, rgb)
    shots = detector.finish(end_ms=duration_ms)

(``detector.update_batch(frame_numbers, pts_ms, frames)`` takes a ``(B, H, W, 3)``
batch at once: the same scores and cuts, computed for the whole batch).

**Method.** PySceneDetect's :class:`scenedetect.detectors.AdaptiveDetector` on
**every** frame: ContentDetector's score (``content_val``, the mean change of hue,
saturation and luma between consecutive frames, on the frame downscaled to at most
:data:`ANALYSIS_WIDTH` pixels wide) divided by the mean score of the
:data:`WINDOW_WIDTH` (2) frames on each side (``adaptive_ratio``). A cut is where
the ratio reaches ``adaptive_threshold`` (3.5; PySceneDetect's default 3 cut the
Hamilton clip inside a shot, at a ratio of 3.06, where a hand moves) and the score
reaches ``min_content_val`` (15), at most one per ``min_scene_len`` frames (default
8: about 0.3 s at 25-30 fps, so a short black or bars insert between two clips is a
shot of its own). The ratio keeps whip pans and motion blur of hand-held video
from reading as cuts, which a fixed threshold does not (ContentDetector at 27 cut
the one-shot arm-wrestling clip six times). The cut frame is the first frame of
the new shot. A cut in the last two frames of a video is not seen (the window
needs two frames after it).

**A shot** covers frames ``start_frame .. end_frame - 1``: ``end_frame`` is the
first frame after it (the next shot's ``start_frame``; the frame count for the
last shot), so ``end_frame - start_frame`` is its length in frames. ``start_ms``
is the PTS of its first frame, ``end_ms`` the PTS of ``end_frame`` (the video's
duration for the last shot): exact presentation times, never ``index / fps``.

**Confidence** (50-100) of a cut with adaptive ratio ``r`` is
``min(100, 50 + 50 * (r - adaptive_threshold) / adaptive_threshold)``: 50 at the
threshold, 100 at twice the threshold or more. The start and end of the video count 100. A shot's
confidence is the lower of its two boundaries' confidences.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models import require

__all__ = ["Shot", "ShotDetector", "detect_shots", "downscale", "content_deltas", "DEFAULT_ADAPTIVE_THRESHOLD",
           "DEFAULT_MIN_SCENE_LEN", "ANALYSIS_WIDTH", "MODEL_VERSION"]

DEFAULT_ADAPTIVE_THRESHOLD = 3.5
DEFAULT_MIN_CONTENT_VAL = 15.0
DEFAULT_MIN_SCENE_LEN = 8
WINDOW_WIDTH = 2
ANALYSIS_WIDTH = 320
#: Frames are decoded at most this wide (as segment detection decodes them).
DECODE_WIDTH = 640


def _model_version() -> str:
    try:
        from importlib.metadata import version

        return f"PySceneDetect-{version('scenedetect')}/AdaptiveDetector"
    except Exception:  # pragma: no cover - scenedetect is a declared dependency
        return "PySceneDetect/AdaptiveDetector"


MODEL_VERSION = _model_version()


@dataclass(frozen=True)
class Shot:
    """One shot: frames ``start_frame .. end_frame - 1`` (see the module docstring)."""

    index: int
    start_frame: int
    end_frame: int
    start_ms: int
    end_ms: int
    confidence: float

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


def cut_confidence(ratio: float, threshold: float = DEFAULT_ADAPTIVE_THRESHOLD) -> float:
    """A cut's confidence (50-100) from its adaptive ratio."""
    return float(min(100.0, max(50.0, 50.0 + 50.0 * (ratio - threshold) / threshold)))


def downscale(frames: np.ndarray, width: int) -> np.ndarray:
    """A batch of RGB frames ``(B, H, W, 3)`` scaled by area averaging (OpenCV's
    ``INTER_AREA``) to at most ``width`` pixels wide, aspect kept (height rounded,
    at least 2); frames no wider are returned as they are. An exact halving (the
    usual case: 640 -> 320 -> 160) is one ``cv2.resize`` of the batch stacked into
    one tall image: area averaging of 2 x 2 blocks never mixes two frames, so each
    frame gets the very pixels a resize of it alone gives."""
    cv2 = require("cv2", "video")
    b, h0, w0 = frames.shape[:3]
    if w0 <= width:
        return frames
    h = max(2, int(round(h0 * width / w0)))
    if w0 == 2 * width and h0 == 2 * h:
        tall = np.ascontiguousarray(frames).reshape(b * h0, w0, 3)
        return cv2.resize(tall, (width, b * h), interpolation=cv2.INTER_AREA).reshape(b, h, width, 3)
    return np.stack([cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA) for f in frames])


def content_deltas(hsv: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """``(B', 3)`` mean absolute hue, saturation and value change of each frame of
    ``hsv`` (``(B, H, W, 3)`` uint8, OpenCV's 8-bit HSV) from the frame before it
    (``previous`` for the first; without it the first frame has no row): PySceneDetect
    ContentDetector's ``delta_hue``, ``delta_sat``, ``delta_lum``, the same numbers
    (exact integer sums over the frame, divided by its pixel count), for a whole batch."""
    cv2 = require("cv2", "video")
    stack = hsv if previous is None else np.concatenate([previous[None], hsv])
    if len(stack) < 2:
        return np.zeros((0, 3), np.float64)
    b, h, w = len(stack) - 1, stack.shape[1], stack.shape[2]
    diff = cv2.absdiff(stack[1:].reshape(b * h, w, 3), stack[:-1].reshape(b * h, w, 3)).reshape(b, h, w, 3)
    # cv2.sumElems: per-channel sums, exact integers (as floats) at any frame size here.
    sums = np.array([cv2.sumElems(d)[:3] for d in diff], np.float64)
    return sums / float(h * w)


def _scored_detector_class():
    """AdaptiveDetector whose per-frame score is handed in (computed for a whole
    batch by :func:`content_deltas`) instead of computed from the frame by
    ContentDetector: the library keeps every decision (the adaptive ratio, the
    minimum content value, ``min_scene_len``), only the measure is batched."""
    from scenedetect.detectors import AdaptiveDetector

    class _Scored(AdaptiveDetector):
        next_score: float = 0.0

        def _calculate_frame_score(self, timecode, frame_img) -> float:
            return self.next_score

    return _Scored


class ShotDetector:
    """Incremental shot detection: call :meth:`update` on every frame in order (or
    :meth:`update_batch` on batches of them), then :meth:`finish`. Frames are RGB
    uint8 (H, W, 3) of any size."""

    def __init__(self, fps: float = 30.0, adaptive_threshold: float = DEFAULT_ADAPTIVE_THRESHOLD,
                 min_scene_len: int = DEFAULT_MIN_SCENE_LEN, min_content_val: float = DEFAULT_MIN_CONTENT_VAL):
        require("scenedetect", "segments")

        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.adaptive_threshold = float(adaptive_threshold)
        self._detector = _scored_detector_class()(adaptive_threshold=self.adaptive_threshold,
                                                  min_scene_len=int(min_scene_len), window_width=WINDOW_WIDTH,
                                                  min_content_val=float(min_content_val))
        weights = self._detector._weights  # ContentDetector's (hue, sat, lum, edges) weights
        if weights.delta_edges:  # pragma: no cover - the default weights have no edge term
            raise ValueError("edge weights are not supported by the batched score")
        self._weights = tuple(weights)
        self._hsv_last: np.ndarray | None = None
        self._cuts: list[tuple[int, int, float]] = []  # (frame number, PTS ms, confidence)
        self._frame_ms: dict[int, int] = {}
        self._scores: dict[int, float] = {}
        self._first: int | None = None
        self._last: int | None = None

    def update(self, frame_number: int, pts_ms: int, frame_rgb: np.ndarray) -> list[int]:
        """Feed the next frame; returns the cuts found by it (a cut is known
        :data:`WINDOW_WIDTH` frames after it happens)."""
        return self.update_batch([frame_number], [pts_ms], frame_rgb[None])

    def update_batch(self, frame_numbers, pts_ms, frames_rgb: np.ndarray) -> list[int]:
        """Feed the next frames (``(B, H, W, 3)`` RGB, in order); returns the cuts
        found by them. The same cuts and scores as :meth:`update` frame by frame."""
        cv2 = require("cv2", "video")
        from scenedetect import FrameTimecode

        if not len(frames_rgb):
            return []
        small = downscale(frames_rgb, ANALYSIS_WIDTH)
        b, h, w = small.shape[:3]
        # ContentDetector converts its BGR frame to HSV; RGB -> HSV directly is the
        # same conversion. Per pixel, so the batch converts as one tall image.
        hsv = cv2.cvtColor(np.ascontiguousarray(small).reshape(b * h, w, 3), cv2.COLOR_RGB2HSV).reshape(b, h, w, 3)
        deltas = content_deltas(hsv, self._hsv_last).tolist()
        if self._hsv_last is None:
            deltas.insert(0, None)  # the first frame scores 0, as ContentDetector's
        self._hsv_last = hsv[-1].copy()
        total_weight = sum(abs(x) for x in self._weights)
        found = []
        for frame_number, ms, delta in zip(frame_numbers, pts_ms, deltas):
            found += self._step(int(frame_number), int(ms), delta, total_weight, FrameTimecode)
        return found

    def _step(self, frame_number: int, pts_ms: int, delta, total_weight: float, timecode) -> list[int]:
        if self._first is None:
            self._first = frame_number
        self._last = frame_number
        self._frame_ms[frame_number] = pts_ms
        # ContentDetector's frame_score: the weighted mean of the components.
        score = 0.0 if delta is None else sum(
            c * wt for c, wt in zip((*delta, 0.0), self._weights)) / total_weight
        self._detector.next_score = score
        cuts = self._detector.process_frame(timecode(frame_number, self.fps), None)
        self._scores[frame_number] = float(score)
        found = []
        for tc in cuts:
            n = int(tc.frame_num)
            if n <= self._first:
                continue
            self._cuts.append((n, self._frame_ms[n], cut_confidence(self._ratio(n), self.adaptive_threshold)))
            found.append(n)
        # Only the first frame's and the cut frames' times are needed afterwards.
        horizon = frame_number - 4 * WINDOW_WIDTH - 2
        for old in [k for k in self._frame_ms if k < horizon and k != self._first]:
            del self._frame_ms[old]
        for old in [k for k in self._scores if k < horizon]:
            del self._scores[old]
        return found

    def _ratio(self, n: int) -> float:
        """AdaptiveDetector's adaptive_ratio of frame ``n`` (its score over the mean
        score of the WINDOW_WIDTH frames on each side), recomputed from the scores."""
        around = [self._scores.get(n + d) for d in range(-WINDOW_WIDTH, WINDOW_WIDTH + 1) if d]
        around = [a for a in around if a is not None]
        mean = sum(around) / len(around) if around else 0.0
        return 255.0 if mean < 1e-5 else min(self._scores.get(n, 0.0) / mean, 255.0)

    @property
    def cuts(self) -> list[int]:
        """Frame numbers where a new shot starts (the first frame excluded)."""
        return [n for n, _, _ in self._cuts]

    def finish(self, end_ms: int | None = None) -> list[Shot]:
        """The shots. ``end_ms``: the end of the last shot (default: the last
        frame's PTS plus one frame at ``fps``)."""
        if self._first is None:
            return []
        if end_ms is None:
            end_ms = self._frame_ms[self._last] + int(1000 / self.fps)
        bounds = [(self._first, self._frame_ms[self._first], 100.0)] + self._cuts
        bounds.append((self._last + 1, int(end_ms), 100.0))
        return [Shot(index=i, start_frame=s, end_frame=e, start_ms=s_ms, end_ms=e_ms,
                     confidence=min(s_conf, e_conf))
                for i, ((s, s_ms, s_conf), (e, e_ms, e_conf)) in enumerate(zip(bounds, bounds[1:]))]


def detect_shots(path: str | Path, *, adaptive_threshold: float = DEFAULT_ADAPTIVE_THRESHOLD,
                 min_scene_len: int = DEFAULT_MIN_SCENE_LEN) -> list[Shot]:
    """Every shot of the video at ``path`` (decodes every frame once, sequentially,
    at most :data:`DECODE_WIDTH` pixels wide). See the module docstring."""
    from ..video import probe
    from ..video.every_frame import every_frame_plan

    meta = probe(path)
    detector = ShotDetector(meta.frame_rate, adaptive_threshold, min_scene_len)
    # The same frames segment detection decodes (then scaled by the detector), so
    # both give the same shots.
    plan = every_frame_plan(path, max_width=DECODE_WIDTH)
    for batch in plan.batches(16):
        detector.update_batch(batch.indices.tolist(), batch.timestamps_ms.tolist(), batch.frames)
    return detector.finish(end_ms=meta.duration_ms)
