"""One benchmark harness for every rekolab operation (not a test).

An operation is a row of a table (:class:`Operation`): how to run the rekolab job,
the model part alone on frames decoded beforehand, and the naive loop a user would
write with the same libraries. For each operation and clip the harness measures,
in one run (so the ratios compare like with like):

* ``decode`` -- rekolab's decoder alone (PyAV, the sampled frames, prefetch thread;
  or the operation's own :attr:`Operation.decode`, e.g. every frame for segments);
* ``model``  -- :attr:`Operation.model` on the batches decoded beforehand;
* ``job``    -- :attr:`Operation.job` (decode and models overlap);
* ``naive``  -- :attr:`Operation.naive`;

as video-seconds per wall-second (higher is better), best of ``--repeat`` runs (the
machine's other load only ever slows a run down), and the peak RSS of a fresh
process running the job on the clip and on one ``--times`` as long. An operation
with :attr:`Operation.latency` reports its own numbers instead (stream processors:
frame -> record latency).

Adding an operation is a few lines in ``bench/bench_ops.py``::

    OPERATIONS.append(Operation(
        "segments", job=lambda path, rate: _job("start_segment_detection", path, rate),
        model=..., naive=..., setup=...))

``--quick`` (repeat 1, 1 sample per second, a 2x clip) checks that every row runs;
its numbers are not benchmarks. Results go into BENCHMARKS.md between the
``<!-- bench:cpu -->`` markers (``<!-- bench:gpu -->`` for ``bench/gpu.sh``); the rest
of the file is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REKOLAB_SHARED", REPO.parent / "shared"))
CLIP = SHARED / "media" / "video" / "short_hamilton_clip.mp4"


@dataclass
class Operation:
    """One benchmarked operation.

    ``job(path, rate)`` runs the rekolab job to SUCCEEDED; ``model(batches)`` runs the
    models alone on decoded :class:`rekolab.video.FrameBatch` es; ``naive(path, rate)``
    is the loop a user would write; ``setup()`` runs once per process before any
    timing (load models, build a collection; it must be idempotent: RSS children run
    it again in a fresh process). ``latency(path, rate) -> dict`` replaces the four
    throughput timings (its dict becomes the row). ``decode(path, rate)`` -> batches:
    the frames the job decodes, when they are not the sampled plan's (segment
    detection decodes every frame); it is the decode-only column and feeds ``model``."""

    name: str
    job: Callable[[Path, float], None] | None = None
    model: Callable[[list], None] | None = None
    naive: Callable[[Path, float], None] | None = None
    setup: Callable[[], None] | None = None
    latency: Callable[[Path, float], dict] | None = None
    sample_rate: float = 5.0
    note: str = ""
    env: dict = field(default_factory=dict)  # environment for this row (and its RSS children)
    max_repeat: int | None = None  # cap on --repeat for rows whose naive loop takes minutes per run
    decode: Callable[[Path, float], Iterable] | None = None


def decode_batches(path: Path, rate: float, batch_size: int = 16) -> list:
    from rekolab.video import plan
    return list(plan(path, rate).batches(batch_size))


def time_decode(path: Path, rate: float, decode=None) -> float:
    t = time.perf_counter()
    n = sum(len(b) for b in (decode or decode_batches)(path, rate))
    assert n > 0
    return time.perf_counter() - t


def duration_s(path: Path) -> float:
    from rekolab.video import probe
    return probe(path).duration_ms / 1000


def percentile(values, p: float) -> float:
    """The p-th percentile (nearest rank); NaN for no values (every call failed: see errors)."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class _env:
    """Set an operation's environment variables for a block."""

    def __init__(self, values: dict):
        self.values, self.old = values, {}

    def __enter__(self):
        for k, v in self.values.items():
            self.old[k] = os.environ.get(k)
            os.environ[k] = str(v)

    def __exit__(self, *exc):
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def measure(op: Operation, path: Path, rate: float, repeat: int) -> dict:
    """One row: throughputs (video s / wall s) and ratios, or the op's latency dict."""
    repeat = min(repeat, op.max_repeat or repeat)
    secs = duration_s(path)
    row: dict = {"operation": op.name, "clip": path.name, "video_s": secs, "rate": rate, "runs": repeat}
    with _env(op.env):
        if op.setup:
            op.setup()
        if op.latency is not None:
            row.update(op.latency(path, rate))
            return row

        def best(fn, *args):
            return secs / min(_timed(fn, *args) for _ in range(repeat))

        row["decode"] = best(time_decode, path, rate, op.decode)
        if op.model is not None:
            batches = list((op.decode or decode_batches)(path, rate))
            op.model(batches[:1])  # warm-up (first calls build sessions and caches)
            row["model"] = best(op.model, batches)
            del batches
        if op.job is not None:
            row["job"] = best(op.job, path, rate)
        if op.naive is not None:
            row["naive"] = best(op.naive, path, rate)
    if "job" in row and "model" in row:
        row["job_vs_bound"] = row["job"] / min(row["decode"], row["model"])
    if "job" in row and "naive" in row:
        row["job_vs_naive"] = row["job"] / row["naive"]
    return row


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def rss_kib(script: Path, op: Operation, path: Path, rate: float) -> int:
    """Peak RSS (KiB, VmHWM) of a fresh process that runs ``op``'s setup and job once."""
    env = dict(os.environ, **{k: str(v) for k, v in op.env.items()})
    out = subprocess.run([sys.executable, str(script), "--rss-child", op.name, str(path), str(rate)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"RSS child for {op.name} failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def rss_child(operations: list[Operation], name: str, path: str, rate: str) -> None:
    op = next(o for o in operations if o.name == name)
    if op.setup:
        op.setup()
    op.job(Path(path), float(rate))
    print([ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0])


# --------------------------------------------------------------------------- report

THROUGHPUT_COLUMNS = [("decode", "decode only"), ("model", "model only"), ("job", "rekolab job"),
                      ("naive", "naive loop"), ("job_vs_bound", "job / min(decode, model)"),
                      ("job_vs_naive", "job / naive")]


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if digits == 2 else f"{value:.{digits}f}"


def cpu_section(rows: list[dict], rss: dict, args, when: str) -> str:
    import onnxruntime

    from rekolab.models.backend import backend
    lines = [
        "## CPU: every operation",
        "",
        f"`make bench` (`bench/bench_ops.py`) on {when}: {platform.machine()}, {_cpus()} CPU cores, Python "
        f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, backend `{backend()}`"
        f"{', QUICK MODE (smoke test, not a benchmark)' if args.quick else ''}. Video-seconds processed per "
        f"wall-second (higher is better), best of {args.repeat} unless the *best of* column says fewer; load average at the end "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        "",
        "| operation | clip | samples/s | video s | best of | " + " | ".join(t for _, t in THROUGHPUT_COLUMNS) + " |",
        "|---|---|---|---|---|" + "---|" * len(THROUGHPUT_COLUMNS),
    ]
    for r in rows:
        if "decode" not in r:
            continue
        cells = [_fmt(r.get(k), 2 if k.startswith("job_vs") else 1) for k, _ in THROUGHPUT_COLUMNS]
        lines.append(f"| {r['operation']} | {r['clip']} | {r['rate']:g} | {r['video_s']:.1f} | {r.get('runs', '')} | " + " | ".join(cells) + " |")
    latency = [r for r in rows if "p50_ms" in r]
    if latency:
        lines += ["", "| stream processor | clip | samples/s | records | frame -> record p50 ms | p95 ms | max ms |",
                  "|---|---|---|---|---|---|---|"]
        for r in latency:
            lines.append(f"| {r['operation']} | {r['clip']} | {r['rate']:g} | {r['records']} | {r['p50_ms']:.0f} | "
                         f"{r['p95_ms']:.0f} | {r['max_ms']:.0f} |")
    served = [r for r in rows if "one_rps" in r]
    if served:
        lines += ["", "| server | clip | GetFaceDetection pages | 1 client req/s | p50 ms | p95 ms | clients | calls | "
                  "mixed calls/s | GetFaceDetection p50 ms | p95 ms | IndexFaces p50 ms | errors |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in served:
            lines.append(f"| {r['operation']} | {r['clip']} | {r['pages']} | {r['one_rps']:.0f} | {r['one_p50_ms']:.0f} | "
                         f"{r['one_p95_ms']:.0f} | {r['clients']} | {r['many_calls']} | {r['many_rps']:.0f} | "
                         f"{r['many_get_p50_ms']:.0f} | {r['many_get_p95_ms']:.0f} | {r['many_index_p50_ms']:.0f} | "
                         f"{r['errors']} |")
    if rss:
        lines += ["", f"| operation | peak RSS 1x (MiB) | peak RSS {args.times}x (MiB) | ratio |", "|---|---|---|---|"]
        for name, (one, many) in rss.items():
            lines.append(f"| {name} | {one / 1024:.0f} | {many / 1024:.0f} | {many / one:.2f} |")
    lines += ["", "Targets (issue #15): job >= 0.9 x min(decode, model) and >= 2 x naive on both clips; "
              f"RSS({args.times}x) <= 1.2 x RSS(1x).", ""]
    notes = [f"*{r['operation']}*: {r['note']}" for r in rows if r.get("note")]
    lines += sorted(set(notes)) + [""]
    return "\n".join(lines)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def write_section(path: Path, marker: str, text: str) -> None:
    """Replace the ``<!-- bench:marker -->`` ... ``<!-- /bench:marker -->`` block of ``path``."""
    begin, end = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        new = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def main(operations: list[Operation], script: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="update this Markdown file (BENCHMARKS.md)")
    parser.add_argument("--times", type=int, default=10, help="length of the long clip, in clips")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for each timing")
    parser.add_argument("--only", default=None, help="comma-separated operation names (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke test: repeat 1, 1 sample/s, a 2x clip")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--jsonl", type=Path, default=None,
                        help="append every row to this JSON Lines file, and keep the rows it already holds for "
                             "the operations this run does not measure (a table built over several runs)")
    parser.add_argument("--list", action="store_true", help="print the operation names and exit")
    parser.add_argument("--gpu-md", type=Path, default=None,
                        help="put bench/gpu.sh's gpu_bench.md into --out's GPU section and exit")
    parser.add_argument("--rss-child", nargs=3, metavar=("OP", "PATH", "RATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(operations, *args.rss_child)
        return
    if args.gpu_md:
        write_section(args.out or REPO / "BENCHMARKS.md", "gpu", args.gpu_md.read_text())
        return
    if args.list:
        print("\n".join(o.name for o in operations))
        return
    if args.quick:
        args.repeat, args.times = 1, 2
    chosen = [o for o in operations if args.only is None or o.name in args.only.split(",")]
    if not chosen:
        raise SystemExit(f"no operation named {args.only!r}; --list shows them")
    os.environ.setdefault("REKOLAB_MODEL_DIR", str(SHARED / "models"))
    home = tempfile.mkdtemp(prefix="rekolab-bench-")
    os.environ["REKOLAB_HOME"] = home  # jobs, collections and caches of the bench, removed at the end
    os.environ.setdefault("REKOLAB_OFFLINE", "1")
    try:
        from rekolab.testing import looped_video

        long_clip = looped_video(CLIP, Path(home) / f"hamilton_x{args.times}.mp4", args.times)
        rows, rss = _load_jsonl(args.jsonl, [o.name for o in chosen])
        order = {o.name: k for k, o in enumerate(operations)}  # the table's row order
        for op in chosen:
            rate = 1.0 if args.quick else op.sample_rate
            for path in (CLIP, long_clip):
                row = measure(op, path, rate, args.repeat)
                row["note"] = op.note
                rows.append(row)
                _emit(args.jsonl, row)
            if op.job is not None and not args.no_rss:
                rss[op.name] = (rss_kib(script, op, CLIP, rate), rss_kib(script, op, long_clip, rate))
                _emit(args.jsonl, {"rss": op.name, "kib": rss[op.name]})
            # The table after every operation: a run stopped part-way leaves what it measured.
            rows.sort(key=lambda r: order.get(r["operation"], len(order)))  # stable: 1x before the long clip
            rss = dict(sorted(rss.items(), key=lambda kv: order.get(kv[0], len(order))))
            text = cpu_section(rows, rss, args, time.strftime("%Y-%m-%d %H:%M"))
            if args.out:
                write_section(args.out, "cpu", text)
        print(text)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _emit(path: Path | None, record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if path is not None:
        with open(path, "a") as f:
            f.write(line + "\n")


def _load_jsonl(path: Path | None, measuring: list[str]) -> tuple[list[dict], dict]:
    """Rows and RSS pairs an earlier ``--jsonl`` run recorded, for the operations
    this run does not measure again (the newest record of each wins)."""
    rows: dict = {}
    rss: dict = {}
    if path is None or not path.exists():
        return [], {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # the last line of a run killed mid-write
            continue
        if "rss" in rec:
            if rec["rss"] not in measuring:
                rss[rec["rss"]] = tuple(rec["kib"])
        elif rec["operation"] not in measuring:
            rows[(rec["operation"], rec["clip"])] = rec
    return list(rows.values()), rss


def summary(values_ms: list[float]) -> dict:
    """p50/p95/max of latencies in ms."""
    return {"records": len(values_ms), "p50_ms": statistics.median(values_ms),
            "p95_ms": percentile(values_ms, 95), "max_ms": max(values_ms)}
