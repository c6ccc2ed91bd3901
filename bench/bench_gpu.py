"""GPU benchmarks at 1080p (run by bench/gpu.sh on the GPU machine; not a test).

Rows (issue #15's GPU targets): faces DEFAULT at 5 samples/s and labels YOLOX + CLIP
ViT-B-32 (random weights, real size, fp16) at 2 samples/s, on a 1080p clip made here
from the Hamilton clip (upscaled, looped to ``--seconds``). For each: decode-only,
model-only, the job and the naive loop (bench/bench_ops.py), best of ``--repeat``,
and the GPU's utilisation during the job (``torch.cuda.utilization()``, NVML,
sampled every 100 ms). Writes ``gpu_bench.md`` (the BENCHMARKS.md section) and
``gpu_bench.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ops  # noqa: E402
from harness import CLIP, measure  # noqa: E402

ROWS = [("faces DEFAULT", 5.0, 100.0), ("labels YOLOX + CLIP", 2.0, 200.0)]


def scaled_video(src: Path, dst: Path, width: int, height: int, seconds: float) -> Path:
    """``src`` upscaled to ``width x height`` and looped to ``seconds``, H.264 (x264 ultrafast)."""
    import av
    import cv2

    with av.open(str(src)) as c:
        rate = c.streams.video[0].average_rate or 30
        frames = [cv2.resize(f.to_ndarray(format="rgb24"), (width, height), interpolation=cv2.INTER_LINEAR)
                  for f in c.decode(video=0)]
    total = int(seconds * float(rate))
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(total):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


class Utilisation:
    """GPU utilisation (%) sampled every 100 ms while the block runs."""

    def __enter__(self):
        import torch

        self.samples: list[float] = []
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                try:
                    self.samples.append(float(torch.cuda.utilization()))
                except Exception:  # no NVML: leave the column empty
                    return
                time.sleep(0.1)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the 1080p clip")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["REKOLAB_HOME"] = tempfile.mkdtemp(prefix="rekolab-gpu-bench-")
    os.environ.setdefault("REKOLAB_OFFLINE", "1")
    from rekolab.models.backend import backend, torch_device

    assert torch_device() == "cuda", "bench_gpu.py needs a CUDA GPU"
    t = time.perf_counter()
    clip = scaled_video(CLIP, Path(os.environ["REKOLAB_HOME"]) / "hamilton_1080p.mp4", 1920, 1080, args.seconds)
    made_s = time.perf_counter() - t
    rows = []
    for name, rate, target in ROWS:
        op = next(o for o in bench_ops.OPERATIONS if o.name == name)
        job = op.job
        util = {}

        def watched(path, r, job=job, util=util):
            with Utilisation() as u:
                job(path, r)
            if u.samples:
                util["mean"], util["max"] = statistics.mean(u.samples), max(u.samples)

        op.job = watched
        row = measure(op, clip, rate, args.repeat)
        op.job = job
        row.update(target=target, gpu_util_mean=util.get("mean"), gpu_util_max=util.get("max"),
                   peak_gpu_mib=torch.cuda.max_memory_allocated() / 2**20)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "gpu_bench.json").write_text(json.dumps(rows, indent=1))
    dev = torch.cuda.get_device_name(0)
    lines = [
        "## GPU",
        "",
        f"`bench/gpu.sh` on {time.strftime('%Y-%m-%d %H:%M')}: {dev}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, Python {platform.python_version()}, backend `{backend()}` (torch modules on CUDA; "
        f"onnxruntime is the CPU build there). Clip: the Hamilton clip upscaled to 1920x1080 and looped to "
        f"{args.seconds:g} s (made in {made_s:.0f} s). Video-seconds per wall-second = x real time, best of "
        f"{args.repeat}. GPU utilisation: NVML, sampled every 100 ms during the job (last run).",
        "",
        "| operation | samples/s | decode only | model only | rekolab job (x real time) | naive loop | "
        "job / min(decode, model) | job / naive | GPU util mean / max % | target x real time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        util = (f"{r['gpu_util_mean']:.0f} / {r['gpu_util_max']:.0f}" if r.get("gpu_util_mean") is not None else "")
        lines.append(
            f"| {r['operation']} | {r['rate']:g} | {r['decode']:.1f} | {r['model']:.1f} | {r['job']:.1f} | "
            f"{r['naive']:.1f} | {r['job_vs_bound']:.2f} | {r['job_vs_naive']:.2f} | {util} | {r['target']:g} |")
    lines += ["", "The naive loops run insightface's FaceAnalysis on onnxruntime's CPU build (the only one "
              "there) and open_clip/YOLOX frame by frame on the GPU.", ""]
    (args.out / "gpu_bench.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
