"""The ``rekolab`` command.

    rekolab faces VIDEO [-o faces.parquet] [--attributes ALL] [--sample-rate 5]
    rekolab jobs                 # list jobs in the rekolab home
    rekolab show JOB_ID          # one job's record

Exit codes: 0 success; 1 the job FAILED or the request was refused (the
Rekognition error code and message are printed); 2 bad command line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _summary(df) -> str:
    """A per-second table: sampled frames with faces, faces, best confidence."""
    import pandas as pd

    if df.empty:
        return "no faces found"
    seconds = (df["Timestamp"].astype("int64") // 1000).rename("second")
    table = df.assign(second=seconds).groupby("second").agg(
        frames=("Timestamp", "nunique"), faces=("Timestamp", "size"),
        max_confidence=("Confidence", "max"))
    table["faces_per_frame"] = (table["faces"] / table["frames"]).round(2)
    table["max_confidence"] = table["max_confidence"].astype(float).round(1)
    with pd.option_context("display.width", 120):
        return table.to_string()


def _run_job(args, start) -> int:
    import rekolab as rk

    try:
        job = start()
    except rk.ClientError as e:
        print(f"error: {e.response['Error']['Code']}: {e.response['Error']['Message']}", file=sys.stderr)
        return 1
    job.wait(progress=not args.quiet)
    if job.status != "SUCCEEDED":
        print(f"error: job {job.id} FAILED: {job.status_message}", file=sys.stderr)
        return 1
    df = job.to_pandas()
    meta = job.video_metadata
    print(f"job {job.id}  {job.operation}  {meta['FrameWidth']}x{meta['FrameHeight']} "
          f"{meta['Codec']} {meta['DurationMillis'] / 1000:.2f} s, "
          f"{job._record.sampled_frames} frames sampled, {len(df)} rows")
    print(_summary(df))
    if args.output:
        out = job.to_parquet(args.output)
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rekolab", description="Amazon Rekognition Video, run locally.")
    sub = parser.add_subparsers(dest="command", required=True)
    faces = sub.add_parser("faces", help="detect faces in a video (StartFaceDetection)")
    faces.add_argument("video", help="a local video file or s3:// URL")
    faces.add_argument("-o", "--output", type=Path, help="write the results to this parquet file")
    faces.add_argument("--attributes", choices=["DEFAULT", "ALL"], default="DEFAULT")
    faces.add_argument("--sample-rate", type=float, default=None,
                       help="frames analysed per second of video (default 5)")
    faces.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub.add_parser("jobs", help="list the jobs in the rekolab home")
    show = sub.add_parser("show", help="show one job's record")
    show.add_argument("job_id")
    args = parser.parse_args(argv)

    import rekolab as rk

    if args.command == "faces":
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
        return _run_job(args, lambda: rk.start_face_detection(
            args.video, face_attributes=args.attributes, sample_rate=args.sample_rate))
    if args.command == "jobs":
        from . import store

        client = rk.client()
        jobs = sorted((store.home() / "jobs").glob("*/job.json"), key=lambda p: p.stat().st_mtime)
        for path in jobs:
            r = client.jobs.record(path.parent.name)
            video = r.request["Video"].get("Path") or r.request["Video"].get("S3Object", {}).get("Name")
            print(f"{r.job_id}  {r.operation:<28} {r.status:<11} {r.rows if r.rows is not None else '-':>6}  {video}")
        return 0
    if args.command == "show":
        try:
            r = rk.client().jobs.record(args.job_id)
        except rk.ClientError as e:
            print(f"error: {e.response['Error']['Code']}: {e.response['Error']['Message']}", file=sys.stderr)
            return 1
        print(json.dumps(r.__dict__, indent=2, default=str))
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
