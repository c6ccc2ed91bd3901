"""A bounded load on `rekolab serve`: 32 concurrent boto3 clients x 50 calls each,
mixing Get* pages, List*/Describe* calls and one IndexFaces per client (a slow
synchronous call that must not hold the others up). Counts errors and writes the
latency distribution per operation into BENCHMARKS.md ("rekolab serve" section).

    python bench/bench_server.py [--clients 32] [--calls 50] [--out BENCHMARKS.md]
Needs REKOLAB_MODEL_DIR and ../shared/media (REKOLAB_SHARED). Not a test.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REKOLAB_SHARED", REPO.parent / "shared"))
SECTION = "## rekolab serve: concurrent load"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from rekolab.testing import still_video

    work = Path(tempfile.mkdtemp(prefix="rekolab-bench-server-"))
    (work / "media").mkdir()
    still_video(SHARED / "media/faces/two_people.jpg", work / "media/two.mp4", frames=10, fps=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, REKOLAB_HOME=str(work / "home"), REKOLAB_BUCKETS=f"media={work / 'media'}",
               PYTHONPATH=str(REPO))
    server = subprocess.Popen([sys.executable, "-m", "rekolab.cli", "serve", "--port", str(port),
                               "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

        def make():
            return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                                aws_access_key_id="bench", aws_secret_access_key="bench",
                                config=Config(retries={"max_attempts": 1}, max_pool_connections=4))

        rek = make()
        image = (SHARED / "media/faces/obama.jpg").read_bytes()
        rek.create_collection(CollectionId="bench")
        rek.index_faces(CollectionId="bench", Image={"Bytes": image})  # loads the models once
        job_id = rek.start_face_detection(Video={"S3Object": {"Bucket": "media", "Name": "two.mp4"}})["JobId"]
        while rek.get_face_detection(JobId=job_id)["JobStatus"] == "IN_PROGRESS":
            time.sleep(0.2)
        tokens = [None]
        page = rek.get_face_detection(JobId=job_id, MaxResults=2)
        while "NextToken" in page:
            tokens.append(page["NextToken"])
            page = rek.get_face_detection(JobId=job_id, MaxResults=2, NextToken=page["NextToken"])

        calls = {
            "GetFaceDetection": lambda c, r: c.get_face_detection(
                JobId=job_id, MaxResults=2, **({"NextToken": t} if (t := r.choice(tokens)) else {})),
            "ListCollections": lambda c, r: c.list_collections(),
            "ListFaces": lambda c, r: c.list_faces(CollectionId="bench"),
            "DescribeCollection": lambda c, r: c.describe_collection(CollectionId="bench"),
            "IndexFaces": lambda c, r: c.index_faces(CollectionId="bench", Image={"Bytes": image}),
        }
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(args.clients)

        def worker(i: int) -> None:
            r = random.Random(i)
            c = make()
            plan = [r.choice(["GetFaceDetection"] * 3 + ["ListCollections", "ListFaces", "DescribeCollection"])
                    for _ in range(args.calls - 1)]
            plan.insert(r.randrange(args.calls), "IndexFaces")
            barrier.wait()
            for op in plan:
                t0 = time.perf_counter()
                try:
                    calls[op](c, r)
                except Exception as exc:
                    with lock:
                        errors.append(f"{op}: {exc}")
                    continue
                with lock:
                    latencies[op].append((time.perf_counter() - t0) * 1000)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    total = sum(len(v) for v in latencies.values())
    lines = [SECTION, "",
             f"Run by `bench/bench_server.py` on {time.strftime('%Y-%m-%d')}: {platform.machine()}, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}. {args.clients} concurrent boto3 clients "
             f"x {args.calls} calls against one `rekolab serve` on 127.0.0.1 (one IndexFaces per client, "
             "the rest Get*/List*/Describe*); the face-detection job's results are in the home already. The clients run on the same machine as the server (boto3 signing and parsing share its CPUs), so latencies are end-to-end under full CPU contention.",
             "", f"**{total} calls in {wall:.1f} s ({total / wall:.0f} calls/s), {len(errors)} errors.**", "",
             "| operation | calls | p50 ms | p90 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    for op in sorted(latencies):
        v = sorted(latencies[op])
        q = statistics.quantiles(v, n=100, method="inclusive") if len(v) > 1 else v * 99
        lines.append(f"| {op} | {len(v)} | {q[49]:.0f} | {q[89]:.0f} | {q[98]:.0f} | {v[-1]:.0f} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    for e in errors[:10]:
        print("error:", e, file=sys.stderr)
    if args.out:
        old = args.out.read_text() if args.out.exists() else ""
        if SECTION in old:
            head, _, rest = old.partition(SECTION)
            nxt = rest.find("\n## ")
            old = head + (rest[nxt + 1:] if nxt >= 0 else "")
        args.out.write_text(old.rstrip() + "\n\n" + text)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
