"""StartFaceSearch / GetFaceSearch on stored video, with the real face pack, a
collection of real stills, and the Hamilton clip; plus the job contract."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest

import rekolab as rk
from rekolab import testing
from rekolab.testing import body, validate_response

from conftest import MEDIA, REPO, module_env

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"
CAST = [("lin-manuel-miranda", "faces/lin-manuel-miranda.png"), ("obama", "faces/obama.jpg"),
        ("biden", "faces/biden.jpg")]
DEFAULT_KEYS = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
# Lin-Manuel Miranda's close-up shot (shot cuts at 800, 2802 and 7207 ms; the last
# shot is the audience, with the Obamas).
CLOSE_UP = (2800, 7100)
AUDIENCE_FROM = 7200


def make_cast(client, names=("lin-manuel-miranda", "obama", "biden"), collection="cast"):
    client.create_collection(CollectionId=collection)
    for external_id, path in CAST:
        if external_id in names:
            r = client.index_faces(CollectionId=collection, Image={"Bytes": (MEDIA / path).read_bytes()},
                                   ExternalImageId=external_id)
            assert len(r["FaceRecords"]) == 1


@pytest.fixture(scope="module")
def hamilton(tmp_path_factory):
    """One face search of the Hamilton clip against Lin-Manuel Miranda, Obama and Biden."""
    import os
    if not HAMILTON.exists():
        pytest.skip(f"needs {HAMILTON}")
    with module_env(tmp_path_factory):
        c = rk.client(buckets={"media": str(HAMILTON.parent)})
        make_cast(c)
        r = c.start_face_search(Video={"S3Object": {"Bucket": "media", "Name": HAMILTON.name}},
                                CollectionId="cast", JobTag="cast-search")
        validate_response("StartFaceSearch", r)
        job = rk.Job(r["JobId"], c).wait(progress=False)
        yield c, job, os.environ["REKOLAB_HOME"]


@pytest.fixture
def home(hamilton, monkeypatch):
    monkeypatch.setenv("REKOLAB_HOME", hamilton[2])
    return hamilton


def all_pages(client, job_id, **kwargs):
    """All Persons of a finished face search, and how many pages carried them."""
    pages = testing.all_pages(client.get_face_search, "GetFaceSearch", JobId=job_id, **kwargs)
    for page in pages:
        assert "VideoMetadata" in page and page["JobStatus"] == "SUCCEEDED"
    return [item for page in pages for item in page["Persons"]], len(pages)


def names(item) -> list[str]:
    return [m["Face"]["ExternalImageId"] for m in item["FaceMatches"]]


def test_finds_lin_manuel_miranda_at_the_right_times(home):
    client, job, _ = home
    assert job.status == "SUCCEEDED", job.status_message
    page = client.get_face_search(JobId=job.id)
    validate_response("GetFaceSearch", page)
    assert page["JobTag"] == "cast-search" and page["VideoMetadata"]["DurationMillis"] == 9175
    persons = page["Persons"]
    samples = sorted({p["Timestamp"] for p in persons if CLOSE_UP[0] <= p["Timestamp"] <= CLOSE_UP[1]})
    lin = [p for p in persons if "lin-manuel-miranda" in names(p)]
    lin_times = {p["Timestamp"] for p in lin}
    # He is found in (nearly) every sample of his close-up, as one tracked person ...
    assert len(samples) >= 20 and len(lin_times & set(samples)) >= 0.9 * len(samples)
    close_up_index = {p["Person"]["Index"] for p in lin if CLOSE_UP[0] <= p["Timestamp"] <= CLOSE_UP[1]}
    assert len(close_up_index) == 1
    # ... never in the audience shot, and when found he is the best match, at >= 80.
    assert max(lin_times) < AUDIENCE_FROM
    for p in lin:
        assert p["FaceMatches"][0]["Face"]["ExternalImageId"] == "lin-manuel-miranda"
        assert all(m["Similarity"] >= 80 for m in p["FaceMatches"])
    # Biden is not in the video: never matched. Obama only sits in the audience.
    assert not any("biden" in names(p) for p in persons)
    assert all(p["Timestamp"] >= AUDIENCE_FROM for p in persons if "obama" in names(p))
    # Everyone else detected is a person with no match (the pianist, the audience).
    unmatched = [p for p in persons if not p["FaceMatches"]]
    assert len(unmatched) >= 30
    assert {p["Person"]["Index"] for p in unmatched if p["Timestamp"] >= AUDIENCE_FROM} >= {
        p["Person"]["Index"] for p in persons if p["Timestamp"] >= AUDIENCE_FROM} - {
        p["Person"]["Index"] for p in persons if p["FaceMatches"]}


def test_person_index_does_not_cross_shot_cuts(home):
    client, job, _ = home
    persons, _ = all_pages(client, job.id)
    spans = defaultdict(list)
    for p in persons:
        spans[p["Person"]["Index"]].append(p["Timestamp"])
    cuts = [800, 2802, 7207]
    for index, times in spans.items():
        shot = {sum(t >= c for c in cuts) for t in times}
        assert len(shot) == 1, (index, times)
    assert sorted(spans) == list(range(len(spans)))  # indexes 0..n-1, in order of appearance


def test_item_shape_default_attributes(home):
    client, job, _ = home
    persons, _ = all_pages(client, job.id)
    for p in persons:
        assert set(p) == {"Timestamp", "Person", "FaceMatches"}
        assert set(p["Person"]) == {"Index", "Face"}  # no body detector: no Person.BoundingBox
        assert set(p["Person"]["Face"]) == DEFAULT_KEYS
        for m in p["FaceMatches"]:
            assert set(m["Face"]) == {"FaceId", "BoundingBox", "ImageId", "ExternalImageId", "Confidence",
                                      "IndexFacesModelVersion"}
        sims = [m["Similarity"] for m in p["FaceMatches"]]
        assert sims == sorted(sims, reverse=True)
    assert set(job.models) >= {"FacePack", "Recognizer", "CollectionId", "Similarity", "Tracker"}


def test_sort_by_and_pages(home):
    client, job, _ = home
    by_time, _ = all_pages(client, job.id)
    assert [(p["Timestamp"], p["Person"]["Index"]) for p in by_time] == sorted(
        (p["Timestamp"], p["Person"]["Index"]) for p in by_time)
    by_index, _ = all_pages(client, job.id, SortBy="INDEX")
    keys = [(p["Person"]["Index"], -p["Person"]["Face"]["Confidence"]) for p in by_index]
    assert keys == sorted(keys)  # by person, each person's items by detection confidence
    paged, pages = all_pages(client, job.id, SortBy="INDEX", MaxResults=7)
    assert paged == by_index and pages == -(-len(by_index) // 7)
    assert sorted(json.dumps(p, sort_keys=True) for p in by_time) == sorted(
        json.dumps(p, sort_keys=True) for p in by_index)
    df = job.to_pandas()
    assert len(df) == len(by_time) and set(df["Index"]) == {p["Person"]["Index"] for p in by_time}
    token = client.get_face_search(JobId=job.id, SortBy="INDEX", MaxResults=3)["NextToken"]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.get_face_search(JobId=job.id, SortBy="TIMESTAMP", NextToken=token)
    with pytest.raises(client.exceptions.InvalidParameterException, match="SortBy"):
        client.get_face_search(JobId=job.id, SortBy="NAME")


def test_results_survive_a_new_process(home):
    client, job, _ = home
    expected = client.get_face_search(JobId=job.id, SortBy="INDEX", MaxResults=20)
    code = ("import json, rekolab as rk;"
            f"p = rk.client().get_face_search(JobId={job.id!r}, SortBy='INDEX', MaxResults=20);"
            "p.pop('NextToken'); print(json.dumps(p))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         timeout=120)
    expected.pop("NextToken")
    assert body(json.loads(out.stdout)) == json.loads(json.dumps(body(expected)))  # RequestIds differ


def test_nobody_matches_when_the_collection_holds_no_one_in_the_clip(models_dir, media):
    client = rk.client()
    make_cast(client, names=("biden",), collection="biden-only")
    job = rk.start_face_search(HAMILTON, collection_id="biden-only", sample_rate=2, client=client)
    job.wait(progress=False)
    persons, _ = all_pages(client, job.id)
    assert len(persons) >= 20 and all(p["FaceMatches"] == [] for p in persons)


def test_notebook_verbs_and_threshold(models_dir, media):
    cast = rk.Collection.create("cast")
    cast.index(media / "faces/lin-manuel-miranda.png", "lin-manuel-miranda")
    job = cast.start_face_search(HAMILTON, face_match_threshold=99, sample_rate=2).wait(progress=False)
    assert job.status == "SUCCEEDED" and job.request["FaceMatchThreshold"] == 99
    df = job.to_pandas()
    found = [m for ms in df["FaceMatches"] for m in ms]
    assert found and all(m["Similarity"] >= 99 for m in found)
    loose = rk.start_face_search(HAMILTON, "cast", 0, sample_rate=2).wait(progress=False).to_pandas()
    assert len(loose) == len(df) and all(len(ms) == 1 for ms in loose["FaceMatches"])  # threshold 0: all match


def test_start_errors(models_dir, media, tmp_path):
    client = rk.client(buckets={"media": str(HAMILTON.parent)})
    video = {"S3Object": {"Bucket": "media", "Name": HAMILTON.name}}
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="nobody"):
        client.start_face_search(Video=video, CollectionId="nobody")
    client.create_collection(CollectionId="cast")
    for kwargs, exc, fragment in [
        ({"CollectionId": "bad id"}, client.exceptions.InvalidParameterException, "pattern"),
        ({"CollectionId": "cast", "FaceMatchThreshold": 150}, client.exceptions.InvalidParameterException, "100"),
        ({"CollectionId": "cast", "SampleRate": 0}, client.exceptions.InvalidParameterException, "SampleRate"),
        ({}, rk.ParamValidationError, "CollectionId"),
    ]:
        with pytest.raises(exc, match=fragment):
            client.start_face_search(Video=video, **kwargs)
    with pytest.raises(client.exceptions.InvalidS3ObjectException):
        client.start_face_search(Video={"S3Object": {"Bucket": "media", "Name": "nothing.mp4"}}, CollectionId="cast")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_face_search(JobId="f" * 64)
    detection = client.start_face_detection(Video=video, SampleRate=0.5)["JobId"]
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="StartFaceDetection"):
        client.get_face_search(JobId=detection)
    rk.Job(detection, client).wait(progress=False)


def test_idempotency_notification_and_failure(models_dir, media):
    client = rk.client()
    make_cast(client, names=("lin-manuel-miranda",))
    messages = []
    client.subscribe(messages.append)
    kw = dict(Video={"Path": str(HAMILTON)}, CollectionId="cast", ClientRequestToken="search-1", SampleRate=1)
    first = client.start_face_search(**kw)["JobId"]
    rk.Job(first, client).wait(progress=False)
    assert client.start_face_search(**kw)["JobId"] == first
    with pytest.raises(client.exceptions.IdempotentParameterMismatchException):
        client.start_face_search(**{**kw, "FaceMatchThreshold": 90})
    assert [(m["JobId"], m["Status"], m["API"]) for m in messages] == [(first, "SUCCEEDED", "StartFaceSearch")]
    # The collection disappears while a job runs: the job FAILS with a message, and
    # GetFaceSearch still answers (no exception from Get*).
    job = rk.start_face_search(HAMILTON, "cast", client=client)
    client.delete_collection(CollectionId="cast")
    job.wait(progress=False)
    page = client.get_face_search(JobId=job.id)
    validate_response("GetFaceSearch", page)
    assert page["JobStatus"] == "FAILED" and "cast" in page["StatusMessage"] and "Persons" not in page


def test_start_face_search_validates_once(models_dir, tmp_path, monkeypatch):
    """parse_start validates the request once; the collection check comes after it."""
    import rekolab.requests as requests

    client = rk.client()
    client.create_collection(CollectionId="cast")
    calls = []
    real = requests.validate_request

    def counting(operation, params):
        calls.append(operation)
        return real(operation, params)

    monkeypatch.setattr(requests, "validate_request", counting)
    with pytest.raises(rk.errors.RekognitionError, match="missing.mp4"):  # no such video: after validation
        client.start_face_search(Video={"Path": str(tmp_path / "missing.mp4")}, CollectionId="cast")
    assert calls == ["StartFaceSearch"]
    calls.clear()
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="nobody"):
        client.start_face_search(Video={"Path": str(tmp_path / "missing.mp4")}, CollectionId="nobody")
    assert calls == ["StartFaceSearch"]
