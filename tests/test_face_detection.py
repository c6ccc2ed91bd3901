"""StartFaceDetection / GetFaceDetection end to end, with the real face pack on
real media, and the whole job contract."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

import rekolab as rk
from rekolab.testing import all_pages, body, numbered_video, still_video, truncated_video, validate_response

from conftest import MEDIA, REPO, module_env

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"
DEFAULT_KEYS = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}


@pytest.fixture
def client(models_dir, media):
    return rk.client(buckets={"media": str(media / "video")})


@pytest.fixture(scope="module")
def hamilton_all(tmp_path_factory):
    """One ALL-attributes job on the Hamilton clip, shared by several tests."""
    import os
    if not HAMILTON.exists():
        pytest.skip(f"needs {HAMILTON}")
    with module_env(tmp_path_factory):
        c = rk.client(buckets={"media": str(HAMILTON.parent)})
        r = c.start_face_detection(Video={"S3Object": {"Bucket": "media", "Name": HAMILTON.name}},
                                   FaceAttributes="ALL", JobTag="exp1")
        job = rk.Job(r["JobId"], c).wait(progress=False)
        yield c, job, os.environ["REKOLAB_HOME"]


def test_hamilton_faces_at_the_right_times(hamilton_all, monkeypatch):
    client, job, home = hamilton_all
    monkeypatch.setenv("REKOLAB_HOME", home)
    assert job.status == "SUCCEEDED", job.status_message
    page = client.get_face_detection(JobId=job.id)
    validate_response("GetFaceDetection", page)
    assert page["JobStatus"] == "SUCCEEDED" and page["JobTag"] == "exp1"
    assert page["VideoMetadata"] == {"Codec": "h264", "DurationMillis": 9175, "Format": "QuickTime / MOV",
                                     "FrameRate": 29.97, "FrameHeight": 360, "FrameWidth": 640,
                                     "ColorRange": "LIMITED"}
    faces = page["Faces"]
    times = sorted({f["Timestamp"] for f in faces})
    # 5 samples a second over 9.2 s: faces are seen through the whole clip.
    assert len(times) >= 35 and times[0] <= 200 and times[-1] >= 8800
    assert [f["Timestamp"] for f in faces] == sorted(f["Timestamp"] for f in faces)
    for f in faces:
        box = f["Face"]["BoundingBox"]
        assert 0.02 < box["Width"] < 0.6 and 0.03 < box["Height"] < 0.9
        assert -0.2 < box["Left"] < 1.0 and -0.2 < box["Top"] < 1.0
        assert 0 < f["Face"]["Confidence"] <= 100  # calibrated (models.faces.face_confidence)
        assert "FaceOccluded" not in f["Face"] and "EyeDirection" not in f["Face"]


def test_timestamps_are_presentation_times(hamilton_all, monkeypatch):
    """Each Timestamp is a sampled frame's PTS (PyAV), relative to the first frame."""
    import av
    _, job, home = hamilton_all
    monkeypatch.setenv("REKOLAB_HOME", home)
    with av.open(str(HAMILTON)) as c:
        s = c.streams.video[0]
        pts = [int((f.pts - s.start_time) * Fraction(s.time_base) * 1000) for f in c.decode(s)]
    df = job.to_pandas()
    for frame_number, ts in zip(df["FrameNumber"], df["Timestamp"]):
        assert ts == pts[frame_number]
    # Sampled every 200 ms: the first frame at or after each multiple of 200 ms.
    assert set(df["Timestamp"]) <= {pts[i] for i in range(len(pts))}
    gaps = np.diff(sorted(set(df["Timestamp"])))
    assert gaps.min() >= 166 and np.median(gaps) in (200, 201)


def test_pages_concatenate_to_the_dataframe(hamilton_all, monkeypatch):
    client, job, home = hamilton_all
    monkeypatch.setenv("REKOLAB_HOME", home)
    df = job.to_pandas()
    assert all(isinstance(t, __import__("pandas").ArrowDtype) for t in df.dtypes)
    pages = all_pages(client.get_face_detection, "GetFaceDetection", JobId=job.id, MaxResults=7)
    assert len(pages) == -(-len(df) // 7) and all("VideoMetadata" in p for p in pages)
    items = [item for p in pages for item in p["Faces"]]
    assert len(items) == len(df)
    assert [i["Timestamp"] for i in items] == df["Timestamp"].tolist()
    assert [i["Face"]["BoundingBox"] for i in items] == df["BoundingBox"].tolist()
    assert [i["Face"]["Confidence"] for i in items] == df["Confidence"].tolist()


def test_all_attributes(hamilton_all, monkeypatch):
    _, job, home = hamilton_all
    monkeypatch.setenv("REKOLAB_HOME", home)
    item = rk.client().get_face_detection(JobId=job.id, MaxResults=1)["Faces"][0]["Face"]
    assert {"AgeRange", "Gender", "Emotions", "EyesOpen", "MouthOpen", "Smile"} <= set(item)
    assert DEFAULT_KEYS <= set(item)
    assert len(item["Landmarks"]) == 30
    for absent in ("Eyeglasses", "Sunglasses", "Beard", "Mustache", "FaceOccluded", "EyeDirection"):
        assert absent not in item  # no installed model produces these
    assert set(job.models["Attributes"]) >= {"AgeRange", "Gender", "Emotions", "Landmarks", "Pose"}


def test_default_attributes_shape(client, tmp_path):
    still_video(MEDIA / "faces/obama.jpg", tmp_path / "obama.mp4", frames=3)
    job = rk.start_face_detection(tmp_path / "obama.mp4", client=client).wait(progress=False)
    page = client.get_face_detection(JobId=job.id)
    validate_response("GetFaceDetection", page)
    assert len(page["Faces"]) == 1  # 3 frames at 25 fps: one sample at 0 ms
    assert set(page["Faces"][0]["Face"]) == DEFAULT_KEYS
    assert page["Video"] == {"S3Object": {"Name": str(tmp_path / "obama.mp4")}}


@pytest.mark.parametrize("image, count", [
    ("faces/two_people.jpg", 2), ("faces/insightface_t1.jpg", 6), ("faces/obama.jpg", 1),
    ("scenes/dog.jpg", 0), ("scenes/person.jpg", 0), ("scenes/horses.jpg", 0),
    ("scenes/eagle.jpg", 0), ("scenes/giraffe.jpg", 0),
])
def test_one_frame_videos_of_stills(client, tmp_path, image, count):
    video = still_video(MEDIA / image, tmp_path / "still.mp4", frames=1)
    job = rk.start_face_detection(video, client=client).wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    faces = client.get_face_detection(JobId=job.id)["Faces"]
    assert len(faces) == count
    assert all(f["Timestamp"] == 0 for f in faces)


def test_sample_rate_extension(client, tmp_path):
    video = numbered_video(tmp_path / "n.mp4", frames=50, fps=25)  # no faces: 2 s
    job = rk.start_face_detection(video, sample_rate=2, client=client).wait(progress=False)
    assert job.status == "SUCCEEDED" and job._record.sampled_frames == 4  # 0, 500, 1000, 1500 ms
    job = rk.start_face_detection(video, sample_rate=25, client=client).wait(progress=False)
    assert job._record.sampled_frames == 50


def test_idempotency_and_notifications(client, tmp_path):
    video = numbered_video(tmp_path / "n.mp4", frames=10)
    messages = []
    topic = "arn:aws:sns:us-east-1:123456789012:AmazonRekognitionDone"
    client.subscribe(messages.append, SNSTopicArn=topic)
    other = []
    client.subscribe(other.append, SNSTopicArn="arn:aws:sns:us-east-1:123456789012:Other")
    kw = dict(Video={"Path": str(video)}, ClientRequestToken="t1", JobTag="exp1",
              NotificationChannel={"SNSTopicArn": topic, "RoleArn": "arn:aws:iam::123456789012:role/r"})
    first = client.start_face_detection(**kw)["JobId"]
    rk.Job(first, client).wait(progress=False)
    again = client.start_face_detection(**kw)["JobId"]
    assert again == first
    with pytest.raises(client.exceptions.IdempotentParameterMismatchException):
        client.start_face_detection(**{**kw, "FaceAttributes": "ALL"})
    assert len(messages) == 1 and other == []  # no second notification for the repeat
    m = messages[0]
    assert set(m) == {"JobId", "Status", "API", "JobTag", "Timestamp", "Video"}
    assert (m["JobId"], m["Status"], m["API"], m["JobTag"]) == (first, "SUCCEEDED", "StartFaceDetection", "exp1")
    assert m["Video"] == {"S3ObjectName": str(video)} and isinstance(m["Timestamp"], int)
    # The same token on another client in a new process still answers (on disk).
    assert rk.client().start_face_detection(**kw)["JobId"] == first


class _Gate:
    """An analyzer that blocks until released: keeps jobs IN_PROGRESS on purpose."""

    def __init__(self):
        self.release = threading.Event()

    def install(self, monkeypatch):
        import rekolab.analysis as analysis
        from rekolab.results.schema import FACES_SCHEMA
        gate = self

        class Blocking:
            schema = FACES_SCHEMA

            def __init__(self, params):
                pass

            def models(self):
                return {}

            def __call__(self, batch):
                gate.release.wait(30)
                return pa.RecordBatch.from_pylist([], schema=FACES_SCHEMA)

        monkeypatch.setattr(analysis, "analyzer_for", lambda op, params: Blocking(params))


def test_21st_concurrent_job_is_refused(tmp_path, monkeypatch):
    gate = _Gate()
    gate.install(monkeypatch)
    video = numbered_video(tmp_path / "n.mp4", frames=5)
    client = rk.client()
    try:
        ids = [client.start_face_detection(Video={"Path": str(video)})["JobId"] for _ in range(20)]
        assert {client.get_face_detection(JobId=i)["JobStatus"] for i in ids} == {"IN_PROGRESS"}
        with pytest.raises(client.exceptions.LimitExceededException, match="20 open Jobs"):
            client.start_face_detection(Video={"Path": str(video)})
    finally:
        gate.release.set()
    for i in ids:
        assert client.jobs.wait(i, timeout=60).status == "SUCCEEDED"
    last = client.start_face_detection(Video={"Path": str(video)})["JobId"]  # room again
    assert client.jobs.wait(last, timeout=60).status == "SUCCEEDED"


def test_limit_is_configurable(tmp_path, monkeypatch):
    gate = _Gate()
    gate.install(monkeypatch)
    video = numbered_video(tmp_path / "n.mp4", frames=5)
    client = rk.client(max_concurrent_jobs=2)
    try:
        ids = [client.start_face_detection(Video={"Path": str(video)})["JobId"] for _ in range(2)]
        with pytest.raises(client.exceptions.LimitExceededException, match="Maximum limit: 2"):
            client.start_face_detection(Video={"Path": str(video)})
    finally:
        gate.release.set()
    for i in ids:  # no job of this test may outlive it
        assert client.jobs.wait(i, timeout=60).status == "SUCCEEDED"


def test_pagination_tokens(client, tmp_path, monkeypatch):
    video = still_video(MEDIA / "faces/insightface_t1.jpg", tmp_path / "t1.mp4", frames=1)
    a = rk.start_face_detection(video, client=client).wait(progress=False)
    b = rk.start_face_detection(video, sample_rate=1, client=client).wait(progress=False)
    page = client.get_face_detection(JobId=a.id, MaxResults=4)
    assert len(page["Faces"]) == 4 and page["NextToken"]
    rest = client.get_face_detection(JobId=a.id, MaxResults=4, NextToken=page["NextToken"])
    assert len(rest["Faces"]) == 2 and "NextToken" not in rest
    tampered = page["NextToken"][:-2] + ("AA" if not page["NextToken"].endswith("AA") else "BB")
    for bad in [tampered, "garbage", page["NextToken"].split(".")[0]]:
        with pytest.raises(client.exceptions.InvalidPaginationTokenException):
            client.get_face_detection(JobId=a.id, NextToken=bad)
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.get_face_detection(JobId=b.id, NextToken=page["NextToken"])  # foreign
    # MaxResults over 1000 is capped, not refused.
    assert len(client.get_face_detection(JobId=a.id, MaxResults=5000)["Faces"]) == 6


def test_failed_job_truncated_mid_way(client, tmp_path):
    """moov first, mdat cut in half: the index over-reports frames; the job FAILS, never hangs."""
    truncated_video(MEDIA / "video/slow_traffic_small.mp4", tmp_path / "cut.mp4")
    job = rk.start_face_detection(tmp_path / "cut.mp4", client=client)
    record = client.jobs.wait(job.id, timeout=300)
    assert record.status == "FAILED"
    assert "Video decoding failed" in record.status_message
    page = client.get_face_detection(JobId=job.id)
    validate_response("GetFaceDetection", page)
    assert page["JobStatus"] == "FAILED" and "Faces" not in page and page["StatusMessage"]
    assert not (record.path / "results.parquet").exists()
    with pytest.raises(RuntimeError, match="FAILED"):
        job.to_pandas()


def test_results_survive_a_new_process(client, tmp_path, rekolab_home):
    """Another Python process reads a finished job: get_face_detection and rk.Job."""
    video = still_video(MEDIA / "faces/two_people.jpg", tmp_path / "two.mp4", frames=1)
    job = rk.start_face_detection(video, client=client).wait(progress=False)
    expected = client.get_face_detection(JobId=job.id)
    code = ("import json, rekolab as rk, sys; c = rk.client();"
            f"p = c.get_face_detection(JobId={job.id!r});"
            f"df = rk.Job({job.id!r}).to_pandas();"
            "print(json.dumps([p, len(df)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=120)
    page, rows = json.loads(out.stdout)
    assert body(page) == json.loads(json.dumps(body(expected))) and rows == 2  # RequestIds differ


def test_interrupted_job_reads_failed_after_restart(models_dir, tmp_path, rekolab_home):
    """A process that dies mid-job leaves no results; the job reads FAILED afterwards."""
    video = MEDIA / "video/slow_traffic_small.mp4"
    code = ("import os, sys, rekolab as rk;"
            f"j = rk.start_face_detection({str(video)!r}, sample_rate=30);"
            "print(j.id, flush=True);"
            "os._exit(0)")  # die while the job runs
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=120)
    job_id = out.stdout.strip().splitlines()[-1]
    client = rk.client()
    page = client.get_face_detection(JobId=job_id)
    assert page["JobStatus"] == "FAILED" and "interrupted" in page["StatusMessage"]
    validate_response("GetFaceDetection", page)
    job_dir = rekolab_home / "jobs" / job_id
    assert not (job_dir / "results.parquet").exists() and not (job_dir / "results.parquet.part").exists()


def test_notebook_handle(client, tmp_path):
    import asyncio
    video = still_video(MEDIA / "faces/obama.jpg", tmp_path / "o.mp4", frames=1)
    job = rk.start_face_detection(video, face_attributes="ALL", client=client)
    assert "StartFaceDetection" in repr(job)
    job = asyncio.run(_await(job))
    assert job.status == "SUCCEEDED" and "rows=1" in repr(job)
    out = job.to_parquet(tmp_path / "faces.parquet")
    import pyarrow.parquet as pq
    table = pq.read_table(out)
    meta = json.loads(table.schema.metadata[b"rekolab"])
    assert meta["Request"]["FaceAttributes"] == "ALL" and meta["VideoMetadata"]["Codec"] == "h264"
    assert table.num_rows == 1 and table.equals(job.to_arrow())
    assert rk.Job(job.id, client).to_pandas()["Gender"].iloc[0]["Value"] == "Male"


async def _await(job):
    return await job


def test_import_pulls_no_heavy_libraries():
    heavy = ("torch", "torchvision", "insightface", "decord", "onnxruntime", "open_clip", "cv2", "av",
             "matplotlib", "ipywidgets", "skimage", "scipy", "fsspec")
    code = f"import sys, rekolab; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         timeout=120)
    assert out.stdout.strip() == "[]"


def test_exit_interrupts_running_jobs_instead_of_finishing_them(models_dir, rekolab_home):
    """A script that ends while its job runs exits without running the job to the
    end: the job reads FAILED ("interrupted"), with no results."""
    video = MEDIA / "video/slow_traffic_small.mp4"
    code = ("import rekolab as rk;"
            f"j = rk.start_face_detection({str(video)!r}, face_attributes='ALL', sample_rate=30);"
            "q = rk.start_face_detection(" + repr(str(video)) + ");"  # queued behind it
            "print(j.id, q.id, flush=True)")  # then the interpreter exits normally
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, timeout=300)
    running, queued = out.stdout.split()
    for job_id in (running, queued):
        page = rk.client().get_face_detection(JobId=job_id)
        assert page["JobStatus"] == "FAILED" and "interrupted" in page["StatusMessage"]
        assert not (rekolab_home / "jobs" / job_id / "results.parquet").exists()


def test_a_job_stays_in_the_home_it_started_in(client, tmp_path, monkeypatch, rekolab_home):
    video = still_video(MEDIA / "faces/obama.jpg", tmp_path / "o.mp4", frames=1)
    gate = _Gate()
    gate.install(monkeypatch)
    job_id = client.start_face_detection(Video={"Path": str(video)})["JobId"]
    other = tmp_path / "other-home"
    monkeypatch.setenv("REKOLAB_HOME", str(other))  # switched while the job runs
    gate.release.set()
    assert client.jobs.wait(job_id, timeout=60) is not None
    assert (rekolab_home / "jobs" / job_id / "results.parquet").exists()
    assert not (other / "jobs" / job_id).exists()
    monkeypatch.setenv("REKOLAB_HOME", str(rekolab_home))
    assert client.get_face_detection(JobId=job_id)["JobStatus"] == "SUCCEEDED"


def test_job_ids_cannot_name_paths(client):
    for bad in ["../../etc", "a/b", ""]:
        with pytest.raises(client.exceptions.InvalidParameterException):
            rk.Job(bad, client)
