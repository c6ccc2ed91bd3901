"""Exports for dataset work: parquet, JSON Lines, COCO, FiftyOne, frames and crops.

    job.to_parquet("faces.parquet")          # request + VideoMetadata in the schema metadata
    job.to_jsonl("faces.jsonl")              # the exact Get* items, one per line
    job.to_coco("coco/")                     # coco/annotations.json + coco/images/*.jpg
    job.to_fiftyone("fo/")                   # fo/labels.json + fo/data/*.jpg (FiftyOneImageDetectionDataset)
    job.extract_frames("frames/")            # frames/*.jpg + frames/manifest.csv
    job.extract_frames("crops/", crops=True) # one crop per box + manifest.csv

The same functions take a job (an :class:`rekolab.Job` handle) or a
:class:`~rekolab.widgets.JobView` (e.g. results read back from parquet with
``JobView.from_parquet``); :mod:`rekolab.export` (``rk.export``) takes a job id too.

**Which frames.** ``frames="sampled"`` (the default) writes every frame the job
analysed (the decode plan is recomputed from the video and the job's
``SampleRate``: the same frames, the same timestamps), so frames where nothing
was found are there as negatives; ``frames="detections"`` writes only frames with
at least one box (at ``min_confidence``).

**Boxes.** Rekognition boxes are ratios and may reach outside the frame; COCO
(pixels) and FiftyOne (ratios in [0, 1]) boxes are clipped to the frame, and a
box with nothing left inside is dropped. Detections without a box (a label seen
on the whole frame) are not COCO/FiftyOne objects; they are listed in the frames
manifest.
"""
from __future__ import annotations

import csv
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = ["to_parquet", "to_jsonl", "to_coco", "to_fiftyone", "extract_frames", "GET_LIST_KEYS"]

#: Start* operation -> (client Get* method, the result list key of its response).
GET_LIST_KEYS = {
    "StartFaceDetection": ("get_face_detection", "Faces"),
    "StartLabelDetection": ("get_label_detection", "Labels"),
    "StartCelebrityRecognition": ("get_celebrity_recognition", "Celebrities"),
    "StartFaceSearch": ("get_face_search", "Persons"),
    "StartSegmentDetection": ("get_segment_detection", "Segments"),
    "StartTextDetection": ("get_text_detection", "TextDetections"),
    "StartContentModeration": ("get_content_moderation", "ModerationLabels"),
    "StartPersonTracking": ("get_person_tracking", "Persons"),
}


def _view(obj):
    from .widgets.detections import JobView

    if isinstance(obj, JobView):
        return obj
    return obj.view()  # built once per Job handle


def _progress(iterable, total: int, desc: str, progress: bool):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="frame", leave=False)


# -- parquet and JSON Lines ---------------------------------------------------------------
def to_parquet(job, path: str | os.PathLike) -> Path:
    """The job's Arrow table as parquet; the request, VideoMetadata, JobId and models
    travel in the schema metadata under ``b"rekolab"`` (JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return job.to_parquet(path)


def to_jsonl(job, path: str | os.PathLike, *, max_results: int = 1000, **get_options) -> Path:
    """Every item of the job's Get* response, one JSON object per line, exactly as
    the Get* operation returns them (same renderer, same order; ``get_options`` such
    as ``SortBy="NAME"`` or ``AggregateBy="SEGMENTS"`` are passed on). The
    envelope (JobStatus, VideoMetadata, ...) is not repeated per line: it is in
    ``job.video_metadata`` and the parquet metadata. Pages of ``max_results``
    items are fetched and written one at a time (memory bounded by a page)."""
    try:
        method, key = GET_LIST_KEYS[job.operation]
    except KeyError:
        raise ValueError(f"no Get* operation known for {job.operation}") from None
    get = getattr(job._client, method)
    job.wait(progress=False)
    if job.status != "SUCCEEDED":
        raise RuntimeError(f"job {job.id} {job.status}: {job.status_message}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    token = None
    with open(tmp, "w", encoding="utf-8") as f:
        while True:
            kw = {"JobId": job.id, "MaxResults": max_results, **get_options}
            if token:
                kw["NextToken"] = token
            page = get(**kw)
            for item in page.get(key, []):
                f.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
            token = page.get("NextToken")
            if not token:
                break
    os.replace(tmp, path)
    return path


# -- frames -------------------------------------------------------------------------------
def _safe_stem(name: str) -> str:
    stem = Path(name).stem or "video"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:80]


def _frame_plan(view, frames: str, min_confidence: float) -> list[tuple[int, int]]:
    """(frame_number, timestamp_ms) of the frames to write, sorted by time."""
    det = view.detections
    ts = det.column("Timestamp").to_numpy()
    if frames == "sampled":
        source = view.source
        if source is None:
            raise FileNotFoundError(
                f"frames='sampled' needs the video ({view.video_path or view.video_name}: "
                f"{view._source_error}); pass frames='detections' to export only frames with results")
        from .video import DEFAULT_SAMPLE_RATE

        # The job's decode plan (video.decode.plan: same frame times, same sampling),
        # from the view's already-open video instead of opening it again.
        rate = float(view.request.get("SampleRate") or DEFAULT_SAMPLE_RATE)
        idx = source.sampled(rate)
        return list(zip(idx.tolist(), source.timestamps_ms[idx].tolist()))
    if frames != "detections":
        raise ValueError("frames must be 'sampled' or 'detections'")
    conf = np.nan_to_num(det.column("Confidence").to_numpy(zero_copy_only=False), nan=0.0)
    boxed = ~np.isnan(det.column("Left").to_numpy(zero_copy_only=False))
    keep = (conf >= min_confidence) & boxed
    fn = det.column("FrameNumber").to_numpy(zero_copy_only=False)
    out: dict[int, int] = {}
    for t, f in zip(ts[keep].tolist(), fn[keep].tolist()):
        if t in out:
            continue
        if f is None or (isinstance(f, float) and np.isnan(f)):
            f = view.source.index_at(t) if view.source is not None else -1
        out[t] = int(f)
    return sorted(((f, t) for t, f in out.items()), key=lambda x: x[1])


def _boxes_by_timestamp(view, min_confidence: float) -> dict[int, list[dict]]:
    det = view.detections
    out: dict[int, list[dict]] = {}
    for row in det.to_pylist():
        if (row["Confidence"] or 0.0) < min_confidence:
            continue
        out.setdefault(row["Timestamp"], []).append(row)
    return out


def _clip_px(row: dict, width: int, height: int) -> list[float] | None:
    """A ratio box -> COCO [x, y, w, h] in pixels, clipped to the frame."""
    x0 = min(max(row["Left"] * width, 0.0), width)
    y0 = min(max(row["Top"] * height, 0.0), height)
    x1 = min(max((row["Left"] + row["Width"]) * width, 0.0), width)
    y1 = min(max((row["Top"] + row["Height"]) * height, 0.0), height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _write_images(view, plan: list[tuple[int, int]], folder: Path, names: dict[int, str],
                  progress: bool, quality: int = 95) -> None:
    from PIL import Image

    source = view.source
    if source is None:
        raise FileNotFoundError(f"writing images needs the video ({view.video_path or view.video_name})")
    folder.mkdir(parents=True, exist_ok=True)
    by_index = {f: t for f, t in plan}
    for index, frame in _progress(source.frames(by_index), len(by_index), "frames", progress):
        Image.fromarray(frame).save(folder / names[by_index[index]], quality=quality)


def _info(view) -> dict:
    from . import __version__

    return {"description": f"rekolab {view.operation} results for {view.video_name}",
            "version": __version__, "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "rekolab": {"JobId": view.job_id, "Request": view.request, "VideoMetadata": view.video_metadata}}


def to_coco(job, out_dir: str | os.PathLike, *, images: bool = True, frames: str = "sampled",
            min_confidence: float = 0.0, progress: bool = True) -> Path:
    """COCO object-detection JSON (``out_dir/annotations.json``) with ``images``,
    ``annotations`` (``bbox`` = [x, y, w, h] in pixels) and ``categories``, plus the
    frame images in ``out_dir/images/`` (``images=False`` writes the JSON only).

    Each image carries ``frame_number``, ``timestamp_ms`` and ``video``; each
    annotation ``score`` (confidence / 100) and ``attributes`` {``track``: the
    timeline lane, ``confidence``: Rekognition's 0-100}. Categories: "face" for
    face detection, the label name for labels, the celebrity's name, the matched
    face's ExternalImageId for face search. Returns the JSON path."""
    view = _view(job)
    out_dir = Path(out_dir)
    width, height = view.frame_size
    if not images and frames == "sampled" and (view.video_path is None or not view.video_path.is_file()):
        frames = "detections"  # the JSON alone needs no video
    plan = _frame_plan(view, frames, min_confidence)
    boxes = _boxes_by_timestamp(view, min_confidence)
    stem = _safe_stem(view.video_name)
    names = {t: f"{stem}_{f:06d}.jpg" for f, t in plan}
    categories: dict[str, int] = {}
    coco_images, annotations = [], []
    for image_id, (frame_number, ts) in enumerate(plan, start=1):
        coco_images.append({"id": image_id, "file_name": names[ts], "width": width, "height": height,
                            "frame_number": frame_number, "timestamp_ms": ts, "video": view.video_name})
        for row in boxes.get(ts, []):
            if row["Left"] is None:
                continue
            bbox = _clip_px(row, width, height)
            if bbox is None:
                continue
            cat = categories.setdefault(row["Category"], len(categories) + 1)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat, "bbox": bbox,
                "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0, "segmentation": [],
                "score": None if row["Confidence"] is None else round(row["Confidence"] / 100.0, 6),
                "attributes": {"track": row["Lane"], "confidence": row["Confidence"]}})
    doc = {"info": _info(view), "licenses": [], "images": coco_images, "annotations": annotations,
           "categories": [{"id": i, "name": n, "supercategory": _supercategory(view)}
                          for n, i in categories.items()]}
    out_dir.mkdir(parents=True, exist_ok=True)
    if images:
        _write_images(view, plan, out_dir / "images", names, progress)
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def _supercategory(view) -> str:
    from .widgets.detections import LANE_KIND

    return {"face track": "face"}.get(LANE_KIND.get(view.operation, ""), LANE_KIND.get(view.operation, "object"))


def to_fiftyone(job, out_dir: str | os.PathLike, *, frames: str = "sampled", min_confidence: float = 0.0,
                progress: bool = True) -> Path:
    """A ``fiftyone.types.FiftyOneImageDetectionDataset`` folder: ``data/<uuid>.jpg``
    and ``labels.json`` = ``{"classes": [...], "labels": {uuid: [{"label": class
    index, "bounding_box": [x, y, w, h] (ratios in [0, 1]), "confidence": 0-1,
    "attributes": {...}}] or null}}``. Load it with
    ``fo.Dataset.from_dir(out_dir, fo.types.FiftyOneImageDetectionDataset)``.
    Frames with nothing found are written with ``null`` labels (unlabeled images).
    Returns ``out_dir``."""
    view = _view(job)
    out_dir = Path(out_dir)
    plan = _frame_plan(view, frames, min_confidence)
    boxes = _boxes_by_timestamp(view, min_confidence)
    stem = _safe_stem(view.video_name)
    uuids = {t: f"{stem}_{f:06d}" for f, t in plan}
    classes: dict[str, int] = {}
    labels: dict[str, list | None] = {}
    for frame_number, ts in plan:
        objs = []
        for row in boxes.get(ts, []):
            if row["Left"] is None:
                continue
            x0, y0 = max(row["Left"], 0.0), max(row["Top"], 0.0)
            x1, y1 = min(row["Left"] + row["Width"], 1.0), min(row["Top"] + row["Height"], 1.0)
            if x1 <= x0 or y1 <= y0:
                continue
            objs.append({"label": classes.setdefault(row["Category"], len(classes)),
                         "bounding_box": [x0, y0, x1 - x0, y1 - y0],
                         "confidence": None if row["Confidence"] is None else row["Confidence"] / 100.0,
                         "attributes": {"track": row["Lane"], "timestamp_ms": ts,
                                        "frame_number": frame_number}})
        labels[uuids[ts]] = objs or None
    _write_images(view, plan, out_dir / "data", {t: u + ".jpg" for t, u in uuids.items()}, progress)
    doc = {"classes": list(classes), "labels": labels}
    (out_dir / "labels.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    return out_dir


def extract_frames(job, out_dir: str | os.PathLike, *, crops: bool = False, frames: str = "sampled",
                   min_confidence: float = 0.0, margin: float = 0.2, lanes: list[str] | None = None,
                   progress: bool = True, quality: int = 95) -> Path:
    """Write the sampled frames (or, with ``crops=True``, one crop per box, grown by
    ``margin`` of its size on each side) as JPEGs, with ``manifest.csv``; returns the
    manifest's path.

    Frame manifest columns: file, timestamp_ms, frame_number, width, height,
    boxes (how many), lanes (``;``-separated: face tracks, labels, names, including
    labels without a box). Crop manifest: file, timestamp_ms, frame_number, lane,
    category, confidence, Left, Top, Width, Height (the Rekognition box, ratios),
    x0, y0, x1, y1 (the crop in frame pixels). ``lanes`` keeps only those lanes."""
    from PIL import Image

    view = _view(job)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if crops and frames == "sampled":
        frames = "detections"  # a crop needs a box
    plan = _frame_plan(view, frames, min_confidence)
    boxes = _boxes_by_timestamp(view, min_confidence)
    if lanes is not None:
        wanted = set(lanes)
        boxes = {t: [r for r in rows if r["Lane"] in wanted] for t, rows in boxes.items()}
        if crops or frames == "detections":
            plan = [(f, t) for f, t in plan if any(r["Left"] is not None for r in boxes.get(t, []))]
    source = view.source
    if source is None:
        raise FileNotFoundError(f"extracting frames needs the video ({view.video_path or view.video_name})")
    stem = _safe_stem(view.video_name)
    ts_of = {f: t for f, t in plan}
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if crops:
            writer.writerow(["file", "timestamp_ms", "frame_number", "lane", "category", "confidence",
                             "Left", "Top", "Width", "Height", "x0", "y0", "x1", "y1"])
        else:
            writer.writerow(["file", "timestamp_ms", "frame_number", "width", "height", "boxes", "lanes"])
        for index, frame in _progress(source.frames(ts_of), len(ts_of), "crops" if crops else "frames", progress):
            ts = ts_of[index]
            rows = boxes.get(ts, [])
            h, w = frame.shape[:2]
            if not crops:
                name = f"{stem}_{index:06d}.jpg"
                Image.fromarray(frame).save(out_dir / name, quality=quality)
                writer.writerow([name, ts, index, w, h, sum(r["Left"] is not None for r in rows),
                                 ";".join(dict.fromkeys(r["Lane"] for r in rows))])
                continue
            for k, r in enumerate(x for x in rows if x["Left"] is not None):
                mx, my = r["Width"] * margin, r["Height"] * margin
                x0 = int(np.floor(max(r["Left"] - mx, 0.0) * w))
                y0 = int(np.floor(max(r["Top"] - my, 0.0) * h))
                x1 = int(np.ceil(min(r["Left"] + r["Width"] + mx, 1.0) * w))
                y1 = int(np.ceil(min(r["Top"] + r["Height"] + my, 1.0) * h))
                if x1 - x0 < 2 or y1 - y0 < 2:
                    continue
                lane = re.sub(r"[^A-Za-z0-9_.-]+", "_", r["Lane"])[:60]
                name = f"{stem}_{index:06d}_{k:02d}_{lane}.jpg"
                Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1])).save(out_dir / name, quality=quality)
                writer.writerow([name, ts, index, r["Lane"], r["Category"], r["Confidence"], r["Left"],
                                 r["Top"], r["Width"], r["Height"], x0, y0, x1, y1])
    return manifest
