"""Exact collection search at scale: latency of ``search_embeddings`` over 100k faces.

    python bench/bench_collections.py [--faces 100000] [--dim 128] [--queries 300]

Builds a collection of random unit vectors (the dimension of the offline
MobileFaceNet, 128; pass --dim 512 for buffalo_l) in a temporary rekolab home,
the way IndexFaces stores them (in batches of 1000, so the segment merging runs),
then times:

* one query (a stream processor's face, or SearchFacesByImage after detection),
  at FaceMatchThreshold 80 -- p50 / p95 / max over ``--queries`` calls;
* a batch of 16 queries in one call (a frame with many faces);
* threshold 0 with MaxFaces 4096 (the worst case: 4096 match dicts built);
* the first search in a fresh process (opens and maps the segments);
* appending one face to the 100k collection (IndexFaces' storage part).

Half the queries are noisy copies of stored faces (a match exists), half are new
random vectors (no match), so both the hit and the miss paths are timed. Prints a
Markdown report.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def _unit(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="rekolab-bench-collections-")
    os.environ["REKOLAB_HOME"] = home
    from rekolab import collections as C

    rng = np.random.default_rng(0)
    C.create_collection("bench")
    stored = _unit(rng, args.faces, args.dim)
    t0 = time.perf_counter()
    for start in range(0, args.faces, 1000):
        chunk = stored[start:start + 1000]
        faces = [{"BoundingBox": {"Width": 0.1, "Height": 0.1, "Left": 0.4, "Top": 0.4}, "Confidence": 99.0,
                  "ExternalImageId": f"person-{start + i}"} for i in range(len(chunk))]
        C.add_faces("bench", chunk, faces, image_sha=f"bench-{start}")
    build_s = time.perf_counter() - t0
    manifest = C._view("bench").manifest

    hits = stored[rng.integers(0, args.faces, args.queries // 2)] + 0.02 * _unit(rng, args.queries // 2, args.dim)
    queries = np.concatenate([hits, _unit(rng, args.queries - len(hits), args.dim)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    C.search_embeddings("bench", queries[:5])  # warm-up: map the segments
    one, one_cpu, found, spurious = [], [], 0, 0
    for k, q in enumerate(queries):
        t, c = time.perf_counter(), time.process_time()
        r = C.search_embeddings("bench", q[None, :], 80.0)
        one.append((time.perf_counter() - t) * 1000)
        one_cpu.append((time.process_time() - c) * 1000)
        if k < len(hits):
            found += bool(r[0])
        else:
            spurious += len(r[0])
    batch = []
    for i in range(0, len(queries) - 16, 16):
        t = time.perf_counter()
        C.search_embeddings("bench", queries[i:i + 16], 80.0)
        batch.append((time.perf_counter() - t) * 1000)
    worst = []
    for q in queries[:20]:
        t = time.perf_counter()
        r = C.search_embeddings("bench", q[None, :], 0.0, 4096)
        worst.append((time.perf_counter() - t) * 1000)
    assert len(r[0]) == 4096

    code = ("import time, numpy as np; from rekolab import collections as C;"
            f"q = np.load({os.path.join(home, 'q.npy')!r});"
            "t = time.perf_counter(); C.search_embeddings('bench', q[:1]); print((time.perf_counter() - t) * 1000)")
    np.save(os.path.join(home, "q.npy"), queries[:1])
    cold = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env=dict(os.environ)).stdout.strip().splitlines()[-1])

    append = []
    for i in range(20):
        e = _unit(rng, 1, args.dim)
        t = time.perf_counter()
        C.add_faces("bench", e, [{"BoundingBox": {"Width": 0.1, "Height": 0.1, "Left": 0.4, "Top": 0.4},
                                  "Confidence": 99.0}], image_sha=f"append-{i}")
        append.append((time.perf_counter() - t) * 1000)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# Collection search benchmark: {args.faces} faces x {args.dim}-d float32\n")
    print(f"{cpus} CPU cores; numpy {np.__version__}; collection built in {build_s:.1f} s "
          f"({len(manifest['Segments'])} segments: {[s['Count'] for s in manifest['Segments']]}).\n")
    print("| what | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|")
    for name, v in [("1 query, threshold 80", one), ("16 queries in one call, threshold 80", batch),
                    ("1 query, threshold 0, MaxFaces 4096", worst), ("append 1 face (IndexFaces storage)", append)]:
        print(f"| {name} | {statistics.median(v):.1f} | {_pct(v, 95):.1f} | {max(v):.1f} |")
    print(f"| first search in a fresh process (open + map) | {cold:.1f} | | |")
    print(f"\nCPU time (all threads) of one query, threshold 80: p50 {statistics.median(one_cpu):.1f} ms, "
          f"p95 {_pct(one_cpu, 95):.1f} ms; load average at the end: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}.")
    print(f"\n{found} of {len(hits)} noisy copies of stored faces found their face. The {len(queries) - len(hits)} "
          f"random queries matched {spurious} stored faces in all: random {args.dim}-d unit vectors pass "
          "cosine 0.40 (Similarity 80) with probability ~1e-6 each, which over 100k faces is not zero.")


if __name__ == "__main__":
    main()
