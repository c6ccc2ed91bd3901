"""Text detection: DetectText and StartTextDetection/GetTextDetection on text
rendered by recipe (OpenCV's Hershey fonts, several sizes and positions) over
real video frames."""
from __future__ import annotations

import json
from fractions import Fraction

import cv2
import numpy as np
import pytest

import rekolab as rk
from conftest import MEDIA, module_env, need
from rekolab.analysis.text import TextFilters, detect_text, parse_filters
from rekolab.testing import all_pages, clip_frames, draw_text, validate_response, write_video

VIDEO = MEDIA / "video"
W, H = 640, 360
#: (text, bottom-left org, Hershey font, scale, background box)
TEXTS = [
    ("BREAKING NEWS", (30, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0)),
    ("Live from the East Room", (40, 120), cv2.FONT_HERSHEY_DUPLEX, 0.8, (0, 0, 0)),
    ("rekolab 2026", (300, 200), cv2.FONT_HERSHEY_TRIPLEX, 0.9, (0, 0, 0)),
    ("Gate 12 Boarding", (360, 300), cv2.FONT_HERSHEY_COMPLEX, 0.7, None),
]


def _frame(index: int = 100) -> tuple[np.ndarray, dict[str, tuple]]:
    rgb = clip_frames(need(VIDEO / "short_hamilton_clip.mp4"), index, 1, (W, H))[0]
    boxes = {}
    for text, org, font, scale, bg in TEXTS:
        boxes[text] = draw_text(rgb, text, org, font=font, scale=scale, background=bg)
    return rgb, boxes


class _Replay:
    """The real OCR's lines for one image, read once and replayed (filters are
    applied after OCR; this keeps the filter tests to one model run)."""

    version = "replay"

    def __init__(self, ocr, bgr):
        self.lines = ocr.read(bgr)

    def read(self, image_bgr):
        return self.lines


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with module_env(tmp_path_factory, "text") as home:
        yield home


@pytest.fixture(scope="module")
def still(env):
    from rekolab.models.ocr import ocr_model

    rgb, boxes = _frame()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return rgb, bgr, boxes, _Replay(ocr_model(), bgr)


def _close(geometry: dict, box_px: tuple, tol: float = 0.015) -> bool:
    left, top, width, height = box_px
    bb = geometry["BoundingBox"]
    return (abs(bb["Left"] - left / W) <= tol and abs(bb["Top"] - top / H) <= 2 * tol
            and abs(bb["Left"] + bb["Width"] - (left + width) / W) <= tol
            and abs(bb["Top"] + bb["Height"] - (top + height) / H) <= 2 * tol)


def test_detect_text_reads_every_line_and_word(still):
    rgb, bgr, boxes, replay = still
    dets = detect_text(bgr, TextFilters(), replay)
    lines = [d for d in dets if d["Type"] == "LINE"]
    words = [d for d in dets if d["Type"] == "WORD"]
    by_text = {d["DetectedText"].casefold(): d for d in lines}
    for text, *_ in TEXTS:
        assert text.casefold() in by_text, f"{text!r} not read: {sorted(by_text)}"
        line = by_text[text.casefold()]
        assert _close(line["Geometry"], boxes[text]), (text, line["Geometry"], boxes[text])
        mine = [w for w in words if w["ParentId"] == line["Id"]]
        assert [w["DetectedText"].casefold() for w in mine] == text.casefold().split()
        # words tile their line left to right, inside it
        lefts = [w["Geometry"]["BoundingBox"]["Left"] for w in mine]
        assert lefts == sorted(lefts)
        lb = line["Geometry"]["BoundingBox"]
        for w in mine:
            wb = w["Geometry"]["BoundingBox"]
            assert wb["Left"] >= lb["Left"] - 0.01 and wb["Left"] + wb["Width"] <= lb["Left"] + lb["Width"] + 0.01
            assert len(w["Geometry"]["Polygon"]) == 4 and 80 <= w["Confidence"] <= 100
    ids = [d["Id"] for d in dets]
    assert ids == list(range(len(dets)))
    assert all(d["Type"] == "LINE" for d in dets[:len(lines)])  # lines first, then words
    assert {w["ParentId"] for w in words} <= {d["Id"] for d in lines}


def test_word_filter_and_regions(still):
    rgb, bgr, boxes, replay = still
    everything = {d["DetectedText"].casefold() for d in detect_text(bgr, TextFilters(), replay) if d["Type"] == "LINE"}
    base = detect_text(bgr, TextFilters(min_confidence=0), replay)
    for key, dim in (("MinBoundingBoxHeight", "Height"), ("MinBoundingBoxWidth", "Width")):
        sizes = sorted(d["Geometry"]["BoundingBox"][dim] for d in base if d["Type"] == "WORD")
        threshold = (sizes[0] + sizes[-1]) / 2
        kept = detect_text(bgr, parse_filters({"WordFilter": {key: threshold, "MinConfidence": 0}}), replay)
        words = [d for d in kept if d["Type"] == "WORD"]
        assert 0 < len(words) < len(sizes)
        assert sorted(w["DetectedText"] for w in words) == sorted(
            d["DetectedText"] for d in base if d["Type"] == "WORD" and d["Geometry"]["BoundingBox"][dim] >= threshold)
        for line in (d for d in kept if d["Type"] == "LINE"):  # a line keeps only its kept words
            assert line["DetectedText"] == " ".join(w["DetectedText"] for w in words if w["ParentId"] == line["Id"])
    # MinConfidence 0 keeps at least what 80 keeps; 100 keeps only perfect reads
    low = detect_text(bgr, parse_filters({"WordFilter": {"MinConfidence": 0}}), replay)
    assert everything <= {d["DetectedText"].casefold() for d in low if d["Type"] == "LINE"}
    assert all(d["Confidence"] >= 100 for d in detect_text(
        bgr, parse_filters({"WordFilter": {"MinConfidence": 100}}), replay) if d["Type"] == "WORD")
    # a box region around the third line, and a polygon (triangle) region around the first
    left, top, width, height = boxes["rekolab 2026"]
    region = {"BoundingBox": {"Left": (left - 5) / W, "Top": (top - 5) / H,
                              "Width": (width + 10) / W, "Height": (height + 10) / H}}
    only = detect_text(bgr, parse_filters({"RegionsOfInterest": [region]}), replay)
    assert [d["DetectedText"].casefold() for d in only] == ["rekolab 2026", "rekolab", "2026"]
    triangle = {"Polygon": [{"X": 0.0, "Y": 0.0}, {"X": 0.9, "Y": 0.0}, {"X": 0.0, "Y": 0.3}]}
    # BREAKING lies inside the triangle; NEWS (right of x~0.3 at its height) is mostly outside
    tri = detect_text(bgr, parse_filters({"RegionsOfInterest": [triangle]}), replay)
    assert [d["DetectedText"].casefold() for d in tri if d["Type"] == "WORD"] == ["breaking", "news"][:len(
        [d for d in tri if d["Type"] == "WORD"])]
    assert "live" not in {d["DetectedText"].casefold() for d in tri}


@pytest.mark.parametrize("filters, field", [
    ({"WordFilter": {"MinConfidence": 101}}, "Filters.WordFilter.MinConfidence"),
    ({"WordFilter": {"MinBoundingBoxHeight": 1.5}}, "Filters.WordFilter.MinBoundingBoxHeight"),
    ({"RegionsOfInterest": [{}]}, "Filters.RegionsOfInterest[0]"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 1},
                             "Polygon": [{"X": 0, "Y": 0}] * 3}]}, "Filters.RegionsOfInterest[0]"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": 0.5, "Top": 0, "Width": 0.6, "Height": 1}}]},
     "Filters.RegionsOfInterest[0].BoundingBox"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 0, "Height": 1}}]},
     "Filters.RegionsOfInterest[0].BoundingBox"),
    ({"RegionsOfInterest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 1}]}]},
     "Filters.RegionsOfInterest[0].Polygon"),
    ({"RegionsOfInterest": [{"Polygon": [{"X": i / 11, "Y": (i % 2) / 2} for i in range(11)]}]},
     "Filters.RegionsOfInterest[0].Polygon"),
    ({"RegionsOfInterest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 1}, {"X": 1, "Y": 0}, {"X": 0, "Y": 1}]}]},
     "Filters.RegionsOfInterest[0].Polygon"),
    ({"RegionsOfInterest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1.2, "Y": 1}, {"X": 1, "Y": 0}]}]},
     "Filters.RegionsOfInterest[0].Polygon[1].X"),
    ({"RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 1, "Height": 1}}] * 11},
     "RegionsOfInterest"),
])
def test_bad_filters_name_the_field(rekolab_home, tmp_path, filters, field):
    client = rk.client()
    png = cv2.imencode(".png", np.full((100, 100, 3), 128, np.uint8))[1].tobytes()
    for call in (lambda: client.detect_text(Image={"Bytes": png}, Filters=filters),
                 lambda: client.start_text_detection(Video={"Path": str(tmp_path / "none.mp4")}, Filters=filters)):
        with pytest.raises(rk.errors.InvalidParameterException) as e:
            call()
        assert field in str(e.value)
    assert not (rekolab_home / "jobs").exists() or not any((rekolab_home / "jobs").iterdir())


def test_detect_text_api_and_notebook_verb(still):
    rgb, bgr, boxes, _ = still
    png = cv2.imencode(".png", bgr)[1].tobytes()
    left, top, width, height = boxes["BREAKING NEWS"]
    region = {"BoundingBox": {"Left": left / W, "Top": top / H, "Width": width / W, "Height": height / H}}
    response = rk.client().detect_text(Image={"Bytes": png}, Filters={"RegionsOfInterest": [region]})
    validate_response("DetectText", response)
    assert response["TextModelVersion"].startswith("PP-OCRv4")
    assert [d["DetectedText"].casefold() for d in response["TextDetections"]] == ["breaking news", "breaking", "news"]
    assert "ParentId" not in response["TextDetections"][0]  # lines have no parent
    df = rk.detect_text(rgb, regions_of_interest=[region])  # an RGB array, as PIL gives it
    assert list(df["DetectedText"].str.casefold()) == ["breaking news", "breaking", "news"]
    validate_response("DetectText", df.attrs["response"])
    assert df.attrs["response"]["TextDetections"][1]["ParentId"] == 0


@pytest.fixture(scope="module")
def text_job(env, tmp_path_factory):
    """3 s at 25 fps over basketball frames: "GAME ON" for 1 s, nothing for 1 s,
    then "FINAL SCORE 21" and "home team" for 1 s; analysed at 1 frame a second."""
    src = need(VIDEO / "mmaction2_basketball.mp4")
    frames = clip_frames(src, 0, 75, (W, H))
    for i, f in enumerate(frames):
        if i < 25:
            draw_text(f, "GAME ON", (200, 180), font=cv2.FONT_HERSHEY_SIMPLEX, scale=1.5, thickness=3,
                      background=(0, 0, 0))
        elif i >= 50:
            draw_text(f, "FINAL SCORE 21", (40, 80), font=cv2.FONT_HERSHEY_DUPLEX, scale=1.0, background=(0, 0, 0))
            draw_text(f, "home team", (380, 320), font=cv2.FONT_HERSHEY_TRIPLEX, scale=0.9, color=(255, 255, 0),
                      background=(0, 0, 80))
    path = write_video(tmp_path_factory.mktemp("textvideo") / "text.mp4", frames, Fraction(25))
    job = rk.start_text_detection(path, sample_rate=1).wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    return job


@pytest.fixture
def job(text_job, env, monkeypatch):
    monkeypatch.setenv("REKOLAB_HOME", str(env))  # the module's job lives there
    return text_job


def test_text_job_pages_and_lines(job):
    text_job = job
    client = text_job._client
    pages = all_pages(client.get_text_detection, "GetTextDetection", JobId=text_job.id, MaxResults=3)
    items = [i for p in pages for i in p["TextDetections"]]
    assert len(pages) > 1 and all(p["TextModelVersion"] == pages[0]["TextModelVersion"] for p in pages)
    assert all(isinstance(p["VideoMetadata"], dict) for p in pages)
    lines = {(i["Timestamp"], i["TextDetection"]["DetectedText"].casefold())
             for i in items if i["TextDetection"]["Type"] == "LINE"}
    assert lines == {(0, "game on"), (2000, "final score 21"), (2000, "home team")}
    df = text_job.to_pandas()
    assert len(df) == len(items)
    words = df[df["Type"] == "WORD"]
    assert sorted(words["DetectedText"].str.casefold()) == sorted("game on final score 21 home team".split())


def test_text_timeline_lanes_and_exports(job, tmp_path):
    text_job = job
    lanes = text_job.view().lanes()
    assert sorted(n.casefold() for n in lanes.names) == ["final score 21", "game on", "home team"]
    out = text_job.to_jsonl(tmp_path / "text.jsonl")
    assert len(out.read_text().splitlines()) == len(text_job.to_pandas())
    import pyarrow.parquet as pq

    table = pq.read_table(text_job.to_parquet(tmp_path / "text.parquet"))
    assert table.num_rows == len(text_job.to_pandas()) and b"rekolab" in table.schema.metadata
    coco = json.loads(text_job.to_coco(tmp_path / "coco", images=False, progress=False).read_text())
    assert len(coco["annotations"]) == 3 and [c["name"] for c in coco["categories"]] == ["text"]
    assert {i["timestamp_ms"] for i in coco["images"]} == {0, 1000, 2000}  # every sampled frame


def test_cli_text_region_usage(tmp_path, capsys):
    from rekolab import cli

    video = write_video(tmp_path / "v.mp4", [np.zeros((64, 64, 3), np.uint8)] * 2, 25)
    assert cli.main(["text", str(video), "--region", "0,0,1", "-q"]) == 2
    assert "LEFT,TOP,WIDTH,HEIGHT" in capsys.readouterr().err
    assert cli.main(["text", str(video), "--region", "0.5,0,0.8,1", "-q"]) == 1  # outside the image: refused
    assert "Filters.RegionsOfInterest[0].BoundingBox" in capsys.readouterr().err
