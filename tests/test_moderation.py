"""StartContentModeration / GetContentModeration and DetectModerationLabels.

* NudeNet wrapper: batched, on rekolab's sessions, same detections as the nudenet package.
* The mapping, with controlled detector outputs: the analyzer directly, and a whole job
  on a numbered video whose frame numbers decide what the (patched) detector says.
* False positives: no moderation label at the default confidence on any real clip
  (sampled at 0.5 fps) or still in ../shared/media.
* The CLIP path: open_clip's ViT-S-32-alt with random weights from a checkpoint file,
  through the real loading and encoding code; its scores are then controlled.
"""
from __future__ import annotations

import numpy as np
import pytest

import rekolab as rk
from conftest import MEDIA, need
from rekolab.analysis import moderation as M
from rekolab.models.nudenet import NUDENET_CLASSES, NudeDetection, NudeNetDetector
from rekolab.testing import all_pages, body, numbered_video, read_frame_number, validate_response

pytest.importorskip("nudenet")

CLIPS = sorted((MEDIA / "video").glob("*.mp4"))
STILLS = sorted(p for folder in ("faces", "scenes", "celebrities") for p in (MEDIA / folder).glob("*")
                if p.suffix.lower() in (".jpg", ".png"))


def det(*items, hw=(240, 320)):
    """A NudeDetection from (class name, score, (x1, y1, x2, y2)) items."""
    boxes = np.array([b for _, _, b in items], np.float32).reshape(-1, 4)
    return NudeDetection(boxes, np.array([s for _, s, _ in items], np.float32),
                         np.array([NUDENET_CLASSES.index(c) for c, _, _ in items], np.int64))


class FakeNudeNet:
    """Stands in for the detector: ``outputs(frame_rgb) -> NudeDetection``."""

    name = "fake-nudenet"
    path = "fake"

    def __init__(self, outputs):
        self.outputs = outputs

    def detect_batch(self, frames, rgb=False):
        return [self.outputs(f if rgb else np.ascontiguousarray(f[:, :, ::-1])) for f in frames]


# -- the wrapper -----------------------------------------------------------------------------


def test_wrapper_matches_the_nudenet_package():
    import cv2
    from nudenet import NudeDetector

    ref, ours = NudeDetector(), NudeNetDetector(batch_size=3)
    images = [cv2.imread(str(need(MEDIA / p))) for p in ("scenes/person.jpg", "faces/insightface_t1.jpg",
                                                        "faces/obama.jpg")]
    for image, got in zip(images, ours.detect_batch(images)):  # one batched run
        want = ref.detect(image)
        assert got.class_names == [d["class"] for d in want]
        assert np.allclose(got.scores, [d["score"] for d in want], atol=1e-4)
        x, y, w, h = np.array([d["box"] for d in want], float).T
        assert np.allclose(got.boxes_xyxy, np.stack([x, y, x + w, y + h], 1), atol=2.01)  # nudenet truncates x and w


def test_taxonomy_file():
    tax = M.moderation_taxonomy()
    assert tax.categories == ["Explicit", "Non-Explicit Nudity of Intimate parts and Kissing",
                              "Swimwear or Underwear", "Violence", "Visually Disturbing", "Drugs & Tobacco",
                              "Alcohol", "Rude Gestures", "Gambling", "Hate Symbols"]
    for name, parent, level in zip(tax.names, tax.parents, tax.levels):
        assert (level == 1) == (parent == "")
        if parent:
            assert tax.levels[tax.index[parent]] == level - 1
    assert set(tax.nudenet) == set(NUDENET_CLASSES)


# -- the mapping with controlled detector outputs ---------------------------------------------


def test_mapping_with_controlled_outputs():
    fake = FakeNudeNet(lambda f: det(("MALE_GENITALIA_EXPOSED", 0.9, (32, 24, 96, 72)),
                                     ("MALE_BREAST_EXPOSED", 0.7, (0, 0, 160, 120)),
                                     ("FEMALE_BREAST_EXPOSED", 0.4, (0, 0, 10, 10)),   # under 50
                                     ("FACE_MALE", 0.95, (0, 0, 50, 50)),              # not moderated
                                     ("BUTTOCKS_COVERED", 0.99, (0, 0, 50, 50))))      # not moderated
    an = M.ContentModerationAnalyzer({"Models": ["NUDENET"]}, nudenet=fake)
    types, rows = an.frame_rows([np.zeros((240, 320, 3), np.uint8)])[0]
    got = {r["Name"]: r for r in rows}
    assert types == []
    assert sorted(got) == sorted([
        "Exposed Male Genitalia", "Explicit Nudity", "Explicit",
        "Exposed Male Nipple", "Non-Explicit Nudity", "Non-Explicit Nudity of Intimate parts and Kissing"])
    g = got["Exposed Male Genitalia"]
    assert (g["ParentName"], g["TaxonomyLevel"], g["Source"]) == ("Explicit Nudity", 3, ["NUDENET"])
    assert g["Confidence"] == pytest.approx(90, abs=1e-4)
    assert g["Instances"] == [{"BoundingBox": {"Width": 0.2, "Height": 0.2, "Left": 0.1, "Top": 0.1},
                               "Confidence": pytest.approx(90, abs=1e-4)}]
    assert (got["Explicit Nudity"]["TaxonomyLevel"], got["Explicit"]["ParentName"]) == (2, "")
    assert got["Explicit"]["Source"] == ["CHILD"] and got["Explicit"]["Confidence"] == pytest.approx(90, abs=1e-4)
    assert got["Non-Explicit Nudity"]["Confidence"] == pytest.approx(70, abs=1e-4)
    # a lower MinConfidence reports the 0.4 box too
    low = M.ContentModerationAnalyzer({"Models": ["NUDENET"], "MinConfidence": 30}, nudenet=fake)
    assert "Exposed Female Nipple" in {r["Name"] for r in low.frame_rows([np.zeros((240, 320, 3), np.uint8)])[0][1]}
    cats = an.models()["Categories"]
    assert cats["Explicit"] == {"Ran": True, "Models": ["NUDENET"]}
    assert cats["Violence"]["Ran"] is False and "not in Models" in cats["Violence"]["Reason"]
    assert "no model here" in cats["Swimwear or Underwear"]["Reason"]


@pytest.fixture(scope="module")
def controlled_job(tmp_path_factory):
    """A job on a 30-frame numbered video (SampleRate 25: every frame) whose detector
    sees an exposed buttock in frames 0-9 and 20-29."""
    from conftest import module_env

    with module_env(tmp_path_factory) as home:
        video = numbered_video(home / "n.mp4", frames=30, fps=25)
        mp = pytest.MonkeyPatch()

        def outputs(frame_rgb):
            i = read_frame_number(frame_rgb)
            return det(("BUTTOCKS_EXPOSED", 0.6 + i / 100, (0, 0, 160, 120))) if i < 10 or i >= 20 else det()

        mp.setattr(NudeNetDetector, "__init__", lambda self, *a, **k: None)
        mp.setattr(NudeNetDetector, "detect_batch", lambda self, frames, rgb=False: FakeNudeNet(outputs).detect_batch(frames, rgb))
        mp.setattr(NudeNetDetector, "name", "fake", raising=False)
        mp.setattr(NudeNetDetector, "path", "fake", raising=False)
        try:
            client = rk.client()
            job_id = client.start_content_moderation(Video={"Path": str(video)}, SampleRate=25)["JobId"]
            record = client.jobs.wait(job_id)
        finally:
            mp.undo()  # the real detector for every other test
        assert record.status == "SUCCEEDED", record.status_message
        yield client, job_id, home


def items(client, job_id, **kw):
    return [i for p in all_pages(client.get_content_moderation, "GetContentModeration", JobId=job_id, **kw)
            for i in p["ModerationLabels"]]


def test_job_timestamps_segments_and_sorting(controlled_job, monkeypatch):
    client, job_id, home = controlled_job
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    first = client.get_content_moderation(JobId=job_id, MaxResults=7)
    validate_response("GetContentModeration", first)
    assert first["ModerationModelVersion"].startswith("rekolab-moderation/1 taxonomy=7.0")
    assert first["GetRequestMetadata"] == {"SortBy": "TIMESTAMP", "AggregateBy": "TIMESTAMPS"}
    rows = items(client, job_id)
    assert len(rows) == 20 * 3  # L3 + its L2 and L1, in 20 frames
    ts = sorted({r["Timestamp"] for r in rows})
    assert ts == [i * 40 for i in list(range(10)) + list(range(20, 30))]
    assert [r["ModerationLabel"]["Name"] for r in rows[:3]] == ["Explicit", "Explicit Nudity", "Exposed Buttocks or Anus"]
    by_name = items(client, job_id, SortBy="NAME")
    assert [r["ModerationLabel"]["Name"] for r in by_name] == (["Explicit"] * 20 + ["Explicit Nudity"] * 20
                                                              + ["Exposed Buttocks or Anus"] * 20)
    segs = items(client, job_id, AggregateBy="SEGMENTS")
    leaf = [s for s in segs if s["ModerationLabel"]["Name"] == "Exposed Buttocks or Anus"]
    assert [(s["StartTimestampMillis"], s["EndTimestampMillis"], s["DurationMillis"]) for s in leaf] == \
        [(0, 360, 360), (800, 1160, 360)]
    assert leaf[1]["ModerationLabel"]["Confidence"] == pytest.approx(89, abs=1e-3)  # max of 0.80..0.89
    assert rk.Job(job_id, client).to_pandas().shape[0] == 60
    lanes = rk.Job(job_id, client).view().lanes()
    assert set(lanes.names) == {"Explicit", "Explicit Nudity", "Exposed Buttocks or Anus"}


@pytest.mark.parametrize("kw, field", [
    (dict(SortBy="CONFIDENCE"), "SortBy"), (dict(AggregateBy="FRAMES"), "AggregateBy"),
])
def test_bad_get_filters(controlled_job, kw, field, monkeypatch):
    client, job_id, home = controlled_job
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    with pytest.raises(client.exceptions.InvalidParameterException, match=field):
        client.get_content_moderation(JobId=job_id, **kw)


@pytest.mark.parametrize("kw, field", [
    (dict(MinConfidence=101), "MinConfidence"), (dict(Models=["NUDITY"]), "Models"),
    (dict(Models=[]), "Models"), (dict(SampleRate=0), "SampleRate"),
    (dict(ClipModel={"Arch": "ViT-S-32-alt", "Checkpoint": "/nope.pt"}), "ClipModel.Checkpoint"),
    (dict(ClipModel={"Size": 3}), "ClipModel"),
])
def test_bad_start_parameters(media, kw, field):
    client = rk.client()
    with pytest.raises(client.exceptions.InvalidParameterException, match=field):
        client.start_content_moderation(Video={"Path": str(media / "video" / "slow_traffic_small.mp4")}, **kw)


def test_bad_image_requests(media, tmp_path):
    client = rk.client()
    image = {"Bytes": (media / "scenes" / "dog.jpg").read_bytes()}
    with pytest.raises(client.exceptions.InvalidParameterException, match="HumanLoopConfig"):
        client.detect_moderation_labels(Image=image, HumanLoopConfig={
            "HumanLoopName": "h", "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:1:flow-definition/x"})
    with pytest.raises(client.exceptions.InvalidParameterException, match="MinConfidence"):
        client.detect_moderation_labels(Image=image, MinConfidence=120)
    with pytest.raises(client.exceptions.InvalidImageFormatException):
        client.detect_moderation_labels(Image={"Bytes": b"GIF89a not an image"})


# -- false positives on the real media ----------------------------------------------------------


@pytest.fixture(scope="module")
def real_jobs(tmp_path_factory):
    from conftest import module_env

    with module_env(tmp_path_factory) as home:
        client = rk.client()
        ids = {clip.name: client.start_content_moderation(Video={"Path": str(clip)}, SampleRate=0.5)["JobId"]
               for clip in CLIPS}
        for job_id in ids.values():
            client.jobs.wait(job_id)
        yield client, ids, home


def test_no_moderation_label_on_real_clips(real_jobs, monkeypatch):
    client, ids, home = real_jobs
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    assert len(ids) == 4, "the four clips of ../shared/media/video"
    for name, job_id in ids.items():
        pages = all_pages(client.get_content_moderation, "GetContentModeration", JobId=job_id)
        assert pages[0]["JobStatus"] == "SUCCEEDED", (name, pages[0].get("StatusMessage"))
        assert [i for p in pages for i in p["ModerationLabels"]] == [], name
        models = client.jobs.record(job_id).models
        assert models["NudeNet"]["Ran"] and models["Categories"]["Explicit"]["Ran"]
        # offline and no CLIP configured: the other categories say why they did not run
        assert models["Clip"]["Ran"] is False
        assert models["Categories"]["Violence"]["Ran"] is False
        assert "CLIP did not run" in models["Categories"]["Violence"]["Reason"]


def test_no_moderation_label_on_real_stills():
    client = rk.client()
    assert len(STILLS) >= 15
    for path in STILLS:
        r = client.detect_moderation_labels(Image={"Bytes": path.read_bytes()})
        validate_response("DetectModerationLabels", r)
        assert r["ModerationLabels"] == [], path.name
    # the notebook verb takes a PIL image or an RGB array too; scenes/person.jpg is
    # NudeNet's one false positive here (BUTTOCKS_EXPOSED 38%: under the default 50)
    from PIL import Image

    pil = Image.open(MEDIA / "scenes" / "person.jpg")
    low = rk.detect_moderation_labels(pil, min_confidence=30)
    assert [x["Name"] for x in low["ModerationLabels"]] == ["Explicit", "Explicit Nudity", "Exposed Buttocks or Anus"]
    assert body(rk.detect_moderation_labels(np.asarray(pil), min_confidence=30)) == body(low)


# -- the CLIP path: a real open_clip architecture with random weights --------------------------------


def test_clip_path_with_random_weights(media, tmp_path_factory, monkeypatch):
    from test_clip import TEST_ARCH, _random_checkpoint

    from rekolab.models.clip import ClipModel

    checkpoint = _random_checkpoint(tmp_path_factory, TEST_ARCH)
    tax = M.moderation_taxonomy()
    clip_names = [n for n, p in zip(tax.names, tax.prompts) if p]
    real = ClipModel.confidence
    seen = {}

    def controlled(self, image_emb, text_emb, calibration=None):
        conf = real(self, image_emb, text_emb, calibration)  # the real scoring ran on real embeddings
        seen.setdefault(text_emb.shape[0], conf.shape)
        out = np.full_like(conf, 1.0)
        if text_emb.shape[0] == len(clip_names):
            out[:, clip_names.index("Weapons")] = 80.0
            out[:, clip_names.index("Smoking")] = 60.0
        else:  # ContentTypes: Animated, Illustrated
            out[:, 0] = 70.0
        return out

    monkeypatch.setattr(ClipModel, "confidence", controlled)
    clip_model = {"Arch": TEST_ARCH, "Checkpoint": str(checkpoint)}
    client = rk.client()
    job_id = client.start_content_moderation(Video={"Path": str(media / "video" / "slow_traffic_small.mp4")},
                                             SampleRate=1, ClipModel=clip_model, Models=["CLIP"])["JobId"]
    record = client.jobs.wait(job_id)
    assert record.status == "SUCCEEDED", record.status_message
    assert record.models["Clip"]["Ran"] and record.models["Clip"]["Arch"] == TEST_ARCH
    assert record.models["Categories"]["Violence"] == {"Ran": True, "Models": ["CLIP"]}
    assert "NudeNet did not run" in record.models["Categories"]["Explicit"]["Reason"]
    found = items(client, job_id)
    frames = record.sampled_frames
    names = [i["ModerationLabel"]["Name"] for i in found]
    for name in ("Weapons", "Violence", "Smoking", "Drugs & Tobacco Paraphernalia & Use", "Drugs & Tobacco"):
        assert names.count(name) == frames, name
    assert len(found) == 5 * frames
    assert all(i["ContentTypes"] == [{"Confidence": 70.0, "Name": "Animated"}] for i in found)
    assert set(seen) == {len(clip_names), 2}  # labels and ContentTypes were both scored
    r = client.detect_moderation_labels(Image={"Bytes": (media / "scenes" / "dog.jpg").read_bytes()},
                                        ClipModel=clip_model, Models=["CLIP"])
    validate_response("DetectModerationLabels", r)
    assert r["ModerationLabels"][0] == {"Confidence": 80.0, "Name": "Violence", "ParentName": "", "TaxonomyLevel": 1}
    assert r["ContentTypes"] == [{"Confidence": 70.0, "Name": "Animated"}]


def test_no_clip_download_unless_named(monkeypatch, models_dir):
    """Online, with no CLIP configured: moderation runs NudeNet and does not even probe
    the hub; naming CLIP (here: Models=["CLIP"]) is what allows a download."""
    from rekolab.analysis import labels as L

    monkeypatch.delenv("REKOLAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    probes = []
    monkeypatch.setattr(L, "_host_reachable", lambda url: probes.append(url) or "unreachable (test)")
    an = M.ContentModerationAnalyzer({})
    assert an.clip is None and probes == []
    assert "no download tried" in an.models()["Clip"]["Reason"]
    with pytest.raises(M.ModerationModelsUnavailable, match="CLIP was requested"):
        M.ContentModerationAnalyzer({"Models": ["CLIP"]})
    assert len(probes) == 1  # asked for by name: the download was tried (and found no hub)
