"""OCR: PP-OCRv4 text detection + recognition through ``rapidocr-onnxruntime``.

The weights ship inside the ``rapidocr-onnxruntime`` wheel (no download, works
offline): ``ch_PP-OCRv4_det_infer.onnx`` (DB text detector),
``ch_PP-OCRv4_rec_infer.onnx`` (SVTR-LCNet CTC recognizer, Chinese + English
character set) and ``ch_ppocr_mobile_v2.0_cls_infer.onnx`` (0/180 degree
classifier). They are PaddleOCR's models converted to ONNX; PaddleOCR and
RapidOCR are both Apache-2.0 (the wheel's metadata says ``License: Apache-2.0``).

:func:`ocr_model` loads one shared :class:`OcrModel`; :meth:`OcrModel.read` takes a
BGR image and returns :class:`OcrLine` objects, each with its :class:`OcrWord` s:

* **Lines** are RapidOCR's: a detector quad (pixels, clockwise from top-left), the
  recognised string and the recogniser's score.
* **Words.** RapidOCR reads whole lines. With ``return_word_box`` its recogniser
  also gives each character's position (from the CTC alignment); a line is split
  into words at spaces and at gaps between characters wider than
  :data:`WORD_GAP` x the median character width (PP-OCRv4's English output often
  drops the spaces between words, the gaps remain). A word's quad is the part of
  the line's quad between its first character's left edge and its last
  character's right edge, measured along the line (so rotated lines give rotated
  words); its confidence is the mean of its characters' scores. When the
  recogniser gives no character positions, the line is split at its spaces and
  each word gets a share of the line's length proportional to its number of
  characters.

The detector sees the image at most :data:`DET_MAX_SIDE` pixels on its long side
(RapidOCR's default instead scales the *short* side up to 736 pixels, four times
the work on a 640 x 360 frame for the same strings in our tests). onnxruntime runs
on CUDA when rekolab sees a GPU (``REKOLAB_DEVICE=cpu`` forces the CPU).
"""
from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass, field

import numpy as np

from . import on_release, onnx_providers, require

__all__ = ["OcrLine", "OcrWord", "OcrModel", "ocr_model", "frame_ocr", "split_words", "MODEL_VERSION",
           "DET_MAX_SIDE", "WORD_GAP", "MIN_LINE_SCORE"]

DET_MAX_SIDE = 960
WORD_GAP = 0.1
#: Lines the recogniser scores under this are dropped before any filter (0-1). Passed on
#: every call: RapidOCR's ``__call__`` resets its threshold to 0.5 whenever it gets keyword
#: arguments (``return_word_box``), so the 0.3 given at construction until 2026-12-02 never
#: applied; 0.5 is the threshold every result so far was made with.
MIN_LINE_SCORE = 0.5


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"PP-OCRv4/rapidocr-onnxruntime-{version('rapidocr-onnxruntime')}"
    except Exception:  # pragma: no cover
        return "PP-OCRv4/rapidocr-onnxruntime"


MODEL_VERSION = _version()


@dataclass(frozen=True)
class OcrWord:
    text: str
    confidence: float  # 0-1
    quad: np.ndarray  # (4, 2) float pixels: top-left, top-right, bottom-right, bottom-left


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float  # 0-1
    quad: np.ndarray  # (4, 2) float pixels
    words: list[OcrWord] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"OcrLine({self.text!r}, {self.confidence:.2f}, {len(self.words)} words)"


def _span(line_quad: np.ndarray, u0: float, u1: float) -> np.ndarray:
    """The part of a line quad between fractions ``u0`` and ``u1`` of its length."""
    tl, tr, br, bl = line_quad
    return np.array([tl + (tr - tl) * u0, tl + (tr - tl) * u1, bl + (br - bl) * u1, bl + (br - bl) * u0])


def ink_columns(image_bgr: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
    """Which columns of a line (its quad warped to a rectangle, one column per
    pixel of length) hold ink: Otsu's threshold on the gray line, the minority
    class being the text. None when the line is too small to tell."""
    cv2 = require("cv2", "video")
    quad = np.asarray(quad, np.float32)
    length = int(round(float(np.hypot(*(quad[1] - quad[0])))))
    height = int(round(float(np.hypot(*(quad[3] - quad[0])))))
    if length < 4 or height < 4:
        return None
    dst = np.array([[0, 0], [length, 0], [length, height], [0, height]], np.float32)
    warp = cv2.warpPerspective(image_bgr, cv2.getPerspectiveTransform(quad, dst), (length, height))
    gray = cv2.cvtColor(warp, cv2.COLOR_BGR2GRAY)
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = mask > 0
    if ink.mean() > 0.5:
        ink = ~ink
    # A column holds ink when a few of its pixels are text (one stray pixel is noise).
    return ink.sum(axis=0) >= max(1, height // 12)


def split_words(text: str, line_quad: np.ndarray, line_score: float, char_quads=None,
                char_texts=None, char_scores=None, ink: np.ndarray | None = None) -> list[OcrWord]:
    """Split a recognised line into words (see the module docstring)."""
    quad = np.asarray(line_quad, np.float64)
    axis = quad[1] - quad[0]
    length = float(np.hypot(*axis)) or 1.0
    height = float(np.hypot(*(quad[3] - quad[0]))) or 1.0
    unit = axis / length
    if char_quads and char_texts and len(char_quads) == len(char_texts):
        spans = []  # (u0, u1, char, score) for each character, in fractions of the line
        for q, ch, sc in zip(char_quads, char_texts, char_scores or [line_score] * len(char_texts)):
            proj = (np.asarray(q, np.float64) - quad[0]) @ unit / length
            spans.append((float(proj.min()), float(proj.max()), ch, float(sc)))
        min_gap = _word_gap(ink, height) if ink is not None else None
        words, cur = [], []
        for span in spans:
            if not span[2].strip():
                if cur:
                    words.append(cur)
                cur = []
                continue
            if cur and min_gap is not None and _blank_run(ink, cur[-1], span) >= min_gap:
                words.append(cur)
                cur = []
            cur.append(span)
        if cur:
            words.append(cur)
        # Each word owns the line from the middle of the gap before it to the
        # middle of the gap after it; its box is the ink inside that.
        cuts = [0.0] + [((a[-1][0] + a[-1][1]) / 2 + (b[0][0] + b[0][1]) / 2) / 2
                        for a, b in zip(words, words[1:])] + [1.0]
        return [OcrWord("".join(c[2] for c in w), float(np.mean([c[3] for c in w])),
                        _span(quad, *_extent(w, ink, cuts[i], cuts[i + 1]))) for i, w in enumerate(words)]
    parts = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    n = max(1, len(text))
    return [OcrWord(text[a:b], float(line_score), _span(quad, a / n, b / n)) for a, b in parts]


def _word_gap(ink: np.ndarray, height: float) -> float:
    """The blank run (columns) that separates words on this line: clearly wider
    than the line's typical gap between letters (the median blank run inside its
    ink): ``max(3, 2 x median, median + WORD_GAP x height)``."""
    cols = np.flatnonzero(ink)
    if len(cols) < 2:
        return float("inf")
    inner = ink[cols[0]:cols[-1] + 1]
    d = np.diff(np.r_[1, inner.astype(np.int8), 1])
    runs = np.flatnonzero(d == 1) - np.flatnonzero(d == -1)
    med = float(np.median(runs)) if len(runs) else 0.0
    return max(3.0, 2.0 * med, med + WORD_GAP * height)


def _blank_run(ink: np.ndarray, left, right) -> int:
    """The longest run of ink-free columns between two characters' centres."""
    n = len(ink)
    a = int(np.clip((left[0] + left[1]) / 2 * n, 0, n))
    b = int(np.clip((right[0] + right[1]) / 2 * n, 0, n))
    best = run = 0
    for inked in ink[a:b]:
        run = 0 if inked else run + 1
        best = max(best, run)
    return best


def _extent(word, ink: np.ndarray | None, lo: float, hi: float) -> tuple[float, float]:
    """A word's start and end along its line: the ink between ``lo`` and ``hi``
    (the middles of the gaps around it), else its characters' CTC span."""
    u0, u1 = max(0.0, word[0][0]), min(1.0, word[-1][1])
    if ink is None or not len(ink):
        return u0, u1
    n = len(ink)
    a, b = int(lo * n), int(np.ceil(hi * n))
    cols = np.flatnonzero(ink[a:b])
    if not len(cols):
        return u0, u1
    return (a + cols[0]) / n, (a + cols[-1] + 1) / n


class OcrModel:
    """RapidOCR's PP-OCRv4 pipeline; thread-safe (one call at a time)."""

    version = MODEL_VERSION

    def __init__(self, threads: int | None = None):
        """``threads``: onnxruntime threads per model (default: one per core)."""
        rapidocr = require("rapidocr_onnxruntime", "text")
        cuda = _on_cuda()
        extra = {"intra_op_num_threads": int(threads)} if threads else {}
        self._ocr = rapidocr.RapidOCR(
            det_limit_type="max", det_limit_side_len=DET_MAX_SIDE, text_score=MIN_LINE_SCORE,
            det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda, print_verbose=False, **extra)
        self._lock = threading.Lock()

    def read(self, image_bgr: np.ndarray) -> list[OcrLine]:
        """Every text line of a BGR uint8 image, with its words (pixel quads)."""
        img = np.ascontiguousarray(image_bgr)
        with self._lock:
            result, _ = self._ocr(img, return_word_box=True, text_score=MIN_LINE_SCORE)
            _trim_heap()
        lines = []
        for item in result or []:
            quad, text, score = np.asarray(item[0], np.float64), str(item[1]), float(item[2])
            text = " ".join(text.split())
            if not text:
                continue
            char_quads = item[3] if len(item) > 3 else None
            char_texts = item[4] if len(item) > 4 else None
            char_scores = item[5] if len(item) > 5 else None
            ink = ink_columns(img, quad) if char_quads else None
            words = split_words(text, quad, score, char_quads, char_texts, char_scores, ink)
            if not words:
                continue
            lines.append(OcrLine(" ".join(w.text for w in words), score, quad, words))
        return lines


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the OS after each OCR call. RapidOCR
    runs onnxruntime without its memory arena, so every call mallocs and frees
    its activations, whose sizes change with the image and the number and width
    of the lines; glibc serves them from the heap once its mmap threshold has
    grown, and the freed pieces stay resident: a text analyzer's peak RSS
    climbed to 530 MB over the first 50-60 frames of the 10x Hamilton clip (1
    sample/s), 384 MB with this (reached by frame 32; the CPU time did not
    change). The results do not depend on it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def ocr_model() -> OcrModel:
    """The process's shared OCR model (loaded once)."""
    return OcrModel()


_frame_models: dict[int, OcrModel] = {}
_frame_models_lock = threading.Lock()


def _on_cuda() -> bool:
    """RapidOCR asks for CUDA where rekolab's own sessions do (``REKOLAB_DEVICE=cpu``
    forces the CPU)."""
    return onnx_providers()[0] == "CUDAExecutionProvider"


def ocr_frames_in_parallel() -> bool:
    """Whether a batch's frames may be read side by side (onnxruntime on the CPU)."""
    return not _on_cuda()


def frame_ocr() -> OcrModel:
    """The OCR model for the calling thread. On a frame thread
    (:func:`~rekolab.models.frame_threads.frame_map`) on the CPU: that thread's own
    model with one onnxruntime thread per graph (an :class:`OcrModel` reads one image
    at a time). Two such models reading two frames at once took 2.1 s for 19 frames of
    the Hamilton clip on 2 cores, one shared model 4.1-4.5 s, with the same lines,
    words, quads and scores. Elsewhere: the shared :func:`ocr_model`."""
    from .frame_threads import in_frame_thread

    if not (in_frame_thread() and ocr_frames_in_parallel()):
        return ocr_model()
    key = threading.get_ident()
    with _frame_models_lock:
        model = _frame_models.get(key)
    if model is None:  # loaded outside the lock: the other frame threads load theirs meanwhile
        model = OcrModel(threads=1)
        with _frame_models_lock:
            _frame_models[key] = model
    return model


def _release() -> None:
    ocr_model.cache_clear()
    with _frame_models_lock:
        _frame_models.clear()


def _forget_frame_models() -> None:
    """A forked child has new frame threads (whose ids may repeat the parent's)."""
    global _frame_models_lock
    _frame_models.clear()
    _frame_models_lock = threading.Lock()


on_release(_release)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_frame_models)
