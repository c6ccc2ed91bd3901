"""The ``rekolab`` command.

    rekolab faces VIDEO|FOLDER [-o faces.parquet|faces.jsonl|OUTDIR] [--attributes ALL] [--sample-rate 5]
    rekolab jobs [--operation faces] [--status SUCCEEDED]   # jobs in the rekolab home
    rekolab show JOB_ID [--items 3]                        # one job's record (+ its first Get* items)
    rekolab export JOB_ID FORMAT -o PATH                   # parquet, jsonl, coco, fiftyone, frames, crops
    rekolab plot JOB_ID -o timeline.png                    # the job's timeline as a picture
    rekolab serve [--host 127.0.0.1] [--port 9250] [--credentials FILE]   # Rekognition's API for any AWS SDK

    rekolab labels VIDEO|FOLDER [--min-confidence 50] [--include Car Person] [--exclude Text]
    rekolab celebrities VIDEO|FOLDER [--gallery DIR] [--min-confidence 50]
    rekolab search VIDEO|FOLDER --collection cast [--threshold 80]
    rekolab segments VIDEO|FOLDER [--types SHOT TECHNICAL_CUE] [--min-confidence 50] [--black-threshold 0.2]
    rekolab text VIDEO|FOLDER [--min-confidence 80] [--region LEFT,TOP,WIDTH,HEIGHT]
    rekolab moderation VIDEO|FOLDER [--min-confidence 50] [--models NUDENET CLIP]
    rekolab persons VIDEO|FOLDER [--sample-rate 5]

    rekolab detect-faces|detect-labels PHOTO|FOLDER   # image operations (rekolab/cli_images.py)
    rekolab compare-faces SOURCE PHOTO|FOLDER

(``rekolab COMMAND --help`` shows a command's options).

A FOLDER runs one job per video file in it (sorted by name); ``-o`` is then a
folder that receives ``<video stem>.parquet`` (or ``.jsonl`` with ``--format jsonl``).

Exit codes: 0 success; 1 a request was refused (the Rekognition error code and
message are printed), a job FAILED (its StatusMessage is printed) or an export
failed; 2 bad command line; 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
EXPORT_FORMATS = ("parquet", "jsonl", "coco", "fiftyone", "frames", "crops")


class UsageError(Exception):
    """A bad command line that argparse cannot see (exit code 2)."""


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _client_error(e) -> str:
    return f"{e.response['Error']['Code']}: {e.response['Error']['Message']}"


# -- summaries ------------------------------------------------------------------------------
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


def _lane_summary(job, top: int = 15) -> str:
    """The longest-present lanes (labels, celebrities, persons): seconds present, best confidence."""
    view = job.view()
    lanes = view.lanes()
    if not lanes.names:
        return "nothing found"
    det = view.detections
    best: dict[str, float] = {}
    for lane, conf in zip(det.column("Lane").to_pylist(), det.column("Confidence").to_pylist()):
        if conf is not None:
            best[lane] = max(best.get(lane, 0.0), conf)
    pres = lanes.presence()
    width = max(len(n) for n in lanes.names[:top])
    lines = [f"{lanes.lane_kind:<{width}}  seconds  best"]
    for name in lanes.names[:top]:
        secs = pres[lanes.index(name)] * lanes.bin_ms / 1000
        lines.append(f"{name:<{width}}  {secs:7.1f}  {best.get(name, float('nan')):5.1f}")
    if len(lanes.names) > top:
        lines.append(f"... and {len(lanes.names) - top} more")
    return "\n".join(lines)


# -- operations -----------------------------------------------------------------------------
def _faces_start(rk, args, video):
    return rk.start_face_detection(video, face_attributes=args.attributes, sample_rate=args.sample_rate)


def _faces_args(p):
    p.add_argument("--attributes", choices=["DEFAULT", "ALL"], default="DEFAULT",
                   help="FaceAttributes (default DEFAULT)")


def _labels_args(p):
    p.add_argument("--min-confidence", type=float, default=None, help="MinConfidence 0-100 (default 50)")
    p.add_argument("--include", nargs="+", metavar="LABEL", help="LabelInclusionFilters")
    p.add_argument("--exclude", nargs="+", metavar="LABEL", help="LabelExclusionFilters")
    p.add_argument("--extra-label", nargs="+", metavar="LABEL", dest="extra_labels",
                   help="open-vocabulary labels added for this job (scored by CLIP)")


def _labels_start(rk, args, video):
    general = {}
    if args.include:
        general["LabelInclusionFilters"] = args.include
    if args.exclude:
        general["LabelExclusionFilters"] = args.exclude
    return rk.start_label_detection(video, min_confidence=args.min_confidence,
                                    settings={"GeneralLabels": general} if general else None,
                                    extra_labels=args.extra_labels, sample_rate=args.sample_rate)


def _celebrities_args(p):
    p.add_argument("--gallery", help="celebrity gallery folder (default: the gallery in the rekolab home)")
    p.add_argument("--min-confidence", type=float, default=None, help="MinConfidence 0-100 (default 50)")


def _celebrities_start(rk, args, video):
    return rk.start_celebrity_recognition(video, gallery=args.gallery, min_confidence=args.min_confidence,
                                          sample_rate=args.sample_rate)


def _search_args(p):
    p.add_argument("--collection", required=True, help="CollectionId of the face collection to search")
    p.add_argument("--threshold", type=float, default=None, help="FaceMatchThreshold 0-100 (default 80)")


def _search_start(rk, args, video):
    return rk.start_face_search(video, args.collection, args.threshold, sample_rate=args.sample_rate)


def _segments_args(p):
    p.add_argument("--types", nargs="+", choices=["TECHNICAL_CUE", "SHOT"], default=["TECHNICAL_CUE", "SHOT"],
                   help="SegmentTypes (default both)")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="MinSegmentConfidence 50-100 for shots and cues (default 50)")
    p.add_argument("--black-threshold", type=float, default=None, help="BlackFrame.MaxPixelThreshold 0-1 (default 0.2)")
    p.add_argument("--black-coverage", type=float, default=None,
                   help="BlackFrame.MinCoveragePercentage 0-100 (default 99)")


def _segments_start(rk, args, video):
    return rk.start_segment_detection(video, args.types, shot_min_confidence=args.min_confidence,
                                      cue_min_confidence=args.min_confidence,
                                      black_max_pixel_threshold=args.black_threshold,
                                      black_min_coverage_percentage=args.black_coverage)


def _segment_summary(job) -> str:
    """One line per segment: type, frames, SMPTE start-end, confidence."""
    df = job.to_pandas()
    if df.empty:
        return "no segments"
    lines = []
    for row in df.itertuples():
        kind = row.ShotSegment["Index"] if row.Type == "SHOT" else row.TechnicalCueSegment["Type"]
        conf = (row.ShotSegment if row.Type == "SHOT" else row.TechnicalCueSegment)["Confidence"]
        label = f"shot {kind}" if row.Type == "SHOT" else str(kind)
        lines.append(f"{label:<16} frames {row.StartFrameNumber:>7}-{row.EndFrameNumber:<7} "
                     f"{row.StartTimecodeSMPTE} - {row.EndTimecodeSMPTE}  {conf:5.1f}")
    return "\n".join(lines)


def _text_args(p):
    p.add_argument("--min-confidence", type=float, default=None, help="WordFilter.MinConfidence 0-100 (default 80)")
    p.add_argument("--region", action="append", metavar="LEFT,TOP,WIDTH,HEIGHT",
                   help="a RegionsOfInterest box (ratios); repeat for more")


def _text_start(rk, args, video):
    regions = None
    if args.region:
        regions = []
        for text in args.region:
            try:
                left, top, width, height = (float(v) for v in text.split(","))
            except ValueError:
                raise UsageError(f"--region {text!r}: give LEFT,TOP,WIDTH,HEIGHT as four ratios") from None
            regions.append({"BoundingBox": {"Left": left, "Top": top, "Width": width, "Height": height}})
    return rk.start_text_detection(video, args.min_confidence, regions_of_interest=regions,
                                   sample_rate=args.sample_rate)
def _moderation_args(p):
    p.add_argument("--min-confidence", type=float, default=None, help="MinConfidence 0-100 (default 50)")
    p.add_argument("--models", nargs="+", choices=["NUDENET", "CLIP"], default=None,
                   help="which models to run (default: every one that can run here)")


def _moderation_start(rk, args, video):
    return rk.start_content_moderation(video, min_confidence=args.min_confidence, models=args.models,
                                       sample_rate=args.sample_rate)


def _persons_start(rk, args, video):
    return rk.start_person_tracking(video, sample_rate=args.sample_rate)


#: command -> (help, the notebook verb it runs, add-arguments, start, summary)
OPERATIONS: dict[str, tuple] = {
    "faces": ("detect faces in a video (StartFaceDetection)", "start_face_detection",
              _faces_args, _faces_start, lambda job: _summary(job.to_pandas())),
    "labels": ("detect labels in a video (StartLabelDetection)", "start_label_detection",
               _labels_args, _labels_start, _lane_summary),
    "celebrities": ("recognize celebrities from your gallery (StartCelebrityRecognition)",
                    "start_celebrity_recognition", _celebrities_args, _celebrities_start, _lane_summary),
    "search": ("search a video's faces in a collection (StartFaceSearch)", "start_face_search",
               _search_args, _search_start, _lane_summary),
    "segments": ("detect shots and technical cues on every frame (StartSegmentDetection)",
                 "start_segment_detection", _segments_args, _segments_start, _segment_summary),
    "text": ("detect text lines and words in a video (StartTextDetection)", "start_text_detection",
             _text_args, _text_start, _lane_summary),
    "moderation": ("find unsafe content in a video (StartContentModeration)", "start_content_moderation",
                   _moderation_args, _moderation_start, _lane_summary),
    "persons": ("track people through a video (StartPersonTracking)", "start_person_tracking",
                lambda p: None, _persons_start, _lane_summary),
}


def _videos(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    return [target]


def _outputs(args, videos: list[Path], folder: bool) -> list[Path | None]:
    if args.output is None:
        return [None] * len(videos)
    out = args.output
    if folder:
        if out.exists() and not out.is_dir():
            raise UsageError(f"-o {out} is a file; with a folder of videos, -o must be a folder")
        fmt = args.format or "parquet"
        return [out / f"{v.stem}.{fmt}" for v in videos]
    fmt = args.format or ("jsonl" if out.suffix.lower() in (".jsonl", ".json") else "parquet")
    if out.is_dir():
        return [out / f"{videos[0].stem}.{fmt}"]
    return [out]


def _write(job, path: Path, fmt: str | None) -> Path:
    from . import export

    path.parent.mkdir(parents=True, exist_ok=True)
    if (fmt or "").lower() == "jsonl" or (fmt is None and path.suffix.lower() in (".jsonl", ".json")):
        return export.to_jsonl(job, path)
    return export.to_parquet(job, path)


def _run_operation(args, command: str) -> int:
    import rekolab as rk

    _, _, _, start, summarize = OPERATIONS[command]
    target = Path(args.video).expanduser()
    folder = target.is_dir()
    videos = [args.video] if args.video.startswith("s3://") else _videos(target)
    if folder and not videos:
        _err(f"no video files in {target} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
        return 1
    outputs = _outputs(args, [Path(str(v)) for v in videos], folder)
    failed = 0
    for n, (video, out) in enumerate(zip(videos, outputs), start=1):
        if folder:
            print(f"[{n}/{len(videos)}] {video}")
        try:
            job = start(rk, args, str(video))
        except rk.ClientError as e:
            _err(f"{video}: {_client_error(e)}")
            failed += 1
            continue
        except ImportError as e:
            _err(str(e))
            return 1
        try:
            job.wait(progress=not args.quiet)
        except KeyboardInterrupt:
            # The job runs in this process: exiting stops it, and it reads FAILED
            # ("Job interrupted ...") with no partial results.
            _err(f"{video}: interrupted; job {job.id} stops with this process and will read FAILED")
            raise
        if job.status != "SUCCEEDED":
            _err(f"job {job.id} FAILED: {job.status_message}")
            failed += 1
            continue
        meta = job.video_metadata
        print(f"job {job.id}  {job.operation}  {meta['FrameWidth']}x{meta['FrameHeight']} "
              f"{meta['Codec']} {meta['DurationMillis'] / 1000:.2f} s, "
              f"{job._record.sampled_frames} frames sampled, {job._record.rows} rows")
        if not args.quiet or not folder:
            print(summarize(job))
        if out is not None:
            print(f"wrote {_write(job, out, args.format)}")
    if folder:
        print(f"{len(videos) - failed} of {len(videos)} videos done" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


# -- jobs, show, export, plot ---------------------------------------------------------------
def _jobs(args) -> int:
    import rekolab as rk
    from . import store

    client = rk.client()
    paths = sorted((store.home() / "jobs").glob("*/job.json"), key=lambda p: p.stat().st_mtime)
    wanted_op = _operation_name(args.operation) if args.operation else None
    shown = 0
    for path in paths:
        r = client.jobs.record(path.parent.name)
        if (wanted_op and r.operation != wanted_op) or (args.status and r.status != args.status):
            continue
        video = r.request["Video"].get("Path") or r.request["Video"].get("S3Object", {}).get("Name")
        print(f"{r.job_id}  {r.operation:<28} {r.status:<11} {r.rows if r.rows is not None else '-':>6}  {video}")
        shown += 1
    if not shown:
        print(f"no jobs in {store.home()}" + (" matching the filters" if wanted_op or args.status else ""),
              file=sys.stderr)
    return 0


def _operation_name(name: str) -> str:
    names = {"faces": "StartFaceDetection", "labels": "StartLabelDetection",
             "celebrities": "StartCelebrityRecognition", "search": "StartFaceSearch",
             "segments": "StartSegmentDetection", "text": "StartTextDetection",
             "moderation": "StartContentModeration", "persons": "StartPersonTracking"}
    return names.get(name, name if name.startswith("Start") else "Start" + name)


def _open_job(rk, job_id: str):
    import re

    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", job_id):
        raise UsageError(f"{job_id!r} is not a JobId (1-64 letters, digits, '-' or '_'); "
                         "`rekolab jobs` lists them")
    return rk.Job(job_id)


def _show(args) -> int:
    import rekolab as rk

    try:
        job = _open_job(rk, args.job_id)
    except rk.ClientError as e:
        _err(_client_error(e))
        return 1
    print(json.dumps(job._record.__dict__, indent=2, default=str))
    if args.items and job.status == "SUCCEEDED":
        from .export import GET_LIST_KEYS

        method, key = GET_LIST_KEYS[job.operation]
        page = getattr(job._client, method)(JobId=job.id, MaxResults=args.items)
        print(json.dumps(page.get(key, []), indent=2))
    return 0


def _need_succeeded(rk, job_id: str):
    job = _open_job(rk, job_id)
    job.wait(progress=False)
    if job.status != "SUCCEEDED":
        raise RuntimeError(f"job {job.id} is {job.status}: {job.status_message or 'no results'}")
    return job


def _export(args) -> int:
    import rekolab as rk
    from . import export

    try:
        job = _need_succeeded(rk, args.job_id)
        fmt = args.format
        kw = dict(min_confidence=args.min_confidence, progress=not args.quiet)
        if fmt == "parquet":
            out = export.to_parquet(job, args.output)
        elif fmt == "jsonl":
            out = export.to_jsonl(job, args.output)
        elif fmt == "coco":
            out = export.to_coco(job.view(), args.output, frames=args.frames or "sampled",
                                 images=not args.no_images, **kw)
        elif fmt == "fiftyone":
            out = export.to_fiftyone(job.view(), args.output, frames=args.frames or "sampled", **kw)
        else:
            out = export.extract_frames(job.view(), args.output, crops=fmt == "crops",
                                        frames=args.frames or ("detections" if fmt == "crops" else "sampled"),
                                        **kw)
    except rk.ClientError as e:
        _err(_client_error(e))
        return 1
    except (RuntimeError, FileNotFoundError, ValueError, OSError) as e:
        _err(str(e))
        return 1
    print(f"wrote {out}")
    return 0


def _plot(args) -> int:
    import rekolab as rk

    try:
        job = _need_succeeded(rk, args.job_id)
        fig = job.plot(min_confidence=args.min_confidence, max_lanes=args.max_lanes)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.output)
    except rk.ClientError as e:
        _err(_client_error(e))
        return 1
    except (RuntimeError, ValueError, OSError) as e:
        _err(str(e))
        return 1
    print(f"wrote {args.output}")
    return 0


# -- analyze: dataset runs (rekolab.datasets) ------------------------------------------------
def _analyze(args) -> int:
    import json

    import rekolab as rk

    operations: dict = {name: {} for name in args.operations.split(",") if name}
    for item in args.param or []:
        key, eq, value = item.partition("=")
        name, dot, param = key.partition(".")
        if not eq or not dot:
            raise UsageError(f"--param {item!r} is not OPERATION.Parameter=VALUE")
        try:
            value = json.loads(value)
        except ValueError:
            pass  # a plain string
        operations.setdefault(name, {})[param] = value
    try:
        run = rk.analyze(args.inputs if len(args.inputs) > 1 else args.inputs[0], operations, out=args.output,
                         executor=args.executor, workers=args.workers, address=args.address,
                         sample_rate=args.sample_rate, new_run=args.new_run)
        run.wait(progress=not args.quiet)
    except rk.ClientError as e:
        _err(_client_error(e))
        return 1
    c = run.counts
    print(f"{args.output}: {c['done']} done, {c['skipped']} skipped (already done), {c['failed']} failed "
          f"of {c['total']} videos")
    for row in run.failures().itertuples():
        print(f"FAILED {row.path}: {row.status_message}")
    return 1 if c["failed"] else 0


def _serve(args) -> int:
    from .server import serve
    from .server.sigv4 import load_credentials

    try:
        credentials = load_credentials(args.credentials) if args.credentials else None
        serve(args.host, args.port, credentials, allow_remote=args.allow_unauthenticated_remote,
              log_level=args.log_level)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    return 0


# -- parser ---------------------------------------------------------------------------------
def _parser(available: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rekolab", description="Amazon Rekognition Video, run locally.",
        epilog="exit codes: 0 ok; 1 request refused, job failed or export failed; 2 bad command line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in available:
        help_, _, add_args, _, _ = OPERATIONS[command]
        p = sub.add_parser(command, help=help_, description=help_)
        p.add_argument("video", help="a video file, a folder of videos, or an s3:// URL")
        p.add_argument("-o", "--output", type=Path,
                       help="write the results: FILE.parquet or FILE.jsonl (a folder for a folder of videos)")
        p.add_argument("--format", choices=["parquet", "jsonl"], default=None,
                       help="output format (default: from the -o suffix, else parquet)")
        add_args(p)
        p.add_argument("--sample-rate", type=float, default=None,
                       help="frames analysed per second of video (default 5)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    jobs = sub.add_parser("jobs", help="list the jobs in the rekolab home")
    jobs.add_argument("--operation", help="faces, labels, celebrities, search, moderation, persons (or a Start* name)")
    jobs.add_argument("--status", choices=["IN_PROGRESS", "SUCCEEDED", "FAILED"])
    show = sub.add_parser("show", help="show one job's record")
    show.add_argument("job_id")
    show.add_argument("--items", type=int, default=0, help="also print this many Get* items")
    exp = sub.add_parser("export", help="export a job's results for dataset work")
    exp.add_argument("job_id")
    exp.add_argument("format", choices=EXPORT_FORMATS,
                     help="parquet (FILE), jsonl (FILE: exact Get* items), coco (DIR: annotations.json + "
                          "images/), fiftyone (DIR: data/ + labels.json), frames / crops (DIR: JPEGs + manifest.csv)")
    exp.add_argument("-o", "--output", type=Path, required=True, help="output file or folder")
    exp.add_argument("--min-confidence", type=float, default=0.0, help="drop boxes under this (0-100)")
    exp.add_argument("--frames", choices=["sampled", "detections"], default=None,
                     help="every sampled frame (default for coco, fiftyone, frames) or only frames with boxes")
    exp.add_argument("--no-images", action="store_true", help="coco: write annotations.json only")
    exp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ana = sub.add_parser("analyze", help="analyse a dataset of videos into one partitioned parquet dataset "
                                         "(resumable; local processes or a Ray cluster)")
    ana.add_argument("inputs", nargs="+", help="video files, folders, globs ('clips/**/*.mp4') or s3:// prefixes")
    ana.add_argument("-o", "--output", type=Path, required=True, help="the dataset folder (out/<operation>/video=<id>/)")
    ana.add_argument("--operations", default="faces",
                     help="comma-separated: faces, labels, celebrities, search or Start* names (default faces)")
    ana.add_argument("-p", "--param", action="append", metavar="OP.Parameter=VALUE",
                     help="a Start* parameter, e.g. faces.FaceAttributes=ALL or search.CollectionId=cast")
    ana.add_argument("--executor", choices=["local", "ray"], default=None, help="default local (REKOLAB_EXECUTOR)")
    ana.add_argument("--workers", type=int, default=None, help="worker processes or Ray actors")
    ana.add_argument("--address", default=None, help="Ray address (default REKOLAB_RAY_ADDRESS / RAY_ADDRESS)")
    ana.add_argument("--sample-rate", type=float, default=None, help="frames analysed per second of video")
    ana.add_argument("--new-run", action="store_true", help="replace a run with other parameters in the folder")
    ana.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    srv = sub.add_parser("serve", help="serve Amazon Rekognition's JSON API for boto3, the AWS CLI and any AWS SDK",
                         description="Serve Amazon Rekognition's own wire protocol (JSON 1.1 over HTTP) on this "
                                     "machine; prints the variables to set. See docs/server.md.")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=9250, help="port (default 9250)")
    srv.add_argument("--credentials", type=Path, metavar="FILE",
                     help="verify SigV4 signatures against these keys (JSON {id: secret}, an AWS credentials "
                          "INI file or 'ID SECRET' lines); without it any well-formed signature is accepted")
    srv.add_argument("--allow-unauthenticated-remote", action="store_true",
                     help="bind a non-loopback address without --credentials (anyone who reaches it can use it)")
    srv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    plot = sub.add_parser("plot", help="save a job's timeline picture (PNG, SVG, PDF)")
    plot.add_argument("job_id")
    plot.add_argument("-o", "--output", type=Path, required=True)
    plot.add_argument("--min-confidence", type=float, default=0.0)
    plot.add_argument("--max-lanes", type=int, default=30)
    from . import cli_images  # detect-faces, detect-labels, compare-faces

    cli_images.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser(list(OPERATIONS)).parse_args(argv)
    try:
        if args.command in OPERATIONS:
            return _run_operation(args, args.command)
        if args.command in ("detect-faces", "detect-labels", "compare-faces"):
            from . import cli_images

            return cli_images.run(args)
        return {"jobs": _jobs, "show": _show, "export": _export, "plot": _plot,
                "analyze": _analyze, "serve": _serve}[args.command](args)
    except UsageError as e:
        _err(str(e))
        return 2
    except KeyboardInterrupt:
        _err("interrupted (Ctrl-C)")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
