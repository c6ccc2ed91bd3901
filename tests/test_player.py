"""Track identity, the player's data, static pictures, the progress bar and the
DataFrame views (headless; tests/test_browser.py drives the same widgets in Chromium)."""
from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pyarrow as pa
import pytest

import rekolab as rk
from rekolab.analysis.tracking import FaceTracker
from rekolab.testing import write_video
from rekolab.widgets import JobView, detections

from conftest import MEDIA, module_env, need

pytest.importorskip("anywidget")
pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"
FACES = MEDIA / "faces"


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    with module_env(tmp_path_factory, "pack"):
        from rekolab.models.faces import face_pack

        need(FACES / "obama.jpg")
        return face_pack()


def bundle(widget) -> dict:
    """A widget's display data (anywidget returns (data, metadata), ipywidgets data)."""
    b = widget._repr_mimebundle_()
    return b[0] if isinstance(b, tuple) else b


def embed_still(pack, path) -> np.ndarray:
    bgr = np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1].copy()
    _, _, kps = pack.detect(bgr)
    return pack.embed(bgr, kps[:1])[0]


@pytest.fixture(scope="module")
def people(pack):
    """Reference embeddings from the stills: Lin-Manuel Miranda and Obama (3 photos)."""
    return {"miranda": embed_still(pack, FACES / "lin-manuel-miranda.png"),
            "obama": np.mean([embed_still(pack, FACES / n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")], 0)}


def row_embeddings(view, pack) -> np.ndarray:
    """An embedding per row of the job's table, computed independently of any view."""
    from rekolab.analysis.identity import face_evidence

    t = view.table
    box = np.stack([t.column("BoundingBox").combine_chunks().field(c).to_numpy(zero_copy_only=False)
                    for c in ("Left", "Top", "Width", "Height")], 1)
    emb, _ = face_evidence(view.video_path, t.column("Timestamp").to_numpy(), None, box, pack=pack)
    return emb


def who_per_lane(view, row_emb, people) -> dict[str, set[str]]:
    """For each lane: the people its faces are (cosine with their stills >= 0.3, the best)."""
    det = view.detections
    out: dict[str, set[str]] = {}
    names = list(people)
    refs = np.stack([people[n] / np.linalg.norm(people[n]) for n in names])
    for lane, row in zip(det.column("Lane").to_pylist(), det.column("Row").to_pylist()):
        e = row_emb[row]
        if np.isnan(e).any():
            continue
        cos = refs @ e
        best = int(np.argmax(cos))
        if cos[best] >= 0.3:
            out.setdefault(lane, set()).add(names[best])
    return out


@pytest.fixture(scope="module")
def hamilton(tmp_path_factory):
    need(HAMILTON)
    with module_env(tmp_path_factory, "ham") as home:
        job = rk.start_face_detection(HAMILTON, client=rk.client()).wait(progress=False)
        assert job.status == "SUCCEEDED", job.status_message
        yield job, home


def test_no_face_lane_holds_two_people_on_the_hamilton_clip(hamilton, pack, people, monkeypatch):
    job, home = hamilton
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    view = job.view()
    row_emb = row_embeddings(view, pack)
    who = who_per_lane(view, row_emb, people)
    assert any(w == {"miranda"} for w in who.values()) and any(w == {"obama"} for w in who.values())
    assert all(len(w) == 1 for w in who.values()), who
    assert "embeddings" in view.identity_note
    # The defect this fixes: boxes alone join Miranda and Obama across the 7.2 s cut.
    boxes_only = JobView(view.table, view.operation, view.video_metadata, view.request, view.video_path,
                         identity="boxes")
    assert any(len(w) == 2 for w in who_per_lane(boxes_only, row_emb, people).values())
    # Embeddings alone (no cut list at all) already keep the lanes apart.
    no_cuts = JobView(view.table, view.operation, view.video_metadata, view.request, view.video_path, cuts_ms=[])
    assert all(len(w) == 1 for w in who_per_lane(no_cuts, row_emb, people).values())
    # Lanes are numbered by first appearance, and the picture is in their order.
    firsts = [int(view.detections.filter(pa.compute.equal(view.detections["Lane"], n))["Timestamp"][0].as_py())
              for n in view.lanes().names]
    assert firsts == sorted(firsts) and view.lanes().names[0] == "face 1"


def face_patch(path, size=(150, 180)) -> np.ndarray:
    """The face of a still, cropped with a margin and resized to ``size``."""
    img = Image.open(path).convert("RGB")
    from rekolab.models.faces import face_pack

    boxes, _, _ = face_pack().detect(np.asarray(img)[:, :, ::-1].copy())
    x0, y0, x1, y1 = boxes[0]
    mx, my = 0.35 * (x1 - x0), 0.35 * (y1 - y0)
    return np.asarray(img.crop((x0 - mx, y0 - my, x1 + mx, y1 + my)).resize(size))


def test_synthetic_video_two_people_in_one_place(tmp_path, pack, people, monkeypatch, models_dir):
    """Miranda for 1.2 s, then Obama in the same place on the same background: a track
    splits at the change of face, from embeddings alone."""
    a, b = face_patch(FACES / "lin-manuel-miranda.png"), face_patch(FACES / "obama.jpg")
    frames = []
    for i in range(24):  # 2.4 s at 10 fps
        frame = np.full((360, 640, 3), 90, np.uint8)
        frame[90:270, 245:395] = a if i < 12 else b
        frames.append(frame)
    video = write_video(tmp_path / "two.mp4", frames, fps=10)
    job = rk.start_face_detection(video).wait(progress=False)
    view = job.view()
    who = who_per_lane(view, row_embeddings(view, pack), people)
    assert sorted(map(sorted, who.values())) == [["miranda"], ["obama"]], who
    lanes = view.lanes().names
    assert lanes == ["face 1", "face 2"]
    det = view.detections.to_pandas()
    assert det[det["Lane"] == "face 1"]["Timestamp"].max() < 1200 <= det[det["Lane"] == "face 2"]["Timestamp"].min()
    assert view.cuts_ms is None  # no cut was given; the cheap check found none either
    boxes_only = JobView(view.table, view.operation, view.video_metadata, view.request, view.video_path,
                         identity="boxes")
    assert boxes_only.lanes().names == ["face 1"]  # the defect, for contrast


def test_tracker_splits_on_embeddings_and_cuts():
    e1, e2 = np.eye(4)[0], np.eye(4)[1]
    box = [[0.1, 0.1, 0.3, 0.4]]
    t = FaceTracker(split_cosine=0.3)
    assert t.update(0, box, np.array([e1])) == [0]
    assert t.update(200, box, np.array([e2])) == [1]  # same place, another face: new track
    t = FaceTracker(split_cosine=0.3)
    assert t.update(0, box, np.array([e1])) == [0]
    assert t.update(200, box, np.array([[np.nan] * 4])) == [0]  # no embedding for it: IoU links
    t = FaceTracker(cuts_ms=[300])
    assert t.update(0, box) == [0] and t.update(200, box) == [0]
    assert t.update(400, box) == [1]  # a cut in (200, 400]
    assert t.update(600, box) == [1]


def test_player_data_boxes_and_static_picture(hamilton, monkeypatch):
    job, home = hamilton
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    p = job.player()
    det = job.view().detections
    assert p.delivery.how == "bytes" and p.video == HAMILTON.read_bytes() and p.video_mime == "video/mp4"
    assert len(p.det_ts) == 8 * det.num_rows and len(p.det_box) == 16 * det.num_rows
    assert p.meta["offset_s"] == pytest.approx(10214 / 11988)  # the clip's video starts at 0.852 s
    assert [ln["name"] for ln in p.lanes] == job.view().lanes().names
    assert p.gallery and all(1 <= len(v) <= 3 for v in p.gallery.values())
    assert all(v[0]["src"].startswith("data:image/jpeg;base64,") for v in p.gallery.values())
    t = int(det["Timestamp"][len(det) // 2].as_py())
    p.seek(t / 1000 + 0.05)  # between samples: the nearest analysed frame (within 100 ms) is shown
    assert p.boxes and all(b["Timestamp"] == t for b in p.boxes)
    p.min_confidence = 101
    assert p.boxes == []
    p.min_confidence = 0
    data = bundle(p)
    assert "application/vnd.jupyter.widget-view+json" in data
    still = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert still.width == 720 and still.height > 405  # the frame over the lanes
    assert p.payload_bytes() < 2_000_000
    tl = job.timeline()
    assert Image.open(io.BytesIO(base64.b64decode(bundle(tl)["image/png"]))).width == 960


def test_player_for_other_job_types_and_generic_tables(tmp_path):
    """Any results table with a Timestamp plugs in: lanes from its name field, boxes from
    its first BoundingBox (operations without an adapter of their own)."""
    box = pa.struct([("Width", pa.float64()), ("Height", pa.float64()), ("Left", pa.float64()), ("Top", pa.float64())])
    person = pa.struct([("Index", pa.int64()), ("BoundingBox", box)])
    table = pa.table({"Timestamp": pa.array([0, 200, 200], pa.int64()),
                      "Person": pa.array([{"Index": 0, "BoundingBox": {"Width": .1, "Height": .2, "Left": .1, "Top": .1}},
                                          {"Index": 0, "BoundingBox": {"Width": .1, "Height": .2, "Left": .12, "Top": .1}},
                                          {"Index": 1, "BoundingBox": None}], person)})
    det = detections("StartMediaAnalysisJob", table).to_pylist()
    assert [d["Lane"] for d in det] == ["0", "0", "1"] and det[0]["Left"] == .1 and det[2]["Left"] is None
    from rekolab.widgets.player import Player

    view = JobView(table, "StartMediaAnalysisJob", {"DurationMillis": 1000, "FrameWidth": 320, "FrameHeight": 240})
    p = Player(view)
    assert p.delivery.how == "none" and "not available" in p.video_note
    assert [ln["name"] for ln in p.lanes] == ["0", "1"]
    p.seek(0.2)
    assert [b["Lane"] for b in p.boxes] == ["0", "1"]


def test_video_delivery_choices(tmp_path, monkeypatch):
    from rekolab.widgets import media

    small = write_video(tmp_path / "s.mp4", [np.full((240, 320, 3), i * 8, np.uint8) for i in range(30)], fps=30)
    assert media.video_for_browser(small).how == "bytes"
    assert media.video_for_browser(small, url="http://x/v.mp4").url == "http://x/v.mp4"
    monkeypatch.setattr(media, "jupyter_files_url", lambda p: "/files/s.mp4")
    served = media.video_for_browser(small)
    assert served.how == "jupyter-files" and served.comm_bytes == 0
    monkeypatch.undo()
    monkeypatch.setenv("REKOLAB_HOME", str(tmp_path / "home"))
    proxy = media.video_for_browser(small, max_bytes=10)  # over the cap: a proxy, itself over it
    assert proxy.how == "none" and "proxy" in proxy.note
    proxied = media.video_for_browser(small, proxy=True)
    assert proxied.how == "proxy" and proxied.data[4:8] == b"ftyp"
    import av

    with av.open(io.BytesIO(proxied.data)) as c:
        v = c.streams.video[0]
        assert v.codec_context.width == 320 and v.codec_context.name == "h264"


def test_progress_bar_has_its_total_before_it_is_made(tmp_path, monkeypatch, models_dir):
    import tqdm.auto

    made = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *a, **kw):
            made.append(kw.get("total"))
            super().__init__(*a, **kw, disable=True)
            self.seen = []

        def update(self, n=1):
            self.seen.append(n)
            return super().update(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    video = write_video(tmp_path / "v.mp4", [np.full((120, 160, 3), 100, np.uint8)] * 20, fps=10)
    rk.start_face_detection(video).wait()
    assert made == [10]  # 2 s at 5 samples/s, known at creation
    job = rk.start_face_detection(video, sample_rate=2)
    asyncio.run(job._wait_async())
    assert made == [10, 4] and job.status == "SUCCEEDED"


def test_to_pandas_flat_and_without_empty_columns(hamilton, monkeypatch):
    job, home = hamilton
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    df = job.to_pandas()
    assert not {"Eyeglasses", "Sunglasses", "Beard", "Mustache", "AgeRange"} & set(df.columns)  # DEFAULT job
    assert "Eyeglasses" in job.to_pandas(keep_empty=True).columns
    flat = job.to_pandas(flat=True)
    assert {"BoundingBox.Left", "BoundingBox.Top", "Pose.Yaw", "Quality.Sharpness"} <= set(flat.columns)
    assert (flat["BoundingBox.Left"].to_numpy() == df["BoundingBox"].map(lambda b: b["Left"]).to_numpy()).all()
    assert "SUCCEEDED" in job._repr_html_() and "short_hamilton_clip.mp4" in job._repr_html_()


def test_live_view_window_follows_the_stream_and_no_nan():
    pytest.importorskip("ipywidgets")
    view = rk.live_view("cam", window_s=60)
    for t in range(0, 9000, 1000):
        view.update({"eventNamespace": {"type": "LABEL_DETECTED"}, "labels": [
            {"name": "Person", "confidence": None,
             "videoMapping": {"kinesisVideoMapping": {"producerTimestamp": 1_700_000_000_000 + t}}}]})
    view.flush()
    lo, hi = view.window()
    assert lo == 0 and 8 <= hi < 9  # 8 s of stream fill the picture, not 8 of 60 s
    for t in range(9000, 70000, 1000):
        view.update({"eventNamespace": {"type": "LABEL_DETECTED"}, "labels": [
            {"name": "Person", "confidence": 90.0,
             "videoMapping": {"kinesisVideoMapping": {"producerTimestamp": 1_700_000_000_000 + t}}}]})
    lo, hi = view.window()
    assert hi - lo == pytest.approx(60) and hi > 69  # then it slides with the stream
    view.flush()
    assert "nan" not in view.table.value.lower() and "90.0" in view.table.value
    assert "image/png" in bundle(view)


def test_jupyter_files_url_uses_the_kernels_own_server(tmp_path, monkeypatch):
    pytest.importorskip("jupyter_server")
    import jupyter_server.serverapp as serverapp

    from rekolab.widgets.media import jupyter_files_url

    video = tmp_path / "media" / "a clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"x")
    servers = [{"pid": 11, "root_dir": str(tmp_path / "elsewhere"), "base_url": "/other/"},
               {"pid": 12, "root_dir": str(tmp_path), "base_url": "/lab-a/"},
               {"pid": 13, "root_dir": str(tmp_path), "base_url": "/lab-b/"}]
    monkeypatch.setattr(serverapp, "list_running_servers", lambda: iter(servers))
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    assert jupyter_files_url(video) == "/lab-a/files/media/a%20clip.mp4"
    monkeypatch.setenv("JPY_PARENT_PID", "13")
    assert jupyter_files_url(video) == "/lab-b/files/media/a%20clip.mp4"
    monkeypatch.setenv("JPY_PARENT_PID", "11")
    assert jupyter_files_url(video) is None  # the kernel's server cannot serve it


def test_face_embedding_emits_no_third_party_warnings(pack):
    """insightface's alignment calls a deprecated scikit-image API on every face; rekolab
    silences that one warning at its source, even after the filters were reset."""
    import warnings

    bgr = np.asarray(Image.open(FACES / "obama.jpg").convert("RGB"))[:, :, ::-1].copy()
    _, _, kps = pack.detect(bgr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        pack.embed(bgr, kps)
        pack.embed(bgr, kps)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
