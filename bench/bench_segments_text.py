"""Segment and text detection: decode only vs model only vs rekolab job vs the naive loop.

    python bench/bench_segments_text.py [--video ../shared/media/video/short_hamilton_clip.mp4]
                                        [--text-sample-rate 1] [--runs 1]

Segment detection (every frame):

* *decode only*: :func:`rekolab.video.every_frame.every_frame_plan` (PyAV, sequential,
  at most 640 px wide), every frame consumed;
* *model only*: the analyzer's per-frame work (AdaptiveDetector, black coverage,
  bars score, plain-background test and OCR on plain frames) over frames decoded
  beforehand, plus finalize;
* *rekolab job*: ``rk.start_segment_detection(video).wait()`` (SHOT + TECHNICAL_CUE);
* *naive loop*: what a user writes with the same libraries: PySceneDetect's own
  ``scenedetect.detect(path, AdaptiveDetector())`` (its OpenCV backend, full size)
  for shots, then a second ``cv2.VideoCapture`` pass testing every frame for black
  (it finds no bars and no credits, which the job does);
* *SHOT only*: the job with ``SegmentTypes=["SHOT"]`` against ``scenedetect.detect`` alone.

Text detection (sampled frames, ``--text-sample-rate`` per second):

* *decode only*: rekolab's sampled decode plan (decord);
* *model only*: :meth:`rekolab.models.ocr.OcrModel.read` + filters on those frames;
* *rekolab job*: ``rk.start_text_detection(video, sample_rate=...).wait()``;
* *naive loop*: ``cv2.VideoCapture`` reads every frame and ``RapidOCR()`` with its
  default configuration (short side scaled up to 736 px) runs on every k-th frame.

Prints a Markdown table of video-seconds processed per wall-second (higher is better).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


CPU: dict = {}  # name -> best process CPU seconds (all threads), filled by _best


def _best(fns: dict, runs: int) -> dict:
    """Best wall time of each function over ``runs`` rounds; each round runs every
    function once, so a load swing on a shared machine hits all of them alike.
    The best CPU time (this process, all threads) goes to :data:`CPU`: on a
    loaded machine it is the steadier number."""
    best = {name: float("inf") for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            CPU[name] = min(CPU.get(name, float("inf")), time.process_time() - c0)
    return best


def bench_segments(video: str, runs: int) -> dict:
    import cv2

    import rekolab as rk
    from rekolab.analysis.segments import SegmentDetectionAnalyzer
    from rekolab.video.every_frame import every_frame_plan

    def decode():
        for _ in every_frame_plan(video).frames():
            pass

    analyzer = SegmentDetectionAnalyzer({"SegmentTypes": ["TECHNICAL_CUE", "SHOT"]})
    plan = analyzer.decode_plan(video)
    batches = list(plan.batches(16))

    def model():
        a = SegmentDetectionAnalyzer({"SegmentTypes": ["TECHNICAL_CUE", "SHOT"]})
        a.decode_plan(video)
        for b in batches:
            a(b)
        a.finalize(None)

    def job():
        j = rk.start_segment_detection(video).wait(progress=False)
        assert j.status == "SUCCEEDED", j.status_message

    def job_shots():
        j = rk.start_segment_detection(video, ["SHOT"]).wait(progress=False)
        assert j.status == "SUCCEEDED", j.status_message

    def naive_shots():
        import scenedetect

        scenedetect.detect(video, scenedetect.AdaptiveDetector())

    def naive():
        naive_shots()
        cap = cv2.VideoCapture(video)
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            luma = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            _ = (luma <= 51).mean() >= 0.99
        cap.release()

    return _best({"decode only": decode, "model only": model, "rekolab job": job, "naive loop": naive,
                  "job, SHOT only": job_shots, "naive, shots only": naive_shots}, runs)


def bench_text(video: str, sample_rate: float, runs: int) -> dict:
    import cv2

    import rekolab as rk
    from rekolab.analysis.text import detect_text
    from rekolab.models.ocr import ocr_model
    from rekolab.video import plan as plan_decode

    def decode():
        for _ in plan_decode(video, sample_rate).batches(16):
            pass

    frames = [f for b in plan_decode(video, sample_rate).batches(16) for f in b.frames]
    ocr = ocr_model()

    def model():
        for f in frames:
            detect_text(np.ascontiguousarray(f[:, :, ::-1]), None, ocr)

    def job():
        j = rk.start_text_detection(video, sample_rate=sample_rate).wait(progress=False)
        assert j.status == "SUCCEEDED", j.status_message

    def naive():
        from rapidocr_onnxruntime import RapidOCR

        engine = RapidOCR()
        cap = cv2.VideoCapture(video)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30
        step = max(1, int(round(fps / sample_rate)))
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                engine(frame)
            i += 1
        cap.release()

    return _best({"decode only": decode, "model only": model, "rekolab job": job, "naive loop": naive}, runs)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    shared = Path(os.environ.get("REKOLAB_SHARED") or root.parent / "shared")
    ap.add_argument("--video", default=str(shared / "media/video/short_hamilton_clip.mp4"))
    ap.add_argument("--text-sample-rate", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--skip-text", action="store_true")
    args = ap.parse_args()
    os.environ["REKOLAB_HOME"] = tempfile.mkdtemp(prefix="rekolab-bench-segtext-")
    from rekolab.video import probe

    seconds = probe(args.video).duration_ms / 1000
    rows = [("segments (every frame)", bench_segments(args.video, args.runs))]
    seg_cpu = dict(CPU)  # segments only
    if not args.skip_text:
        rows.append((f"text ({args.text_sample_rate:g} frames/s)",
                     bench_text(args.video, args.text_sample_rate, args.runs)))
    print(f"Run on {time.strftime('%Y-%m-%d')}: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; {Path(args.video).name} ({seconds:.1f} s); best of {args.runs}. "
          "Video-seconds per wall-second (higher is better); runs interleaved.\n")
    print("| operation | decode only | model only | rekolab job | naive loop | job / min(decode, model) "
          "| job / naive | job, SHOT only | naive, shots only | job / naive (shots) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, t in rows:
        speed = {k: seconds / v for k, v in t.items()}
        shots = ("| - | - | -" if "job, SHOT only" not in speed else
                 f"| {speed['job, SHOT only']:.1f} | {speed['naive, shots only']:.1f} | "
                 f"{speed['job, SHOT only'] / speed['naive, shots only']:.2f}")
        print(f"| {name} | {speed['decode only']:.1f} | {speed['model only']:.1f} | {speed['rekolab job']:.1f} | "
              f"{speed['naive loop']:.1f} | "
              f"{speed['rekolab job'] / min(speed['decode only'], speed['model only']):.2f} | "
              f"{speed['rekolab job'] / speed['naive loop']:.2f} {shots} |")
    _print_cpu(seconds, seg_cpu)


def _print_cpu(seconds: float, cpu: dict) -> None:
    print("\nCPU seconds per video-second (this process, all threads; lower is better):\n")
    print("| " + " | ".join(cpu) + " |")
    print("|" + "---|" * len(cpu))
    print("| " + " | ".join(f"{v / seconds:.3f}" for v in cpu.values()) + " |")


if __name__ == "__main__":
    main()
