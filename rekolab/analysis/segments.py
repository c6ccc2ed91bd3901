"""StartSegmentDetection: SHOT and TECHNICAL_CUE segments from EVERY frame.

The job decodes every frame once, in order (:mod:`rekolab.video.every_frame`, at
most 640 pixels wide), instead of the 5 fps sample; each batch updates per-frame
measurements, and :meth:`SegmentDetectionAnalyzer.finalize` turns them into
segments once the whole video has been seen. Frame numbers and times are exact
(frame PTS); see :mod:`rekolab.results.segments` for the Start/End conventions and
SMPTE timecodes.

**SHOT**: :mod:`rekolab.analysis.shots` (PySceneDetect's AdaptiveDetector).
``Filters.ShotFilter.MinSegmentConfidence`` (50-100, default 50) drops shots under
it (the others keep their Index).

**TECHNICAL_CUE** (``Filters.TechnicalCueFilter.MinSegmentConfidence`` drops cues
under it):

* ``BlackFrames`` -- Rekognition's rule: a pixel is black when its luma is at most
  ``min_luminance + MaxPixelThreshold * luminance_range`` (default 0.2), and a
  frame is black when at least ``MinCoveragePercentage`` (default 99) of its
  pixels are. Luma is BT.709 of the decoded RGB; FFmpeg expands limited-range
  video (16-235) to full-range RGB, so in both ranges the rule reads
  ``luma_full <= MaxPixelThreshold * 255`` on the decoded frame (16 + 0.2 x 219 =
  59.8 in limited range is 0.2 x 255 = 51 in full range). Pixels are measured on
  the frame scaled to 160 pixels wide (area averaging). A run of black frames is
  one segment; Confidence = the run's mean black-pixel percentage (at least 50).
* ``ColorBars`` -- SMPTE (seven 75 %/100 % bars over the top two thirds) or EBU
  (eight full-height bars): the top 60 % of the frame is area-averaged to 7 (and
  8) columns of 8 x 12 pixels; a column matches when its middle is uniform and its
  colour, scaled by the brightest column, is within 0.25 (per channel, 0-1) of the
  bar it should be. Score = the share of matching columns of the better pattern; a frame
  with score >= 0.85 is a bars frame; Confidence = 100 x the run's mean score.
* ``OpeningCredits`` / ``EndCredits`` -- sustained text over a plain background:
  two frames a second (those whose background is plain: at least 80 % of the
  frame within one 16-level gray bin, and not black frames) go through the OCR
  detector (:mod:`rekolab.models.ocr`); a frame with a line read at >= 80 % is a
  credits frame. A run of credits samples lasting at least 1.5 s is extended
  frame by frame over the plain, non-black frames around it; it is
  ``OpeningCredits`` when it starts in the first half of the video, else
  ``EndCredits``. Confidence = 100 x the mean OCR line score of its samples.
* ``Content`` -- each maximal run of frames that is in none of the cues above;
  Confidence = 100 - the run's mean black-pixel percentage, at least 50.
* ``Slate`` and ``StudioLogo`` are **not produced**: no model here tells a slate
  or a studio logo from other frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import InvalidParameterException
from ..models import require
from ..requests import check_range
from ..results.segments import SEGMENTS_SCHEMA, segment_row
from ..video import FrameBatch, VideoDecodeError
from . import shots as shots_mod
from .shots import DECODE_WIDTH

__all__ = ["SegmentDetectionAnalyzer", "SegmentFilters", "parse_filters", "check_start", "black_coverage",
           "bars_score", "bars_scores", "plain_share", "audio_metadata", "CUES_VERSION", "MEASURE_WIDTH"]

DEFAULT_MIN_SEGMENT_CONFIDENCE = 50.0
DEFAULT_MAX_PIXEL_THRESHOLD = 0.2
DEFAULT_MIN_COVERAGE = 99.0
MEASURE_WIDTH = 160
BARS_MIN_SCORE = 0.85
PLAIN_MIN_SHARE = 0.8
CREDITS_RATE = 2.0  # OCR samples per second on plain frames
CREDITS_MIN_MS = 1500
CREDITS_MIN_LINE = 0.8
CUES_VERSION = "rekolab-cues/1 (black frames, colour bars, PP-OCRv4 credits)"
_BARS = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 1]], np.float32)
_EBU = np.vstack([_BARS, [[0, 0, 0]]])


@dataclass(frozen=True)
class SegmentFilters:
    types: tuple[str, ...]
    shot_min_confidence: float = DEFAULT_MIN_SEGMENT_CONFIDENCE
    cue_min_confidence: float = DEFAULT_MIN_SEGMENT_CONFIDENCE
    max_pixel_threshold: float = DEFAULT_MAX_PIXEL_THRESHOLD
    min_coverage: float = DEFAULT_MIN_COVERAGE


def parse_filters(params: dict, operation: str = "StartSegmentDetection") -> SegmentFilters:
    """SegmentTypes and Filters of a StartSegmentDetection request (Rekognition's
    defaults; a bad value -> InvalidParameterException naming the field)."""
    types = params.get("SegmentTypes") or []
    if not types:
        raise InvalidParameterException("SegmentTypes must name at least one of TECHNICAL_CUE, SHOT", operation)
    for i, t in enumerate(types):
        if t not in ("TECHNICAL_CUE", "SHOT"):
            raise InvalidParameterException(f"SegmentTypes[{i}] is {t!r}; it must be TECHNICAL_CUE or SHOT", operation)
    if len(set(types)) != len(types):
        raise InvalidParameterException(f"SegmentTypes {types} names a type twice", operation)
    filters = params.get("Filters") or {}
    shot = filters.get("ShotFilter") or {}
    cue = filters.get("TechnicalCueFilter") or {}
    black = cue.get("BlackFrame") or {}
    kw = {"types": tuple(types)}
    if "MinSegmentConfidence" in shot:
        kw["shot_min_confidence"] = check_range(shot["MinSegmentConfidence"],
                                                "Filters.ShotFilter.MinSegmentConfidence", 50, 100, operation)
    if "MinSegmentConfidence" in cue:
        kw["cue_min_confidence"] = check_range(cue["MinSegmentConfidence"],
                                               "Filters.TechnicalCueFilter.MinSegmentConfidence", 50, 100, operation)
    if "MaxPixelThreshold" in black:
        kw["max_pixel_threshold"] = check_range(black["MaxPixelThreshold"],
                                                "Filters.TechnicalCueFilter.BlackFrame.MaxPixelThreshold", 0, 1,
                                                operation)
    if "MinCoveragePercentage" in black:
        kw["min_coverage"] = check_range(black["MinCoveragePercentage"],
                                         "Filters.TechnicalCueFilter.BlackFrame.MinCoveragePercentage", 0, 100,
                                         operation)
    return SegmentFilters(**kw)


def check_start(params: dict) -> SegmentFilters:
    """The StartSegmentDetection checks beyond the service model (before the job starts)."""
    return parse_filters(params)


def black_coverage(rgb: np.ndarray, max_pixel_threshold: float = DEFAULT_MAX_PIXEL_THRESHOLD) -> float:
    """Percentage of pixels whose BT.709 luma is at most ``max_pixel_threshold x 255``."""
    px = rgb.reshape(-1, 3).astype(np.float32)
    luma = px @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    return float(np.mean(luma <= max_pixel_threshold * 255.0 + 1e-3) * 100.0)


def bars_score(rgb: np.ndarray) -> float:
    """0-1: how well the frame's top reads as SMPTE or EBU colour bars."""
    return float(bars_scores(rgb[None])[0])


def bars_scores(frames: np.ndarray) -> np.ndarray:
    """:func:`bars_score` of each frame of a ``(B, H, W, 3)`` batch: one area
    resize per frame and pattern, the rest for the whole batch at once (the same
    numbers: the column means are exact sums of integers)."""
    cv2 = require("cv2", "video")
    top = frames[:, : max(1, int(frames.shape[1] * 0.6))]
    best = np.zeros(len(frames))
    for ref in (_BARS, _EBU):
        n = len(ref)
        # 8 pixels per column (area-averaged); the outer 2 of each 8 may straddle a bar edge.
        cols = np.stack([cv2.resize(t, (n * 8, 12), interpolation=cv2.INTER_AREA) for t in top]).astype(np.float32)
        inner = cols.reshape(-1, 12, n, 8, 3)[:, :, :, 2:6, :]
        mean = inner.mean(axis=(1, 3))  # (B, n, 3)
        spread = np.abs(inner - mean[:, None, :, None, :]).mean(axis=(1, 3, 4))  # (B, n)
        scale = mean.max(axis=(1, 2))  # (B,)
        lit = scale >= 60
        safe = np.where(lit, scale, 1.0).astype(np.float32)
        err = np.abs(mean / safe[:, None, None] - ref).max(axis=2)
        ok = (err <= 0.25) & (spread / safe[:, None] <= 0.1)
        best = np.maximum(best, np.where(lit, ok.mean(axis=1), 0.0))
    return best


def plain_share(rgb: np.ndarray) -> float:
    """Share of pixels in the most common 16-level gray bin (1.0: a flat frame)."""
    gray = (rgb.reshape(-1, 3).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.int32)
    return float(np.bincount(gray // 16, minlength=16).max() / len(gray))


def audio_metadata(path, container=None) -> list[dict]:
    """``AudioMetadata[]``: one ``{Codec, DurationMillis, SampleRate, NumberOfChannels}``
    per audio stream (FFmpeg's names, via PyAV); ``container``: ``path`` already open."""
    if container is None:
        av = require("av", "video")
        with av.open(str(path)) as opened:
            return audio_metadata(path, opened)
    from fractions import Fraction

    out = []
    for stream in container.streams.audio:
        ctx = stream.codec_context
        if stream.duration is not None and stream.time_base is not None:
            duration = int(stream.duration * Fraction(stream.time_base) * 1000)
        else:
            duration = int((container.duration or 0) / 1000)
        layout = getattr(ctx, "layout", None)
        channels = getattr(layout, "nb_channels", None) or getattr(ctx, "channels", 0) or 0
        out.append({"Codec": ctx.name or "unknown", "DurationMillis": max(0, duration),
                    "SampleRate": int(ctx.sample_rate or stream.sample_rate or 0),
                    "NumberOfChannels": int(channels)})
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs (end exclusive) of the True runs of ``mask``."""
    if not len(mask):
        return []
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


class SegmentDetectionAnalyzer:
    """Per-frame measurements batch by batch; segments in :meth:`finalize`."""

    schema = SEGMENTS_SCHEMA

    def __init__(self, params: dict):
        self.filters = parse_filters(params)
        self.want_shots = "SHOT" in self.filters.types
        self.want_cues = "TECHNICAL_CUE" in self.filters.types
        self.ocr = None
        if self.want_cues:
            from ..models.ocr import ocr_model

            self.ocr = ocr_model()
        self.fps = 30.0
        self.duration_ms = 0
        self.audio: list[dict] = []
        self.shots: shots_mod.ShotDetector | None = None
        self._ms: list[int] = []
        self._coverage: list[float] = []
        self._bars: list[float] = []
        self._plain: list[float] = []
        self._credit_samples: dict[int, float] = {}  # frame -> best line score (0 when no text)
        self._next_ocr_ms = 0.0
        # Rows come only from finalize; built once (from_pylist would import pandas).
        self._empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in SEGMENTS_SCHEMA],
                                                 schema=SEGMENTS_SCHEMA)

    # -- the job's decode ------------------------------------------------------------
    def decode_plan(self, path):
        """Every frame, sequentially (the job calls this instead of sampling)."""
        from ..video import probe
        from ..video.every_frame import every_frame_plan

        meta = probe(path)
        self.fps = meta.frame_rate or 30.0
        self.duration_ms = meta.duration_ms
        if self.want_shots:
            self.shots = shots_mod.ShotDetector(self.fps)
        av = require("av", "video")
        try:
            container = av.open(str(path))
        except Exception as exc:
            raise VideoDecodeError(f"cannot open the video: {exc}") from None
        # One open for the audio streams' headers and the video packet count.
        with container:
            self.audio = audio_metadata(path, container)
            return every_frame_plan(path, max_width=DECODE_WIDTH, container=container)

    def models(self) -> dict:
        selected = [{"Type": t, "ModelVersion": shots_mod.MODEL_VERSION if t == "SHOT" else CUES_VERSION}
                    for t in self.filters.types]
        out = {"SelectedSegmentTypes": selected, "AudioMetadata": self.audio,
               "Decode": f"every frame, sequential (PyAV), at most {DECODE_WIDTH} px wide",
               "NotProduced": ["Slate", "StudioLogo"] if self.want_cues else []}
        if self.want_shots:
            out["Shots"] = (f"PySceneDetect AdaptiveDetector (adaptive_threshold "
                            f"{shots_mod.DEFAULT_ADAPTIVE_THRESHOLD}, min_scene_len {shots_mod.DEFAULT_MIN_SCENE_LEN})")
        if self.want_cues:
            out["Credits"] = f"{self.ocr.version} on plain frames, {CREDITS_RATE:g} per second"
        return out

    # -- per batch -------------------------------------------------------------------
    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        # The whole batch at once: one downscale for the shot detector, a second
        # from it for the cue measures (exact halvings, see shots.downscale).
        self._ms += batch.timestamps_ms.tolist()
        analysed = shots_mod.downscale(batch.frames, shots_mod.ANALYSIS_WIDTH)
        if self.shots is not None:
            self.shots.update_batch(batch.indices.tolist(), batch.timestamps_ms.tolist(), analysed)
        if self.want_cues:
            small = shots_mod.downscale(analysed, MEASURE_WIDTH)
            # Frame by frame: one product over a whole batch is big enough for
            # OpenBLAS to start its threads, ten times slower on a busy machine.
            coverage = [black_coverage(f, self.filters.max_pixel_threshold) for f in small]
            plain = [plain_share(f) for f in small]
            self._coverage += coverage
            self._plain += plain
            self._bars += bars_scores(small).tolist()
            for i, (ms, n) in enumerate(zip(batch.timestamps_ms.tolist(), batch.indices.tolist())):
                # OCR only on plain, non-black frames: the only ones that can be credits.
                if ms >= self._next_ocr_ms and plain[i] >= PLAIN_MIN_SHARE and coverage[i] < self.filters.min_coverage:
                    self._next_ocr_ms = ms + 1000.0 / CREDITS_RATE
                    lines = self.ocr.read(np.ascontiguousarray(batch.frames[i][:, :, ::-1]))
                    self._credit_samples[int(n)] = max((line.confidence for line in lines), default=0.0)
        return self._empty

    # -- whole job -------------------------------------------------------------------
    def finalize(self, table: pa.Table) -> pa.Table:
        n = len(self._ms)
        end_ms = max(self.duration_ms, self._ms[-1] + 1) if n else self.duration_ms
        ms = np.asarray(self._ms + [end_ms], np.int64)  # ms[n]: the end of the last frame
        rows_by_type = {}
        if self.want_cues:
            rows_by_type["TECHNICAL_CUE"] = self._cue_rows(n, ms)
        if self.want_shots:
            shots = self.shots.finish(end_ms=int(end_ms)) if self.shots is not None else []
            rows_by_type["SHOT"] = [
                segment_row("SHOT", s.start_frame, s.end_frame, s.start_ms, s.end_ms, self.fps, s.confidence,
                            shot_index=s.index)
                for s in shots if s.confidence >= self.filters.shot_min_confidence]
        rows = [r for t in self.filters.types for r in rows_by_type[t]]
        return pa.Table.from_pylist(rows, schema=SEGMENTS_SCHEMA)

    def _cue_rows(self, n: int, ms: np.ndarray) -> list[dict]:
        coverage = np.asarray(self._coverage, np.float64)
        bars = np.asarray(self._bars, np.float64)
        plain = np.asarray(self._plain, np.float64)
        black = coverage >= self.filters.min_coverage
        is_bars = (bars >= BARS_MIN_SCORE) & ~black
        cues: list[tuple[int, int, str, float]] = []
        for a, b in _runs(black):
            cues.append((a, b, "BlackFrames", max(50.0, min(100.0, float(coverage[a:b].mean())))))
        for a, b in _runs(is_bars):
            cues.append((a, b, "ColorBars", max(50.0, 100.0 * float(bars[a:b].mean()))))
        taken = black | is_bars
        cues += self._credits(n, ms, plain, taken)
        used = np.zeros(n, bool)
        for a, b, _, _ in cues:
            used[a:b] = True
        for a, b in _runs(~used):
            cues.append((a, b, "Content", max(50.0, 100.0 - float(coverage[a:b].mean()))))
        cues.sort()
        return [segment_row("TECHNICAL_CUE", a, b, ms[a], ms[b], self.fps, conf, cue_type=kind)
                for a, b, kind, conf in cues if conf >= self.filters.cue_min_confidence]

    @staticmethod
    def _plain_between(a: int, b: int, plain: np.ndarray, taken: np.ndarray) -> bool:
        return bool(np.all(plain[a:b + 1] >= PLAIN_MIN_SHARE) and not taken[a:b + 1].any())

    def _credits(self, n: int, ms: np.ndarray, plain: np.ndarray, taken: np.ndarray) -> list[tuple]:
        samples = sorted(self._credit_samples.items())
        out = []
        i = 0
        while i < len(samples):
            if samples[i][1] < CREDITS_MIN_LINE:
                i += 1
                continue
            j = i
            while (j + 1 < len(samples) and samples[j + 1][1] >= CREDITS_MIN_LINE
                   and self._plain_between(samples[j][0], samples[j + 1][0], plain, taken)):
                j += 1
            first, last = samples[i][0], samples[j][0]
            # Extend over the plain, non-black frames around the text samples.
            a, b = first, last + 1
            while a > 0 and plain[a - 1] >= PLAIN_MIN_SHARE and not taken[a - 1]:
                a -= 1
            while b < n and plain[b] >= PLAIN_MIN_SHARE and not taken[b]:
                b += 1
            if ms[b] - ms[a] >= CREDITS_MIN_MS:
                kind = "OpeningCredits" if ms[a] < ms[n] / 2 else "EndCredits"
                score = float(np.mean([s for _, s in samples[i:j + 1]]))
                out.append((a, b, kind, max(50.0, min(100.0, 100.0 * score))))
            i = j + 1
        return out
