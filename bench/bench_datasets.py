"""Dataset-run throughput: videos per hour and frames per second (not a test).

A dataset of ``--videos`` copies of a real clip (default: 6 copies of
``short_hamilton_clip.mp4``, faces at ``--sample-rate`` 2) analysed by
``rk.analyze`` with the local executor at 1 and 2 workers, and, with ``--ray``,
on a local Ray started by the benchmark (1 and 2 actors). Each configuration
writes a fresh output folder; the time includes starting the workers and loading
their models (a dataset pays that once per worker). Ray's overhead is its time
over the local executor's at the same worker count.

    REKOLAB_MODEL_DIR=../shared/models python bench/bench_datasets.py --ray --out BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("REKOLAB_SHARED", REPO.parent / "shared"))
CLIP = SHARED / "media" / "video" / "short_hamilton_clip.mp4"


def one(clips: Path, out: Path, executor: str, workers: int, rate: float, ops) -> dict:
    import rekolab as rk

    t0 = time.perf_counter()
    run = rk.analyze(str(clips), ops, out=out, executor=executor, workers=workers, sample_rate=rate,
                     new_run=True).wait(progress=False)
    seconds = time.perf_counter() - t0
    m = run.manifest()
    assert (m["status"] == "SUCCEEDED").all(), m[["status", "status_message"]]
    frames = int(m["sampled_frames"].sum())
    return {"executor": executor, "workers": workers, "videos": len(m), "frames": frames, "seconds": seconds,
            "videos_per_h": len(m) / seconds * 3600, "fps": frames / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--sample-rate", type=float, default=2.0)
    ap.add_argument("--ray", action="store_true", help="also run on a local Ray")
    ap.add_argument("--out", type=Path, help="append a table to this markdown file")
    args = ap.parse_args()
    ops = {"faces": {}}
    tmp = Path(tempfile.mkdtemp(prefix="bench-datasets-"))
    os.environ.setdefault("REKOLAB_HOME", str(tmp / "home"))
    try:
        clips = tmp / "clips"
        clips.mkdir()
        for i in range(args.videos):
            shutil.copy(CLIP, clips / f"clip_{i:02d}.mp4")
        rows = []
        for workers in (1, 2):
            rows.append(one(clips, tmp / f"local{workers}", "local", workers, args.sample_rate, ops))
            print(rows[-1], flush=True)
        if args.ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                for workers in (1, 2):
                    rows.append(one(clips, tmp / f"ray{workers}", "ray", workers, args.sample_rate, ops))
                    print(rows[-1], flush=True)
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    local = {r["workers"]: r["seconds"] for r in rows if r["executor"] == "local"}
    lines = [
        f"\n## Dataset runs (`bench/bench_datasets.py`, {time.strftime('%Y-%m-%d')})\n",
        f"{args.videos} copies of {CLIP.name} ({args.sample_rate:g} sampled frames/s), faces (DEFAULT); "
        f"{platform.machine()}, {os.cpu_count()} CPUs. Wall time includes starting workers and loading models.\n",
        "| executor | workers | videos | frames | seconds | videos/h | frames/s | vs local, same workers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["seconds"] / local[r["workers"]]
        lines.append(f"| {r['executor']} | {r['workers']} | {r['videos']} | {r['frames']} | {r['seconds']:.1f} | "
                     f"{r['videos_per_h']:.0f} | {r['fps']:.2f} | {ratio:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
