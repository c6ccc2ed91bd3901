"""job.timeline() and job.plot(): lanes, filters, the frame viewer and the live view,
exercised headlessly (widget state after interactions), on a real face job and on
a synthetic 1-hour results table."""
from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import time

import numpy as np
import pyarrow as pa
import pytest

import rekolab as rk
from rekolab.results.schema import FACES_SCHEMA
from rekolab.models.faces import face_confidence
from rekolab.testing import numbered_video, read_frame_number

#: Detector score 0.75 on the calibrated face Confidence scale (Confidence 75 before calibration).
STRICT = round(float(face_confidence(0.75)), 1)
from rekolab.widgets import JobView, Lanes, detections, lane_color

from conftest import MEDIA, module_env

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def _hamilton(tmp_path_factory):
    """One face job on the Hamilton clip (5 samples/s), shared by the tests here."""
    if not HAMILTON.exists():
        pytest.skip(f"needs {HAMILTON}")
    with module_env(tmp_path_factory) as home:
        job = rk.start_face_detection(HAMILTON, client=rk.client()).wait(progress=False)
        assert job.status == "SUCCEEDED", job.status_message
        return job.id, home


@pytest.fixture
def hamilton_job(_hamilton, monkeypatch):
    job_id, home = _hamilton
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    return rk.Job(job_id, rk.client())


def longest(lanes) -> str:
    return max(lanes.names, key=lambda n: (sum(w for _, w in lanes.runs(n)), -lanes.index(n)))


def png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def synthetic_faces(hours: float = 1.0, faces: int = 3, rate: int = 5, shot_s: int = 30,
                    seed: int = 0) -> pa.Table:
    """A face-detection results table built directly in Arrow (no video): ``faces``
    faces per sampled frame, drifting slowly, jumping to new places every shot."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0, int(hours * 3600 * 1000), 1000 // rate, dtype=np.int64)
    t = np.repeat(ts, faces)
    k = np.tile(np.arange(faces), len(ts))
    shot = t // (shot_s * 1000)
    base = rng.random((int(shot.max()) + 1, faces, 2)) * 0.7
    left = base[shot, k, 0] + 0.05 * (t % (shot_s * 1000)) / (shot_s * 1000)
    top = base[shot, k, 1]
    n = len(t)
    box = pa.StructArray.from_arrays(
        [pa.array(np.full(n, 0.1)), pa.array(np.full(n, 0.15)), pa.array(left), pa.array(top)],
        names=["Width", "Height", "Left", "Top"])
    cols = {"Timestamp": pa.array(t), "FrameNumber": pa.array(t * 30 // 1000), "BoundingBox": box,
            "Confidence": pa.array(50 + 50 * rng.random(n))}
    return pa.Table.from_arrays([cols.get(f.name, pa.nulls(n, f.type)) for f in FACES_SCHEMA],
                                schema=FACES_SCHEMA)


# -- job.plot() ----------------------------------------------------------------------------
def test_plot_shows_one_lane_per_face_track(hamilton_job):
    view = hamilton_job.view()
    lanes = view.lanes()
    fig = hamilton_job.plot()
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert fig._repr_png_()[:4] == b"\x89PNG"  # shows itself in a notebook without pyplot
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    # Every face track is a lane (fewer than the 30-lane cap here), in order of first appearance.
    assert names == lanes.names and 5 <= len(names) <= 30
    assert names == sorted(names, key=lambda n: int(n.split()[1]))
    assert all(n.startswith("face ") for n in names)
    assert len(ax.collections) == len(names)  # one broken_barh per lane
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "face track"
    assert ax.get_xlim() == pytest.approx((0, 9.175))
    assert "FaceDetection" in ax.get_title(loc="left") and "short_hamilton_clip.mp4" in ax.get_title(loc="left")
    # The singer's track is the longest (3.5-7.0 s, until the cut to Obama), drawn in its lane's colour.
    singer = longest(lanes)
    assert sum(w for _, w in lanes.runs(singer)) > 3.0
    row = names.index(singer)
    bar_rgb = np.round(ax.collections[row].get_facecolor()[0][:3] * 255)
    assert tuple(bar_rgb) == Image.new("RGB", (1, 1), lane_color(lanes.index(singer))).getpixel((0, 0))
    # A threshold removes low-confidence tracks and keeps the order of the rest.
    strict = [t.get_text() for t in hamilton_job.plot(min_confidence=STRICT).axes[0].get_yticklabels()]
    assert 0 < len(strict) < len(names) and strict == [n for n in names if n in strict]
    one = hamilton_job.plot(lanes=[names[1]]).axes[0]
    assert [t.get_text() for t in one.get_yticklabels()] == [names[1]]
    # It renders (Agg) to a real picture.
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert png(buf.getvalue()).shape[1] == 1000


# -- job.timeline(): headless interactions ---------------------------------------------------
def test_timeline_widget_state_after_interactions(hamilton_job):
    import ipywidgets

    tl = hamilton_job.timeline()
    assert isinstance(tl, ipywidgets.VBox)
    names = tl.lanes.names
    assert tl.visible_lanes == names
    assert tl.lane_select.options == tuple(names)
    picture = png(tl.image.value)
    assert picture.shape[1] == 960

    # Frame viewer: a time at which the singer's face is found.
    singer = longest(tl.lanes)
    det = tl.view.detections.to_pandas()
    t_singer = int(det[det["Lane"] == singer]["Timestamp"].iloc[10])
    tl.viewer.time.value = (t_singer + 40) / 1000 # between samples: snaps to the analysed frame
    assert tl.viewer.shown_timestamp_ms == t_singer
    assert tl.viewer.frame_index == int(det[det["Timestamp"] == t_singer]["FrameNumber"].iloc[0])
    assert singer in [b["Lane"] for b in tl.viewer.boxes]
    frame = png(tl.viewer.image.value)
    assert frame.shape == (360, 640, 3)
    # The box outline is drawn in the lane's colour at the box's left edge.
    b = next(b for b in tl.viewer.boxes if b["Lane"] == singer)
    x = int(round(b["Left"] * 640))
    ys = slice(int(b["Top"] * 360) + 4, int((b["Top"] + b["Height"]) * 360) - 4)
    want = np.array(Image.new("RGB", (1, 1), lane_color(tl.lanes.index(singer))).getpixel((0, 0)))
    edge = frame[ys, max(x - 1, 0):x + 2].astype(int)  # 3 px around the left edge, per row
    assert (np.abs(edge - want).sum(axis=2).min(axis=1) < 40).mean() > 0.9
    assert f"{singer} " in b["text"]
    # The cursor moved on the lanes picture.
    assert tl.cursor_x == pytest.approx(tl._x_of(t_singer), abs=1)
    assert not np.array_equal(png(tl.image.value), picture)

    # Minimum confidence: fewer lanes, and no drawn box under it.
    tl.min_confidence.value = STRICT
    assert 0 < len(tl.visible_lanes) < len(names)
    assert all(b["Confidence"] >= STRICT for b in tl.viewer.boxes)
    assert set(tl.lane_select.options) == set(tl.visible_lanes)
    tl.min_confidence.value = 0

    # Lane filter (text) and lane choice (select): the viewer draws only those lanes.
    tl.lane_filter.value = singer
    assert singer in tl.visible_lanes and all(singer in n for n in tl.visible_lanes)
    tl.lane_filter.value = ""
    tl.lane_select.value = (singer,)
    assert tl.visible_lanes == [singer]
    assert {b["Lane"] for b in tl.viewer.boxes} <= {singer}
    tl.viewer.time.value = 0  # the singer is not on screen at the start
    assert tl.viewer.boxes == [] and tl.viewer.shown_timestamp_ms == 0
    nxt = tl.viewer.step(+1)  # ▶ jumps to the next frame with a visible box
    assert nxt == int(det[det["Lane"] == singer]["Timestamp"].min())
    assert [b["Lane"] for b in tl.viewer.boxes] == [singer]
    tl.viewer.next_button.click()
    assert tl.viewer.shown_timestamp_ms > nxt
    tl.lane_select.value = ()
    assert tl.visible_lanes == names
    assert "of" in tl.status.value and tl.payload_bytes() < 400_000


def test_parquet_round_trip_gives_the_same_view(hamilton_job, tmp_path):
    path = hamilton_job.to_parquet(tmp_path / "f.parquet")
    a, b = hamilton_job.view(), JobView.from_parquet(path)
    assert b.operation == "StartFaceDetection" and b.video_metadata == hamilton_job.video_metadata
    assert a.detections.equals(b.detections) and a.lanes().names == b.lanes().names
    assert b.source is not None and len(b.source) == 275  # the video travels by path in the request


# -- bounded for long videos -------------------------------------------------------------
def test_one_hour_of_results_stays_bounded_and_responsive():
    table = synthetic_faces(hours=1.0)
    assert table.num_rows == 54_000
    view = JobView(table, "StartFaceDetection",
                   {"DurationMillis": 3_600_000, "FrameWidth": 1280, "FrameHeight": 720})
    t0 = time.perf_counter()
    from rekolab.widgets.timeline import Timeline

    tl = Timeline(view)
    build_s = time.perf_counter() - t0
    lanes = tl.lanes
    assert lanes.n_bins == 2000 and lanes.bin_ms == pytest.approx(1800)
    assert len(lanes.names) > 100  # many face tracks (a new one every shot)
    assert len(tl.visible_lanes) == 30 and len(tl.lane_select.options) <= 200
    # What goes to the browser: two PNGs and <= 200 lane names, not 54,000 rows.
    rows_json = len(json.dumps([
        {"Timestamp": int(t), "BoundingBox": b} for t, b in zip(
            table.column("Timestamp").to_pylist(), table.column("BoundingBox").to_pylist())]))
    payload = tl.payload_bytes()
    assert payload < 600_000 and payload < rows_json / 10
    t0 = time.perf_counter()
    tl.min_confidence.value = 90
    tl.viewer.time.value = 1800.0
    interact_s = time.perf_counter() - t0
    assert len(tl.visible_lanes) == 30 and all(b["Confidence"] >= 90 for b in tl.viewer.boxes)
    assert tl.payload_bytes() < 600_000
    assert build_s < 20 and interact_s < 5, (build_s, interact_s)
    # No video: the viewer draws the boxes on a grey frame of the video's size.
    ts = int(table.column("Timestamp")[3000].as_py())
    tl.min_confidence.value = 0
    tl.viewer.time.value = ts / 1000
    assert tl.viewer.shown_timestamp_ms == ts and len(tl.viewer.boxes) == 3
    assert png(tl.viewer.image.value).shape == (540, 960, 3)  # 1280x720 scaled to 960 wide


# -- the pieces ------------------------------------------------------------------------
def test_face_lanes_are_tracks_computed_from_boxes():
    """Two faces that swap order in the table stay in their own lanes; a 2 s gap
    starts a new track (FaceTracker, max_gap_ms 1000)."""
    rows = []
    for i, t in enumerate(range(0, 2000, 200)):
        a = {"Width": 0.1, "Height": 0.2, "Left": 0.1 + 0.005 * i, "Top": 0.1}
        b = {"Width": 0.1, "Height": 0.2, "Left": 0.7 - 0.005 * i, "Top": 0.5}
        pair = [(a, 90.0), (b, 60.0)] if i % 2 else [(b, 60.0), (a, 90.0)]
        rows += [{"Timestamp": t, "FrameNumber": i, "BoundingBox": box, "Confidence": c} for box, c in pair]
    rows.append({"Timestamp": 4000, "FrameNumber": 20, "BoundingBox": rows[-1]["BoundingBox"], "Confidence": 70.0})
    table = pa.Table.from_pylist(rows, schema=FACES_SCHEMA)
    det = detections("StartFaceDetection", table).to_pylist()
    lane_of = {}
    for d in det[:-1]:
        lane_of.setdefault(d["Lane"], set()).add(d["Confidence"])
    assert len(lane_of) == 2 and sorted(map(sorted, lane_of.values())) == [[60.0], [90.0]]
    assert det[-1]["Lane"] not in lane_of and det[-1]["Category"] == "face"
    assert [d["Timestamp"] for d in det] == sorted(d["Timestamp"] for d in det)


def test_lanes_keep_the_max_confidence_per_bin():
    det = pa.table({
        "Timestamp": pa.array([0, 100, 250, 900, 900, 5000], pa.int64()),
        "FrameNumber": pa.nulls(6, pa.int64()),
        "Lane": ["a", "a", "a", "b", "a", "b"], "Category": ["x"] * 6,
        "Confidence": [60.0, 95.0, 55.0, 70.0, 80.0, 99.0],
        "Left": [0.1] * 6, "Top": [0.1] * 6, "Width": [0.1] * 6, "Height": [0.1] * 6, "Row": list(range(6)),
    })
    lanes = Lanes.from_detections(det, duration_ms=6000, sample_interval_ms=200, max_bins=2000)
    assert lanes.n_bins == 30 and lanes.bin_ms == 200
    assert lanes.names == ["a", "b"]  # a: 3 bins, b: 2 bins
    m = lanes.matrix(["a", "b"])
    assert m[0, 0] == 95.0 and m[0, 1] == 55.0 and m[0, 4] == 80.0 and np.isnan(m[0, 2])
    assert m[1, 4] == 70.0 and m[1, 25] == 99.0
    assert list(lanes.presence(90)) == [1, 1]
    assert lanes.visible(min_confidence=96) == ["b"]
    assert lanes.runs("a") == [(0.0, pytest.approx(0.4)), (0.8, pytest.approx(0.2))]
    assert lanes.matching("/^b$/") == ["b"] and lanes.matching("A, zz") == ["a"]
    # Coarse bins for long videos: never more than max_bins.
    long = Lanes.from_detections(det, duration_ms=10 * 3600 * 1000, max_bins=500)
    assert long.n_bins == 500


def test_frame_source_maps_timestamps_to_the_analysed_frame(tmp_path):
    from rekolab.video import plan
    from rekolab.widgets.frames import FrameSource

    video = numbered_video(tmp_path / "n.mp4", frames=40, fps=25)
    src = FrameSource(video)
    p = plan(video, 5)
    for index, ts in zip(p.indices, p.timestamps_ms):
        assert src.index_at(int(ts)) == index
        assert read_frame_number(src.frame(int(ts))) == index
    assert [i for i, _ in src.frames([7, 3, 3])] == [3, 7]


def test_frame_source_uses_exact_pts_late_in_a_long_video(tmp_path):
    """Frame times are the decode plan's integer PTS, not decord's float32 seconds.
    Near 5.9 h float32 steps are ~2 ms: frame 3 of this variable-rate clip (PTS
    637201148 / 30000 s = 21240038.27 ms) reads 21240040 ms from decord, so a
    float-based viewer showed frame 2 for the job's Timestamp 21240038."""
    import av
    from fractions import Fraction

    from rekolab.testing import _number_pattern
    from rekolab.video import plan
    from rekolab.widgets.frames import FrameSource

    path = tmp_path / "vfr.mp4"
    tb = Fraction(1, 30000)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.time_base = s.time_base = tb
        for i, pts in enumerate([0, 1001, 637200147, 637201148]):
            frame = av.VideoFrame.from_ndarray(_number_pattern(i, 320, 240), format="rgb24")
            frame.pts, frame.time_base = pts, tb
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    src = FrameSource(path)
    assert src.timestamps_ms.tolist() == [0, 33, 21240004, 21240038]
    p = plan(path, 30)
    assert 3 in p.indices.tolist()
    assert src.timestamps_ms[p.indices].tolist() == p.timestamps_ms.tolist()  # the job's Timestamps
    for index, ts in zip(p.indices, p.timestamps_ms):
        assert src.index_at(int(ts)) == index
        assert read_frame_number(src.frame(int(ts))) == index
    assert src.index_at(21240037) == 2


def test_frame_source_is_the_jobs_decoder(tmp_path):
    """The viewer shows the analysed frames themselves: FrameSource decodes with the jobs'
    decoder (PyAV), so its frames at a job's sampled frame numbers are the job's pixels
    (a clip under 720p, which jobs decode at full size), and it reads every container a job
    does: an MPEG-TS cut mid-GOP (decord, the viewer's decoder before, could not seek in
    MPEG-TS at all), a turned phone video. Random access in any order, across keyframes
    and B-frames, gives each frame's own picture."""
    import random

    from rekolab.testing import _number_pattern, remuxed, write_video
    from rekolab.video import VideoDecodeError, plan
    from rekolab.widgets.frames import FrameSource

    # -- random access across keyframes (every 12 frames) and B-frames
    video = write_video(tmp_path / "g.mp4", [_number_pattern(i, 320, 240) for i in range(100)], 25, gop=12)
    src = FrameSource(video)
    order = list(range(100)) + list(range(99, -1, -1)) + random.Random(0).sample(range(100), 50)
    for i in order:
        src._cache.clear()
        assert read_frame_number(src.frame(index=i)) == i
    assert [(i, read_frame_number(f)) for i, f in src.frames([70, 3, 3, 40, 41, 99])] == \
        [(3, 3), (40, 40), (41, 41), (70, 70), (99, 99)]

    # -- the job's own frames, pixel for pixel
    cut = remuxed(video, tmp_path / "cut.ts", "mpegts", drop_first=5)  # a recording cut mid-GOP
    turned = write_video(tmp_path / "turned.mp4", [_number_pattern(i, 320, 240) for i in range(30)], 25,
                         rotation=90)
    for v in (video, cut, turned):
        p, s = plan(v, 5), FrameSource(v)
        assert s.sampled(5).tolist() == p.indices.tolist(), v.name
        assert s.timestamps_ms[p.indices].tolist() == p.timestamps_ms.tolist()
        ours = dict(s.frames(p.indices))
        for batch in p.batches():
            for i, f in zip(batch.indices.tolist(), batch.frames):
                assert np.array_equal(ours[i], f), (v.name, i)
    assert FrameSource(turned).frame(0).shape == (320, 240, 3)  # as displayed
    # Frames before the cut file's first keyframe cannot be decoded: said in words; their
    # times show the first frame that can be.
    s = FrameSource(cut)
    assert s.first_decodable > 0
    assert s.index_at(0) == s.first_decodable
    with pytest.raises(VideoDecodeError, match="before its first keyframe"):
        s.frame(index=0)


def test_frame_source_recovers_from_an_error_in_its_run(tmp_path, monkeypatch):
    """An exception inside the kept forward run (a decode error, Ctrl-C in a notebook) ends
    the run: the next read decodes afresh instead of iterating the dead generator ("the
    decoder returned no frame"); close() and deleting the source close the file."""
    import gc
    import os

    import rekolab.video.decode as decode
    from rekolab.widgets.frames import FrameSource

    video = numbered_video(tmp_path / "n.mp4", frames=30, gop=10)
    real, calls = decode._decode_sampled, []

    def interrupted(plan, stop, beat=None, convert=None):
        calls.append(1)
        for n, item in enumerate(real(plan, stop, beat, convert)):
            if len(calls) == 1 and n == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(decode, "_decode_sampled", interrupted)
    src = FrameSource(video)
    assert read_frame_number(src.frame(index=4)) == 4
    with pytest.raises(KeyboardInterrupt):
        src.frame(index=7)  # on from frame 4: interrupted at frame 6
    assert src._run is None
    assert read_frame_number(src.frame(index=8)) == 8

    def open_files():
        return sum(1 for fd in os.listdir("/proc/self/fd")
                   if os.path.realpath(f"/proc/self/fd/{fd}") == str(video.resolve()))

    assert open_files() == 1  # the run's open file, kept for the next frame
    src.close()
    assert open_files() == 0
    src.frame(index=7)
    del src
    gc.collect()
    assert open_files() == 0


def test_frame_source_runs_are_bounded(tmp_path, monkeypatch):
    """A forward run ends after _RUN_FRAMES frames even inside one long GOP (a video with
    one keyframe in hours), and reads past its end still give each frame's own picture."""
    from rekolab.widgets import frames as frames_module

    monkeypatch.setattr(frames_module, "_RUN_FRAMES", 7)
    src = frames_module.FrameSource(numbered_video(tmp_path / "one-gop.mp4", frames=40))
    assert len(src._key_frames) == 1
    for i in [*range(40), 3, 35, 12, 13, 30]:
        src._cache.clear()
        assert read_frame_number(src.frame(index=i)) == i
        assert src._run is None or src._run.end - src._run.start <= 7


def test_frame_source_loads_only_ffmpeg(tmp_path):
    """Opening a video in the viewer loads PyAV, not torch, decord or the models (a new
    process stays small)."""
    import subprocess
    import sys

    video = numbered_video(tmp_path / "n.mp4", frames=5)
    # Peak RSS of the new process (VmHWM; ru_maxrss would carry pytest's across exec).
    code = ("import sys; from pathlib import Path; from rekolab.widgets.frames import FrameSource; "
            f"FrameSource({str(video)!r}).frame(0); "
            "print(sorted(m for m in ('torch', 'decord', 'onnxruntime', 'insightface', 'cv2') if m in sys.modules)); "
            "print([l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')][0])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded, hwm = r.stdout.splitlines()
    assert loaded == "[]"
    assert int(hwm.split()[-2]) / 1024 < 250  # MB


# -- live view -------------------------------------------------------------------------
def _kinesis_record(t: float, faces: list[tuple[str | None, float]]) -> dict:
    out = []
    for i, (name, sim) in enumerate(faces):
        detected = {"BoundingBox": {"Width": 0.2, "Height": 0.3, "Left": 0.1 + 0.4 * i, "Top": 0.2},
                    "Confidence": 99.0}
        matches = [] if name is None else [
            {"Similarity": sim, "Face": {"FaceId": f"{i:08d}-0000-0000-0000-000000000000",
                                         "ExternalImageId": name, "Confidence": 99.9}}]
        out.append({"DetectedFace": detected, "MatchedFaces": matches})
    return {"InputInformation": {"KinesisVideo": {
        "StreamArn": "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door/1",
        "FragmentNumber": "91343852333181432392682062607743920146264672", "ServerTimestamp": 1700000000.5 + t,
        "ProducerTimestamp": 1700000000.0 + int(t), "FrameOffsetInSeconds": t - int(t)}},
        "StreamProcessorInformation": {"Status": "RUNNING"}, "FaceSearchResponse": out}


def test_live_view_updates_while_an_async_loop_consumes_records():
    from rekolab.widgets.live import LiveView

    view = rk.live_view("door", refresh_s=3600)  # only the first record and flush() redraw
    assert isinstance(view, LiveView)
    frame = np.zeros((120, 160, 3), np.uint8)

    async def records():
        for k in range(50):
            faces = [("obama", 95.0 - k * 0.1)] + ([(None, 0.0)] if k % 5 == 0 else [])
            if k >= 30:
                faces.append(("biden", 88.0))
            yield _kinesis_record(k * 0.2, faces), frame
            await asyncio.sleep(0)

    seen_mid = {}

    async def run():
        task = asyncio.create_task(view.consume(records()))
        while not task.done():
            await asyncio.sleep(0)
            if view.records == 25 and not seen_mid:
                seen_mid.update(records=view.records, header=view.header.value)
        return await task

    assert asyncio.run(run()) == 50
    assert seen_mid["records"] == 25 and "25 records" in seen_mid["header"]  # updated mid-stream
    assert view.counts == {"obama": 50, "unknown face": 10, "biden": 20}
    assert view.best["obama"] == pytest.approx(95.0) and view.best["biden"] == 88.0
    assert view.faces == 80 and view.kinds == {"face_search": 50}
    assert view.last_seen_s["obama"] == pytest.approx(9.8)
    assert view.lanes() == ["biden", "obama", "unknown face"]  # most recently seen first
    assert view.renders == 2  # throttled: the first record, then the final flush
    assert png(view.image.value).shape[1] == 900
    assert [b["Lane"] for b in view.last_boxes] == ["obama", "biden"]
    assert png(view.frame_image.value).shape == (120, 160, 3)
    assert "biden" in view.table.value and "sightings" in view.table.value


def test_live_view_label_events_and_end_of_session():
    view = rk.live_view("porch", refresh_s=0)
    event = {"inputInformation": {"kinesisVideo": {"streamArn": "arn:aws:kinesisvideo:x"}},
             "eventNamespace": {"type": "LABEL_DETECTED"},
             "labels": [{"id": "1", "name": "PERSON", "frameImageUri": "s3://b/k.jpg",
                         "videoMapping": {"kinesisVideoMapping": {"producerTimestamp": 1700000000000,
                                                                  "frameOffsetMillis": 500}},
                         "boundingBox": {"left": 0.1, "top": 0.2, "height": 0.5, "width": 0.2}}],
             "eventId": "e1", "tags": {}, "sessionId": "s"}
    view.update({"Type": "Notification", "Message": json.dumps(event)})  # an SNS envelope
    view.update(json.dumps({**event, "labels": [{**event["labels"][0], "name": "PET"}]}))
    assert view.counts == {"PERSON": 1, "PET": 1} and not view.done
    view.update({"eventNamespace": {"type": "STREAM_PROCESSING_COMPLETE"},
                 "inputInformation": {"kinesisVideo": {"processedVideoDurationMillis": 1000}}})
    assert view.done and view.kinds == {"labels": 2, "complete": 1} and "done" in view.header.value
    assert view.last_boxes[0]["Left"] == 0.1 and view.renders == 3


def test_timeline_refuses_an_unknown_operation_without_timestamps():
    with pytest.raises(ValueError, match="no timeline"):
        detections("StartSomething", pa.table({"JobId": ["x"]}))
    # A table with Timestamps gets the generic view (one "result" lane when it names nothing).
    det = detections("StartMediaAnalysisJob", pa.table({"Timestamp": [0]}))
    assert det.column("Lane").to_pylist() == ["result"] and det.column("Left").null_count == 1



# -- the other job types: one lane per label / celebrity / matched person -----------------
def test_label_lanes_boxes_and_frame_labels(tmp_path, models_dir, media):
    from rekolab.testing import still_video

    if not (models_dir / "coco_detection" / "yolox_nano.onnx").exists():
        pytest.skip("needs the YOLOX weights")
    video = still_video(media / "scenes/dog.jpg", tmp_path / "dog.mp4", frames=1)
    job = rk.start_label_detection(video, models=["DETECTOR"]).wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    df = job.to_pandas()
    view = job.view()
    lanes = view.lanes().names
    assert set(lanes) == set(df["Name"])  # one lane per label name, parents included
    assert {"Dog", "Bicycle"} <= set(lanes) and "Animal" in lanes
    det = view.detections.to_pandas()
    boxed = det[det["Left"].notna()]
    n_instances = sum(len(i) for i in df["Instances"])
    assert len(boxed) == n_instances and len(det) == len(df) + n_instances
    tl = job.timeline()
    assert tl.viewer.shown_timestamp_ms == 0
    drawn = {b["Lane"] for b in tl.viewer.boxes}
    assert {"Dog", "Bicycle"} <= drawn
    assert "Animal" in tl.viewer.frame_labels and "Dog" not in tl.viewer.frame_labels
    if importlib.util.find_spec("anywidget"):  # the player draws instance boxes; scene labels ride along
        p = job.player()
        assert {"Dog", "Bicycle"} <= {b["Lane"] for b in p.boxes if b["Left"] is not None}
        assert "Animal" in {b["Lane"] for b in p.boxes if b["Left"] is None} and p.gallery == {}
    dog = next(b for b in tl.viewer.boxes if b["Lane"] == "Dog")
    # YOLOX on dog.jpg (768x576): dog at about [133,207,326,543] px.
    assert dog["Left"] * 768 == pytest.approx(133, abs=25) and dog["Top"] * 576 == pytest.approx(207, abs=25)
    ax = job.plot().axes[0]
    assert ax.get_ylabel() == "label" and {t.get_text() for t in ax.get_yticklabels()} == set(lanes)
    tl.lane_filter.value = "dog"
    assert tl.visible_lanes == ["Dog"] and {b["Lane"] for b in tl.viewer.boxes} == {"Dog"}


def test_celebrity_and_face_search_lanes(tmp_path, models_dir, media):
    from rekolab.testing import still_video

    gallery = rk.celebrities.gallery(tmp_path / "gallery")
    gallery.add("Barack Obama", images=[media / "faces/obama.jpg"])
    video = still_video(media / "faces/obama_and_biden.jpg", tmp_path / "ob.mp4", frames=1)
    celeb = rk.start_celebrity_recognition(video, gallery=gallery).wait(progress=False)
    assert celeb.status == "SUCCEEDED", celeb.status_message
    view = celeb.view()
    assert view.lanes().names == ["Barack Obama"] and view.lanes().lane_kind == "celebrity"
    tl = celeb.timeline()
    assert [b["Lane"] for b in tl.viewer.boxes] == ["Barack Obama"]
    assert tl.viewer.boxes[0]["Confidence"] == pytest.approx(celeb.to_pandas()["Confidence"].iloc[0])

    cast = rk.Collection.create("cast")
    cast.index(media / "faces/obama.jpg", "obama")
    search = cast.start_face_search(video).wait(progress=False)
    assert search.status == "SUCCEEDED", search.status_message
    lanes = search.view().lanes()
    assert lanes.lane_kind == "person" and set(lanes.names) == {"obama", "no match"}
    det = search.view().detections.to_pandas()
    assert (det["Lane"] == "no match").sum() == 2  # the other two faces of the photo
    assert det.loc[det["Lane"] == "obama", "Confidence"].iloc[0] >= 80  # the Similarity
    ax = search.plot().axes[0]
    assert ax.get_ylabel() == "person" and {t.get_text() for t in ax.get_yticklabels()} == {"obama", "no match"}
    tl = search.timeline(lanes=["obama"])
    assert tl.visible_lanes == ["obama"] and [b["Lane"] for b in tl.viewer.boxes] == ["obama"]
    # The player takes both job types: boxes at the frame, a gallery per person.
    pytest.importorskip("anywidget")
    for job, name in ((celeb, "Barack Obama"), (search, "obama")):
        p = job.player()
        assert name in [b["Lane"] for b in p.boxes] and list(p.gallery)[:1] == [name]


def test_live_view_follows_real_stream_processors(tmp_path, models_dir, media):
    """A face-search processor and a label processor, consumed by an async loop."""
    from rekolab.testing import still_video

    video = still_video(media / "faces/obama_and_biden.jpg", tmp_path / "ob.mp4", frames=10)  # 0.4 s
    cast = rk.Collection.create("cast")
    cast.index(media / "faces/obama.jpg", "obama")
    proc = rk.create_stream_processor("stage", source=video, face_search={"CollectionId": "cast"})
    view = rk.live_view("stage", video=video, refresh_s=0)

    async def run(v, session):
        return await v.consume(session)

    assert asyncio.run(run(view, proc.start(realtime=False))) == 2  # 5 samples/s over 0.4 s
    assert view.counts == {"obama": 2, "unknown face": 4} and view.kinds == {"face_search": 2}
    assert view.frame_shown == f"{video} @ 200 ms"  # decoded at the last record's source time
    frame = png(view.frame_image.value)
    assert frame.shape[1] == 480 and len(view.last_boxes) == 3
    assert {b["Lane"] for b in view.last_boxes} == {"obama", "unknown face"}

    if not (models_dir / "coco_detection" / "yolox_nano.onnx").exists():
        return
    dog = still_video(media / "scenes/dog.jpg", tmp_path / "dog.mp4", frames=5)
    yard = rk.create_stream_processor("yard", source=dog, connected_home={"Labels": ["PET"]})
    pets = rk.live_view("yard", refresh_s=0)
    assert asyncio.run(run(pets, yard.start(realtime=False))) == 2  # LABEL_DETECTED, then COMPLETE
    assert pets.counts == {"PET": 1} and pets.done
    assert pets.frame_shown and pets.frame_shown.endswith(".jpg")  # the hero frame, from the local S3 folder
    assert png(pets.frame_image.value).shape[1] == 480 and pets.last_boxes[0]["Lane"] == "PET"
