"""Start* jobs on an executor (``REKOLAB_EXECUTOR`` / ``rk.client(executor=...)``):
the same rows as the in-process thread job, analysed in worker processes, split
into parallel segments with two workers; bad input still fails at Start; a worker
killed twice ends the job FAILED with the cause. The Ray path is tested on
tests/test_datasets.py's two-node cluster (a local ``ray.init`` alone takes ~30 s
here; the cluster is started there anyway).

The Hamilton clip (9 s) at SampleRate 3 is 28 samples: with ``REKOLAB_SEGMENT_S=3``
and two workers it runs as two segments (16 + 12 samples), so a face crosses the
boundary and face search / celebrity identities are stitched, then celebrity
naming is finalized once over the merged rows.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import MEDIA, MODELS, module_env, need

import rekolab as rk
from rekolab.errors import InvalidParameterException
from rekolab.testing import validate_response

RATE = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need(MODELS / "insightface" / "models")
    with module_env(tmp_path_factory, "jobexec-home", REKOLAB_EXECUTOR=None, REKOLAB_SEGMENT_S="3",
                    REKOLAB_WORKERS=None) as home:
        yield home


@pytest.fixture(scope="module")
def video():
    return str(need(MEDIA / "video" / "short_hamilton_clip.mp4"))


@pytest.fixture(scope="module")
def clients(env):
    thread, pool = rk.client(), rk.client(executor="local", workers=2)
    assert thread.jobs.runner is None and pool.jobs.runner.name == "local"
    yield thread, pool
    pool.jobs.runner.close()


def _run(client, start, get, params, progress=None):
    job_id = getattr(client, start)(**params)["JobId"]
    record = client.jobs.wait(job_id, timeout=300, on_progress=progress)
    assert record.status == "SUCCEEDED", record.status_message
    rows, token = [], None
    while True:
        resp = getattr(client, get)(JobId=job_id, **({"NextToken": token} if token else {}))
        validate_response("".join(w.title() for w in get.split("_")), resp)
        key = next(k for k in ("Faces", "Persons", "Celebrities") if k in resp)
        rows += resp[key]
        token = resp.get("NextToken")
        if not token:
            return record, rows


CASES = {
    "faces": ("start_face_detection", "get_face_detection", {}),
    "search": ("start_face_search", "get_face_search", {"CollectionId": "cast"}),
    "celebrities": ("start_celebrity_recognition", "get_celebrity_recognition", {}),
}


@pytest.fixture
def cast(env, rekolab_home):
    """A collection and a celebrity gallery in this test's home."""
    from rekolab.api import Collection

    face = MEDIA / "faces" / "lin-manuel-miranda.png"
    Collection.create("cast").index(str(face), external_image_id="lin")
    rk.celebrities.gallery().add("Lin-Manuel Miranda", images=[face])


@pytest.mark.parametrize("case", list(CASES))
def test_jobs_on_two_local_workers_equal_the_thread_job(clients, video, request, case):
    if case != "faces":
        request.getfixturevalue("cast")
    thread, pool = clients
    start, get, extra = CASES[case]
    params = {"Video": {"Path": video}, "SampleRate": RATE, **extra}
    expected_record, expected = _run(thread, start, get, params)
    seen = []
    record, rows = _run(pool, start, get, params, progress=lambda done, total: seen.append((done, total)))
    assert rows == expected and rows, case
    n = expected_record.sampled_frames
    assert record.sampled_frames == n and 16 < n <= 32  # two segments: 16 + the rest
    assert record.models == expected_record.models
    # the work ran in other processes, as two parallel segments (plus celebrity naming once)
    kinds = [w["kind"] for w in record.workers]
    assert kinds[:3] == ["video", "segment", "segment"], kinds
    assert kinds[3:] == (["finalize"] if case == "celebrities" else []), kinds
    assert all(w["pid"] and w["pid"] != os.getpid() for w in record.workers)
    assert not expected_record.workers
    assert seen and seen[-1] == (n, n) and len({d for d, _ in seen}) >= 2, seen  # moved per segment
    if case == "search":  # a Person.Index crosses the boundary: the stitching is exercised
        boundary = 16 / RATE * 1000
        before = {r["Person"]["Index"] for r in rows if r["Timestamp"] < boundary}
        assert before & {r["Person"]["Index"] for r in rows if r["Timestamp"] >= boundary}

def test_bad_video_fails_at_start_without_a_worker(env, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video file\n" * 40)
    client = rk.client(executor="local", workers=2)
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.start_face_detection(Video={"Path": str(bad)})
    assert client.jobs.runner._executor is None  # nothing was sent anywhere


def test_executor_comes_from_the_environment(env, monkeypatch):
    monkeypatch.setenv("REKOLAB_EXECUTOR", "local")
    assert rk.client().jobs.runner.name == "local"
    monkeypatch.setenv("REKOLAB_EXECUTOR", "thread")
    assert rk.client().jobs.runner is None
    monkeypatch.setenv("REKOLAB_EXECUTOR", "spark")
    with pytest.raises(InvalidParameterException, match="spark"):
        rk.client()


def test_killed_worker_fails_the_job_with_the_cause(env, video):
    """The executor retries a dead worker's task once; the second death FAILS the job."""
    client = rk.client(executor="local", workers=1)
    job_id = client.start_face_detection(Video={"Path": video}, SampleRate=1)["JobId"]
    killed, deadline = set(), time.monotonic() + 60
    while time.monotonic() < deadline and client.jobs.record(job_id).status == "IN_PROGRESS":
        ex = client.jobs.runner._executor
        for w in list(ex._pool) if ex is not None else []:
            if w.task is not None and w.process.pid not in killed and w.process.is_alive():
                os.kill(w.process.pid, signal.SIGKILL)
                killed.add(w.process.pid)
        time.sleep(0.02)
    record = client.jobs.wait(job_id, timeout=60)
    client.jobs.runner.close()
    assert len(killed) == 2, killed
    assert record.status == "FAILED"
    assert "WorkerCrashed" in record.status_message and "killed by SIGKILL" in record.status_message, \
        record.status_message
    resp = client.get_face_detection(JobId=job_id)
    validate_response("GetFaceDetection", resp)
    assert resp["JobStatus"] == "FAILED" and resp["StatusMessage"] == record.status_message
    assert not (record.path / "results.parquet").exists()
    assert not (record.path / "results.parquet.part").exists()

