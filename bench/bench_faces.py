"""Face-detection throughput and memory, measured in one run (not a test).

For a real clip (``short_hamilton_clip.mp4``) and a synthesized clip 10x as long
(the same clip looped and re-encoded), it measures video-seconds processed per
wall-second for:

* ``decode``  — rekolab's decoder alone (decord, sampled frames, prefetch thread);
* ``model``   — the face analyzer alone, on frames decoded beforehand;
* ``job``     — a whole rekolab StartFaceDetection job (decode and model overlap);
* ``naive``   — the loop a user would write: ``cv2.VideoCapture`` reading every
  frame and ``insightface.app.FaceAnalysis.get`` on each sampled frame (5 per s).

and the peak RSS of a job process on the clip and on the 10x clip (each job in a
fresh subprocess; ``ru_maxrss``). Results are written to BENCHMARKS.md.

    REKOLAB_MODEL_DIR=../shared/models python bench/bench_faces.py --out BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REKOLAB_SHARED", REPO.parent / "shared"))
CLIP = SHARED / "media" / "video" / "short_hamilton_clip.mp4"
RATE = 5.0


def duration_s(path: Path) -> float:
    from rekolab.video import probe
    return probe(path).duration_ms / 1000


def bench_decode(path: Path) -> float:
    from rekolab.video import plan
    t = time.perf_counter()
    n = sum(len(b) for b in plan(path, RATE).batches())
    assert n > 0
    return time.perf_counter() - t


def bench_model(path: Path, attributes: str) -> float:
    from rekolab.analysis.faces import FaceDetectionAnalyzer
    from rekolab.video import plan
    batches = list(plan(path, RATE).batches())  # decoded beforehand, not timed
    analyzer = FaceDetectionAnalyzer({"FaceAttributes": attributes})
    analyzer(batches[0])  # warm-up
    t = time.perf_counter()
    for b in batches:
        analyzer(b)
    return time.perf_counter() - t


def bench_job(path: Path, attributes: str) -> float:
    import rekolab as rk
    client = rk.client()
    t = time.perf_counter()
    job = rk.start_face_detection(path, face_attributes=attributes, client=client).wait(progress=False)
    elapsed = time.perf_counter() - t
    assert job.status == "SUCCEEDED", job.status_message
    return elapsed


def pack_only_model_dir() -> Path:
    """A model folder with only the insightface packs: the job then gives boxes,
    scores and the detector's 5 landmarks, the information FaceAnalysis.get gives."""
    src = Path(os.environ["REKOLAB_MODEL_DIR"])
    dst = Path(tempfile.mkdtemp(prefix="rekolab-packonly-"))
    (dst / "insightface").mkdir()
    (dst / "insightface" / "models").symlink_to(src / "insightface" / "models")
    return dst


def bench_job_pack_only(path: Path) -> float:
    """A job in a fresh process whose REKOLAB_MODEL_DIR has only the face packs."""
    code = ("import time, rekolab as rk;"
            f"rk.start_face_detection({str(path)!r}).wait(progress=False);"  # warm-up: model load
            "t = time.perf_counter();"
            f"j = rk.start_face_detection({str(path)!r}).wait(progress=False);"
            "assert j.status == 'SUCCEEDED', j.status_message;"
            "print(time.perf_counter() - t)")
    model_dir = pack_only_model_dir()
    try:
        env = dict(os.environ, REKOLAB_MODEL_DIR=str(model_dir))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_naive(path: Path) -> float:
    import cv2
    from insightface.app import FaceAnalysis

    from rekolab.models import onnx_providers
    from rekolab.models.faces import resolve_pack_dir
    name, folder = resolve_pack_dir()
    app = FaceAnalysis(name=name, root=str(folder.parent.parent), providers=onnx_providers())
    app.prepare(ctx_id=-1, det_size=(640, 640))
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    app.get(frame)  # warm-up
    cap.release()
    t = time.perf_counter()
    cap = cv2.VideoCapture(str(path))
    next_ms = 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if cap.get(cv2.CAP_PROP_POS_MSEC) >= next_ms - 1e-3:
            app.get(frame)
            next_ms += 1000 / RATE
    cap.release()
    return time.perf_counter() - t


def rss_child(path: Path) -> int:
    """Peak RSS (KiB) of a fresh process that runs one job on ``path``.

    Read from VmHWM: ru_maxrss is inherited across fork and kept across exec on
    Linux, so a child would report this (large) benchmark process's peak."""
    code = ("import rekolab as rk;"
            f"j = rk.start_face_detection({str(path)!r}).wait(progress=False);"
            "assert j.status == 'SUCCEEDED', j.status_message;"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown report here")
    parser.add_argument("--times", type=int, default=10, help="length of the long clip, in clips")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for each timing")
    args = parser.parse_args()
    os.environ.setdefault("REKOLAB_MODEL_DIR", str(SHARED / "models"))
    home = tempfile.mkdtemp(prefix="rekolab-bench-")
    os.environ["REKOLAB_HOME"] = home  # jobs written here, not in the user's home

    from rekolab.models import onnx_providers
    from rekolab.models.faces import face_pack
    from rekolab.testing import looped_video

    long_clip = looped_video(CLIP, Path(home) / f"hamilton_x{args.times}.mp4", args.times)
    face_pack()  # load once, outside every timing
    rows = []
    for label, path in [("short_hamilton_clip.mp4", CLIP), (f"hamilton x{args.times} (synth.)", long_clip)]:
        secs = duration_s(path)
        r = {"clip": label, "video_s": secs}

        def best(fn, *a):  # best of N: the machine's other load only ever slows a run down
            return secs / min(fn(*a) for _ in range(args.repeat))

        r["decode"] = best(bench_decode, path)
        r["model"] = best(bench_model, path, "DEFAULT")
        r["job"] = best(bench_job, path, "DEFAULT")
        r["naive"] = best(bench_naive, path)
        r["job_pack_only"] = best(bench_job_pack_only, path)
        r["model_all"] = best(bench_model, path, "ALL")
        r["job_all"] = best(bench_job, path, "ALL")
        rows.append(r)
        print(json.dumps(r), flush=True)
    rss_short, rss_long = rss_child(CLIP), rss_child(long_clip)

    lines = [
        "# Benchmarks: face detection",
        "",
        f"Run by `bench/bench_faces.py` on {time.strftime('%Y-%m-%d')}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, providers {onnx_providers()}, Python {platform.python_version()}. "
        f"Face pack `{face_pack().name}` from `REKOLAB_MODEL_DIR`; {RATE:g} sampled frames per second; "
        "DEFAULT attributes unless marked ALL. Numbers are video-seconds processed per wall-second "
        f"(higher is better), best of {args.repeat} runs.",
        "",
        "| clip | video s | decode only | model only | rekolab job | naive loop | job / min(decode, model) | job / naive | job, pack only | pack only / naive | model only (ALL) | job (ALL) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clip']} | {r['video_s']:.1f} | {r['decode']:.1f} | {r['model']:.1f} | {r['job']:.1f} | "
            f"{r['naive']:.1f} | {r['job'] / min(r['decode'], r['model']):.2f} | {r['job'] / r['naive']:.2f} | "
            f"{r['job_pack_only']:.1f} | {r['job_pack_only'] / r['naive']:.2f} | "
            f"{r['model_all']:.1f} | {r['job_all']:.1f} |")
    lines += [
        "",
        f"Peak RSS of a job process: {rss_short / 1024:.0f} MiB on the clip, {rss_long / 1024:.0f} MiB on the "
        f"{args.times}x clip (ratio {rss_long / rss_short:.2f}).",
        "",
        "Targets (issue #2): job >= 0.9 x min(decode, model); job >= 2 x naive; RSS(10x) <= 1.2 x RSS(1x).",
        "",
        "What each column computes: *model only*, *rekolab job* = SCRFD boxes + the 68-point model's 30 landmarks",
        "(one PFLD pass), solvePnP pose and pixel quality for every face (DEFAULT); ALL adds a refining PFLD pass,",
        "age/gender, expression, eyes and mouth. *naive loop* = cv2 decodes every frame and",
        "`FaceAnalysis.get` runs SCRFD (640x640 letterbox) + the recognizer on each sampled frame. *job, pack only* =",
        "a rekolab job whose model folder holds only the insightface packs: boxes, scores, 5 landmarks, the same",
        "information the naive loop yields (minus embeddings, which face detection does not return).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report)
    shutil.rmtree(home, ignore_errors=True)  # the long clip and the bench's jobs


if __name__ == "__main__":
    main()
