"""Frames side by side on the CPU (rekolab/models/frame_threads.py).

* ``frame_map`` keeps the order, runs on several threads, runs a nested call inline,
  raises the first error, and is off with ``REKOLAB_FRAME_THREADS=1``;
* the real per-frame graphs (SCRFD + MobileFaceNet, YOLOX-nano, NudeNet 320n) give
  the same detections to the bit with frames side by side on one-thread sessions as
  one frame at a time on the shared session, on frames of the Hamilton clip;
* a forked child gets working frame threads of its own.
"""
from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest

from conftest import MEDIA, MODELS, module_env, need

from rekolab.models import frame_threads as FT

CLIP = MEDIA / "video" / "short_hamilton_clip.mp4"


def test_frame_map_order_threads_nesting_and_errors(monkeypatch):
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "2")
    seen = set()

    def slow(i):
        seen.add(threading.current_thread().name)
        assert FT.in_frame_thread()
        time.sleep(0.05 if i % 2 == 0 else 0.01)
        return i * i

    assert FT.frame_map(slow, range(8)) == [i * i for i in range(8)]
    assert len(seen) == 2 and all(name.startswith("rekolab-frame") for name in seen)
    assert not FT.in_frame_thread()

    def nested(i):
        return FT.frame_map(lambda j: (threading.current_thread().name, j), range(3))

    for inner in FT.frame_map(nested, range(2)):
        assert len({name for name, _ in inner}) == 1  # inline, in its caller's thread

    def fails(i):
        if i == 3:
            raise KeyError("three")
        return i

    with pytest.raises(KeyError, match="three"):
        FT.frame_map(fails, range(6))

    caller = threading.current_thread().name
    assert FT.frame_map(lambda i: threading.current_thread().name, range(4), parallel=False) == [caller] * 4
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "1")
    assert FT.frame_threads() == 1
    assert FT.frame_map(lambda i: threading.current_thread().name, range(4)) == [caller] * 4
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "two")
    with pytest.raises(ValueError, match="REKOLAB_FRAME_THREADS"):
        FT.frame_threads()
    monkeypatch.delenv("REKOLAB_FRAME_THREADS")
    assert 1 <= FT.frame_threads() <= FT.MAX_DEFAULT_THREADS


def test_frame_map_at_interpreter_exit_runs_inline(monkeypatch):
    """concurrent.futures refuses new work while the interpreter exits; a job thread
    still in a batch then finishes it in its own thread instead of failing."""
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "2")
    real = FT._pool(2)

    class Exiting:
        submitted = 0

        def submit(self, *args):
            if self.submitted:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            self.submitted += 1
            return real.submit(*args)

    monkeypatch.setattr(FT, "_pool", lambda n: Exiting())
    assert FT.frame_map(lambda i: i * 10, range(5)) == [0, 10, 20, 30, 40]


def test_frame_map_error_waits_for_running_items(monkeypatch):
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "2")
    ended = []

    def work(i):
        if i == 0:
            raise ValueError("first")
        time.sleep(0.2)
        ended.append(i)

    with pytest.raises(ValueError, match="first"):
        FT.frame_map(work, range(6))
    done = list(ended)
    time.sleep(0.5)
    assert ended == done  # nothing of that call ran after it raised
    assert len(done) < 5  # and the items not started were dropped


def _child(queue):
    queue.put(FT.frame_map(lambda i: i + 1, range(4)))


def test_frame_threads_work_in_a_forked_child(monkeypatch):
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "2")
    assert FT.frame_map(lambda i: i, range(4)) == [0, 1, 2, 3]  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the child's frame_map did not finish"
    assert queue.get(timeout=5) == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    need(CLIP)
    with module_env(tmp_path_factory, REKOLAB_BACKEND="onnxruntime"):
        from rekolab.video import plan

        yield [f for b in plan(CLIP, 1.0).batches() for f in b.frames]  # RGB, as jobs get them


def _both(monkeypatch, run):
    """``run()`` with frames side by side (2 threads) and one at a time; counts the
    calls that went to a one-thread session."""
    narrow = []
    real = FT.narrow_session

    def counting(path):
        narrow.append(path)
        return real(path)

    monkeypatch.setattr("rekolab.models.backend.narrow_session", counting)
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "2")
    side_by_side = run()
    calls = len(narrow)
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "1")
    one_at_a_time = run()
    assert len(narrow) == calls  # nothing ran on a one-thread session
    return side_by_side, one_at_a_time, calls


def test_face_pack_side_by_side_is_exact(frames, monkeypatch):
    need(MODELS / "insightface" / "models" / "scrfd500m_mfn128")
    from rekolab.models.faces import face_pack

    pack = face_pack()
    bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]

    def run():
        found = pack.detect_batch(bgr)
        return found, pack.embed_batch(bgr, [f[2] for f in found])

    (found, emb), (ref, ref_emb), calls = _both(monkeypatch, run)
    assert calls >= len(frames) + sum(len(f[0]) for f in found)  # every frame and face
    assert sum(len(f[0]) for f in found) >= len(frames) // 2
    for a, b in zip(found, ref):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for x, y in zip(emb, ref_emb):
        np.testing.assert_array_equal(x, y)


def test_yolox_and_nudenet_side_by_side_are_exact(frames, monkeypatch):
    need(MODELS / "coco_detection" / "yolox_nano.onnx")
    pytest.importorskip("nudenet")
    from rekolab.models.nudenet import NudeNetDetector
    from rekolab.models.yolox import YoloxDetector

    yolox, nude = YoloxDetector(), NudeNetDetector()

    def run():
        return yolox.detect_batch(frames, rgb=True), nude.detect_batch(frames, rgb=True)

    (dets, nudes), (ref, ref_nudes), calls = _both(monkeypatch, run)
    assert calls >= len(frames) + len(frames) // 4
    assert sum(len(d) for d in dets) >= len(frames)  # people in every frame
    for a, b in zip(dets, ref):
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
    assert sum(len(d.scores) for d in nudes) >= 1
    for a, b in zip(nudes, ref_nudes):
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_text_frames_side_by_side_are_exact(frames, monkeypatch):
    """The text analyzer reads a batch's frames side by side, each frame thread with
    its own one-thread OCR model: the same rows as one shared model, frame by frame."""
    pytest.importorskip("rapidocr_onnxruntime")
    import cv2

    from rekolab.analysis.text import TextDetectionAnalyzer
    from rekolab.models import ocr as O
    from rekolab.testing import draw_text
    from rekolab.video import FrameBatch

    if not O.ocr_frames_in_parallel():
        pytest.skip("OCR runs on CUDA here: frames are not read side by side")
    drawn = [np.ascontiguousarray(f) for f in frames[:6]]
    for i, f in enumerate(drawn):
        draw_text(f, f"GATE {i + 10} BOARDING", (40, 80), font=cv2.FONT_HERSHEY_DUPLEX, scale=1.0,
                  background=(0, 0, 0))
        draw_text(f, "rekolab news", (300, 300), font=cv2.FONT_HERSHEY_SIMPLEX, scale=0.9, background=(0, 0, 0))
    batch = FrameBatch(np.stack(drawn), np.arange(6, dtype=np.int64) * 1000, np.arange(6, dtype=np.int64) * 30)
    analyzer = TextDetectionAnalyzer({})
    made = []
    real = O.OcrModel

    class Counting(real):
        def __init__(self, threads=None):
            made.append(threads)
            super().__init__(threads)

    monkeypatch.setattr(O, "OcrModel", Counting)
    monkeypatch.setattr(O, "_frame_models", {})
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "2")
    side_by_side = analyzer(batch).to_pylist()
    assert made == [1, 1]  # one one-thread model per frame thread
    monkeypatch.setenv("REKOLAB_FRAME_THREADS", "1")
    one_at_a_time = analyzer(batch).to_pylist()
    assert made == [1, 1]  # the shared model, made before
    lines = [r["DetectedText"].casefold() for r in side_by_side if r["Type"] == "LINE"]
    assert any(line.startswith("gate 12 b") for line in lines) and lines.count("rekolab news") == 6
    assert side_by_side == one_at_a_time
