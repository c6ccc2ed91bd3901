"""Content moderation and person tracking throughput, measured in one run (not a test).

For one clip (default ``mmaction2_demo_armwrestling.mp4``) and each operation, it
measures video-seconds processed per wall-second for:

* ``decode`` — rekolab's decoder alone (sampled frames at SampleRate);
* ``model``  — the operation's analyzer alone, on frames decoded beforehand;
* ``job``    — a whole rekolab Start* job (decode and models overlap);
* ``naive``  — the loop a user would write with the same libraries: ``cv2.VideoCapture``
  reading every frame, and on each sampled frame ``nudenet.NudeDetector.detect``
  (moderation) or YOLOX + ``trackers.ByteTrackTracker`` + insightface
  ``FaceAnalysis.get`` (persons).

    REKOLAB_MODEL_DIR=../shared/models python bench/bench_moderation_persons.py --out bench.md
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("REKOLAB_SHARED", REPO.parent / "shared"))


def bench_decode(path: Path, rate: float) -> float:
    from rekolab.video import plan

    t = time.perf_counter()
    assert sum(len(b) for b in plan(path, rate).batches(16)) > 0
    return time.perf_counter() - t


def bench_model(path: Path, operation: str, rate: float) -> float:
    from rekolab.analysis import analyzer_for
    from rekolab.video import plan

    batches = list(plan(path, rate).batches(16))  # decoded beforehand, not timed
    analyzer = analyzer_for(operation, {"SampleRate": rate})
    analyzer(batches[0])  # warm-up (sessions, first-call allocations)
    analyzer = analyzer_for(operation, {"SampleRate": rate})  # fresh tracker state
    t = time.perf_counter()
    for b in batches:
        analyzer(b)
    return time.perf_counter() - t


def bench_job(path: Path, operation: str, rate: float) -> float:
    import rekolab as rk

    client = rk.client()
    start = {"StartContentModeration": client.start_content_moderation,
             "StartPersonTracking": client.start_person_tracking}[operation]
    t = time.perf_counter()
    job_id = start(Video={"Path": str(path)}, SampleRate=rate)["JobId"]
    record = client.jobs.wait(job_id)
    assert record.status == "SUCCEEDED", record.status_message
    return time.perf_counter() - t


def _naive_frames(path: Path, rate: float):
    import cv2

    cap = cv2.VideoCapture(str(path))
    next_ms = 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if cap.get(cv2.CAP_PROP_POS_MSEC) >= next_ms:
            next_ms += 1000.0 / rate
            yield frame
    cap.release()


def bench_naive_moderation(path: Path, rate: float) -> float:
    from nudenet import NudeDetector

    detector = NudeDetector()
    t = time.perf_counter()
    for frame in _naive_frames(path, rate):
        detector.detect(frame)
    return time.perf_counter() - t


def bench_naive_persons(path: Path, rate: float) -> float:
    import numpy as np
    import supervision as sv
    from insightface.app import FaceAnalysis
    from trackers import ByteTrackTracker

    from rekolab.models.faces import resolve_pack_dir
    from rekolab.models.yolox import YoloxDetector

    name, folder = resolve_pack_dir()
    app = FaceAnalysis(name=name, root=str(folder.parent.parent), providers=["CPUExecutionProvider"],
                       allowed_modules=["detection", "recognition"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    yolox = YoloxDetector(score_threshold=0.1)
    tracker = ByteTrackTracker(frame_rate=rate, minimum_consecutive_frames=1)
    t = time.perf_counter()
    for frame in _naive_frames(path, rate):
        d = yolox.detect(frame)
        keep = d.class_ids == 0
        tracker.update(sv.Detections(xyxy=d.boxes_xyxy[keep], confidence=d.scores[keep],
                                     class_id=d.class_ids[keep].astype(int)))
        app.get(frame)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", default=str(SHARED / "media" / "video" / "mmaction2_demo_armwrestling.mp4"))
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown report here")
    args = parser.parse_args()
    path = Path(args.clip)
    os.environ.setdefault("REKOLAB_OFFLINE", "1")
    from rekolab.video import probe

    seconds = probe(path).duration_ms / 1000
    rows = []
    for op, naive in (("StartContentModeration", bench_naive_moderation),
                      ("StartPersonTracking", bench_naive_persons)):
        times = {"decode": bench_decode(path, args.rate), "model": bench_model(path, op, args.rate),
                 "job": bench_job(path, op, args.rate), "naive": naive(path, args.rate)}
        for what, s in times.items():
            rows.append((op, what, s, seconds / s))
            print(f"{op:<24} {what:<7} {s:7.2f} s  {seconds / s:6.2f} video-s/s", flush=True)
    if args.out:
        lines = [f"# Moderation and person tracking ({path.name}, {seconds:.1f} s, SampleRate {args.rate})", "",
                 f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one run (no repeats)", "",
                 "| operation | what | wall s | video-s per s |", "|---|---|---|---|"]
        lines += [f"| {op} | {what} | {s:.2f} | {v:.2f} |" for op, what, s, v in rows]
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
