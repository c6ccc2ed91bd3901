"""Exports for dataset work: parquet metadata, JSON Lines of the exact Get* items,
COCO JSON, the FiftyOneImageDetectionDataset layout, frames and crops with a
manifest. Real face jobs on real media."""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import rekolab as rk
from rekolab import export
from rekolab.testing import numbered_video, read_frame_number, validate_response, write_video
from rekolab.widgets import JobView

from conftest import MEDIA, module_env

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


@pytest.fixture(scope="module")
def _jobs(tmp_path_factory):
    """A clip whose first half shows Obama and whose second half shows a dog: face
    frames and negative frames. 20 frames at 25 fps, sampled at 5/s -> 0, 200, 400,
    600 ms; frames 0-9 (0-360 ms) have the face."""
    need = [MEDIA / "faces/obama.jpg", MEDIA / "scenes/dog.jpg"]
    for p in need:
        if not p.exists():
            pytest.skip(f"needs {p}")
    tmp = tmp_path_factory.mktemp("export-media")
    face = np.asarray(Image.open(need[0]).convert("RGB").resize((320, 240)))
    dog = np.asarray(Image.open(need[1]).convert("RGB").resize((320, 240)))
    video = write_video(tmp / "obama_then_dog.mp4", [face] * 10 + [dog] * 10, fps=25)
    with module_env(tmp_path_factory) as home:
        job = rk.start_face_detection(video, face_attributes="ALL", client=rk.client()).wait(progress=False)
        assert job.status == "SUCCEEDED", job.status_message
        return job.id, home, video


@pytest.fixture
def job(_jobs, monkeypatch):
    job_id, home, _ = _jobs
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    return rk.Job(job_id, rk.client())


def test_the_fixture_clip_has_faces_then_none(job):
    df = job.to_pandas()
    assert sorted(set(df["Timestamp"])) == [0, 200] and len(df) == 2
    assert job._record.sampled_frames == 4


def test_parquet_carries_request_and_video_metadata(job, tmp_path, monkeypatch):
    out = export.to_parquet(job, tmp_path / "sub" / "faces.parquet")
    table = pq.read_table(out)
    meta = json.loads(table.schema.metadata[b"rekolab"])
    assert meta["JobId"] == job.id and meta["API"] == "StartFaceDetection"
    assert meta["Request"]["FaceAttributes"] == "ALL"
    assert meta["VideoMetadata"] == job.video_metadata and meta["VideoMetadata"]["FrameWidth"] == 320
    assert table.num_rows == 2 and table.equals(job.to_arrow())
    monkeypatch.setattr(sys.modules["rekolab.client"], "_default", job._client)  # rk.export: a job id is rk.Job(id)
    by_id = pq.read_table(export.to_parquet(job.id, tmp_path / "by-id.parquet"))
    assert by_id.equals(table) and by_id.schema.metadata == table.schema.metadata


def test_jsonl_holds_the_exact_get_items(job, tmp_path):
    out = job.to_jsonl(tmp_path / "faces.jsonl")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    page = job._client.get_face_detection(JobId=job.id)
    validate_response("GetFaceDetection", page)
    assert lines == json.loads(json.dumps(page["Faces"]))
    validate_response("GetFaceDetection", {"JobStatus": "SUCCEEDED", "Faces": lines})
    assert {"AgeRange", "Gender", "Emotions"} <= set(lines[0]["Face"])


def test_jsonl_spans_pages(tmp_path, models_dir, media):
    """Pages are fetched with NextToken until the last: six faces in pages of four."""
    from rekolab.testing import still_video

    video = still_video(media / "faces/insightface_t1.jpg", tmp_path / "t1.mp4", frames=1)
    job = rk.start_face_detection(video).wait(progress=False)
    assert job._record.rows == 6
    lines = job.to_jsonl(tmp_path / "t1.jsonl", max_results=4).read_text().splitlines()
    first = job._client.get_face_detection(JobId=job.id, MaxResults=4)
    second = job._client.get_face_detection(JobId=job.id, MaxResults=4, NextToken=first["NextToken"])
    assert len(first["Faces"]) == 4 and len(second["Faces"]) == 2 and "NextToken" not in second
    assert [json.loads(x) for x in lines] == json.loads(json.dumps(first["Faces"] + second["Faces"]))


def test_coco_json_and_images(job, tmp_path):
    path = job.to_coco(tmp_path / "coco", progress=False)
    doc = json.loads(path.read_text())
    assert set(doc) >= {"info", "images", "annotations", "categories"}
    assert doc["categories"] == [{"id": 1, "name": "face", "supercategory": "face"}]
    # Every sampled frame is an image (the two dog frames are negatives).
    assert [(i["frame_number"], i["timestamp_ms"]) for i in doc["images"]] == [(0, 0), (5, 200), (10, 400), (15, 600)]
    assert len(doc["annotations"]) == 2
    rows = job.to_pandas()
    by_id = {i["id"]: i for i in doc["images"]}
    for ann, (_, row) in zip(doc["annotations"], rows.iterrows()):
        img = by_id[ann["image_id"]]
        assert img["timestamp_ms"] == row["Timestamp"] and (img["width"], img["height"]) == (320, 240)
        b = row["BoundingBox"]
        x, y, w, h = ann["bbox"]
        assert x == pytest.approx(max(b["Left"], 0) * 320, abs=0.01)
        assert y == pytest.approx(max(b["Top"], 0) * 240, abs=0.01)
        assert x + w == pytest.approx(min(b["Left"] + b["Width"], 1) * 320, abs=0.02)
        assert y + h == pytest.approx(min(b["Top"] + b["Height"], 1) * 240, abs=0.02)
        assert ann["area"] == pytest.approx(w * h, rel=1e-3) and ann["iscrowd"] == 0
        assert ann["score"] == pytest.approx(row["Confidence"] / 100, abs=1e-6)
        assert ann["attributes"]["track"] == "face 1"
    files = sorted(p.name for p in (tmp_path / "coco" / "images").iterdir())
    assert files == sorted(i["file_name"] for i in doc["images"])
    with Image.open(tmp_path / "coco" / "images" / doc["images"][0]["file_name"]) as im:
        assert im.size == (320, 240)
    assert doc["info"]["rekolab"]["JobId"] == job.id


def test_coco_from_parquet_without_the_video(job, tmp_path):
    parquet = job.to_parquet(tmp_path / "f.parquet")
    view = JobView.from_parquet(parquet, video_path=tmp_path / "gone.mp4")
    assert view.source is None
    doc = json.loads(export.to_coco(view, tmp_path / "c", images=False).read_text())
    assert [i["timestamp_ms"] for i in doc["images"]] == [0, 200] and len(doc["annotations"]) == 2
    with pytest.raises(FileNotFoundError, match="needs the video"):
        export.to_coco(view, tmp_path / "c2")


def test_fiftyone_layout(job, tmp_path):
    out = job.to_fiftyone(tmp_path / "fo", progress=False)
    labels = json.loads((out / "labels.json").read_text())
    assert labels["classes"] == ["face"]
    data = sorted(p.name for p in (out / "data").iterdir())
    assert data == sorted(f"{u}.jpg" for u in labels["labels"])  # <uuid>.<ext> per labels key
    values = [labels["labels"][u] for u in sorted(labels["labels"])]
    assert [v is None for v in values] == [False, False, True, True]  # unlabeled frames: null
    det = values[0][0]
    assert det["label"] == 0 and 0 < det["confidence"] <= 1
    x, y, w, h = det["bounding_box"]
    assert 0 <= x and 0 <= y and x + w <= 1 and y + h <= 1 and w > 0.1 and h > 0.1
    assert det["attributes"]["timestamp_ms"] == 0 and det["attributes"]["track"] == "face 1"


def test_extract_frames_are_the_analysed_frames(tmp_path, models_dir):
    """Frame files hold the very frames the job analysed (numbered-video check)."""
    video = numbered_video(tmp_path / "n.mp4", frames=60, fps=30)
    job = rk.start_face_detection(video, sample_rate=2).wait(progress=False)
    manifest = job.extract_frames(tmp_path / "frames", progress=False)
    rows = list(csv.DictReader(manifest.open()))
    assert [int(r["frame_number"]) for r in rows] == [0, 15, 30, 45]
    assert [int(r["timestamp_ms"]) for r in rows] == [0, 500, 1000, 1500]
    for r in rows:
        with Image.open(tmp_path / "frames" / r["file"]) as im:
            assert read_frame_number(np.asarray(im.convert("RGB"))) == int(r["frame_number"])
        assert r["boxes"] == "0" and (r["width"], r["height"]) == ("320", "240")


def test_extract_face_crops(job, tmp_path):
    manifest = job.extract_frames(tmp_path / "crops", crops=True, margin=0.2, progress=False)
    rows = list(csv.DictReader(manifest.open()))
    assert len(rows) == 2 and {r["lane"] for r in rows} == {"face 1"}
    for r in rows:
        with Image.open(tmp_path / "crops" / r["file"]) as im:
            w, h = im.size
        bw, bh = float(r["Width"]) * 320, float(r["Height"]) * 240
        x0, y0, x1, y1 = (int(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert (w, h) == (x1 - x0, y1 - y0)
        assert bw <= w <= bw * 1.4 + 2 and bh <= h <= bh * 1.4 + 2  # box + 20% each side, clipped
    # A frame filter by lane: nothing for a lane that does not exist.
    empty = job.extract_frames(tmp_path / "none", crops=True, lanes=["face 99"], progress=False)
    assert len(list(csv.DictReader(empty.open()))) == 0


def test_min_confidence_filters_exports(job, tmp_path):
    top = float(job.to_pandas()["Confidence"].max())
    doc = json.loads(job.to_coco(tmp_path / "c", images=False, min_confidence=top + 0.01).read_text())
    assert doc["annotations"] == [] and len(doc["images"]) == 4


def test_get_list_keys_name_real_get_operations():
    """Every job type has its Get* client method and result list key (jsonl, `show --items`)."""
    from rekolab.analysis import _ANALYZERS
    from rekolab.requests import service_model

    client = rk.client()
    assert set(export.GET_LIST_KEYS) == set(_ANALYZERS)
    for start, (method, key) in export.GET_LIST_KEYS.items():
        assert callable(getattr(client, method, None)), method
        op = service_model().operation_model(start.replace("Start", "Get", 1))
        assert key in op.output_shape.members, (start, key)


def test_views_and_exports_share_one_view_per_job(job, tmp_path, monkeypatch):
    """job.view() is built once per Job handle: plot, timeline and every export reuse
    its detections (face tracks) and its open video; nothing decodes frame times again."""
    import importlib

    pytest.importorskip("matplotlib")
    pytest.importorskip("ipywidgets")
    from rekolab.widgets import frames as frames_module
    detections_module = importlib.import_module("rekolab.widgets.detections")

    counts = {"detections": 0, "readers": 0}
    real_detections, real_init = detections_module.detections, frames_module.FrameSource.__init__

    def counting_detections(*args, **kwargs):
        counts["detections"] += 1
        return real_detections(*args, **kwargs)

    def counting_init(*args, **kwargs):
        counts["readers"] += 1
        return real_init(*args, **kwargs)

    monkeypatch.setattr(detections_module, "detections", counting_detections)
    monkeypatch.setattr(frames_module.FrameSource, "__init__", counting_init)
    view = job.view()
    assert job.view() is view and job.timeline().view is view
    job.plot()
    job.to_coco(tmp_path / "coco", progress=False)
    export.to_coco(job, tmp_path / "coco2", frames="detections", progress=False)
    job.to_fiftyone(tmp_path / "fo", progress=False)
    job.extract_frames(tmp_path / "frames", progress=False)
    job.extract_frames(tmp_path / "crops", crops=True, progress=False)
    assert counts == {"detections": 1, "readers": 1}
    # The sampled frames still are the job's decode plan.
    from rekolab.video import plan

    p = plan(view.video_path, 5)
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert [(i["frame_number"], i["timestamp_ms"]) for i in doc["images"]] == \
        list(zip(p.indices.tolist(), p.timestamps_ms.tolist()))


# -- the exports read by their real consumers --------------------------------------------------
def test_exports_load_in_pycocotools_duckdb_and_polars(job, tmp_path):
    pycocotools = pytest.importorskip("pycocotools.coco")
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")

    coco = pycocotools.COCO(str(job.to_coco(tmp_path / "coco", progress=False)))
    assert len(coco.getImgIds()) == 4 and len(coco.getAnnIds()) == 2  # 4 sampled frames, 2 faces
    (cat,) = coco.loadCats(coco.getCatIds())
    assert cat["name"] == "face"
    ann = coco.loadAnns(coco.getAnnIds())[0]
    img = coco.loadImgs(ann["image_id"])[0]
    x, y, w, h = ann["bbox"]
    assert 0 <= x < x + w <= img["width"] and 0 <= y < y + h <= img["height"] and ann["area"] == pytest.approx(w * h)
    # COCOeval scores the export against itself as detections: a perfect bbox AP.
    from pycocotools.cocoeval import COCOeval

    dets = coco.loadRes([{k: a[k] for k in ("image_id", "category_id", "bbox", "score")}
                         for a in coco.loadAnns(coco.getAnnIds())])
    ev = COCOeval(coco, dets, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)

    path = job.to_parquet(tmp_path / "faces.parquet")
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*), min(Timestamp), max(BoundingBox.Left) FROM read_parquet('{path}')").fetchone()
    df = job.to_pandas()
    assert rows[0] == 2 and rows[1] == 0 and rows[2] == pytest.approx(max(b["Left"] for b in df["BoundingBox"]))
    lf = pl.read_parquet(path).unnest("BoundingBox")
    assert lf.height == 2 and {"Left", "Top", "Width", "Height"} <= set(lf.columns)
    assert lf["Timestamp"].to_list() == df["Timestamp"].tolist()


def test_fiftyone_imports_the_fiftyone_export(job, tmp_path):
    """FiftyOne's own importer reads the export: samples = sampled frames, detections =
    face rows. Offline, `pip install fiftyone` installs but its fiftyone-db wheel cannot
    fetch MongoDB (it downloads the mongod binary at install time: "Name or service not
    known"), so FiftyOne cannot create a dataset and this test skips saying so."""
    fo = pytest.importorskip("fiftyone", reason="FiftyOne is not installed (pip install fiftyone; offline, "
                             "its fiftyone-db wheel cannot download MongoDB, so the test would skip anyway)")
    out = job.to_fiftyone(tmp_path / "fo", progress=False)
    try:
        ds = fo.Dataset.from_dir(str(out), fo.types.FiftyOneImageDetectionDataset)
    except fo.core.config.FiftyOneConfigError as exc:  # no mongod: fiftyone-db could not fetch it offline
        pytest.skip(f"FiftyOne has no database here: {exc}")
    try:
        assert len(ds) == 4 and ds.count("ground_truth.detections") == 2
    finally:
        ds.delete()
