"""Users API (CreateUser ... SearchUsersByImage) on a real collection of real stills, and
tags on collections and stream processors: statuses, limits, errors, concurrency."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import rekolab as rk
from rekolab import collections as C
from rekolab.testing import body, validate_response

from conftest import MEDIA, MODELS, REPO, module_env, need

PEOPLE = {"obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "biden": ["biden.jpg", "biden2.jpg"],
          "lin": ["lin-manuel-miranda.png"], "alex": ["alex-lacamoire.png"]}


def image(name: str) -> dict:
    return {"Bytes": (MEDIA / "faces" / name).read_bytes()}


def code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Collection "cast": one face per still. Yields (client, {file: FaceId}, home)."""
    need(MODELS / "insightface" / "models")
    need(MEDIA / "faces" / "obama.jpg")
    with module_env(tmp_path_factory, "users-home") as home:
        client = rk.client()
        client.create_collection(CollectionId="cast")
        ids = {}
        for files in PEOPLE.values():
            for f in files:
                r = client.index_faces(CollectionId="cast", Image=image(f), ExternalImageId=f)
                ids[f] = r["FaceRecords"][0]["Face"]["FaceId"]
        yield client, ids, home


@pytest.fixture
def env(faces, monkeypatch):
    client, ids, home = faces
    monkeypatch.setenv("REKOLAB_HOME", str(home))
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(MODELS))
    yield client, ids
    for u in client.list_users(CollectionId="cast")["Users"]:  # each test starts with no users
        client.delete_user(CollectionId="cast", UserId=u["UserId"])


def call(client, op: str, **kwargs) -> dict:
    method = "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")
    r = getattr(client, method)(**kwargs)
    validate_response(op, r)
    return body(r)


def test_user_lifecycle_statuses_and_counts(env):
    client, ids = env
    assert call(client, "CreateUser", CollectionId="cast", UserId="obama") == {}
    assert call(client, "ListUsers", CollectionId="cast")["Users"] == [{"UserId": "obama", "UserStatus": "CREATED"}]
    assert call(client, "DescribeCollection", CollectionId="cast")["UserCount"] == 1
    obama = [ids[f] for f in PEOPLE["obama"]]
    r = call(client, "AssociateFaces", CollectionId="cast", UserId="obama", FaceIds=obama)
    assert r == {"AssociatedFaces": [{"FaceId": f} for f in obama], "UnsuccessfulFaceAssociations": [],
                 "UserStatus": "ACTIVE"}
    # Already the user's: ignored, not returned.
    r = call(client, "AssociateFaces", CollectionId="cast", UserId="obama", FaceIds=obama[:1])
    assert r["AssociatedFaces"] == [] and r["UnsuccessfulFaceAssociations"] == []
    listed = call(client, "ListFaces", CollectionId="cast", UserId="obama")["Faces"]
    assert sorted(f["FaceId"] for f in listed) == sorted(obama) and {f["UserId"] for f in listed} == {"obama"}
    r = call(client, "DisassociateFaces", CollectionId="cast", UserId="obama", FaceIds=obama)
    assert [f["FaceId"] for f in r["DisassociatedFaces"]] == obama and r["UserStatus"] == "CREATED"
    assert call(client, "DeleteUser", CollectionId="cast", UserId="obama") == {}
    assert call(client, "ListUsers", CollectionId="cast")["Users"] == []
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.delete_user(CollectionId="cast", UserId="obama")


def test_association_reasons_and_errors(env):
    client, ids = env
    for u in ("obama", "biden"):
        client.create_user(CollectionId="cast", UserId=u)
    client.associate_faces(CollectionId="cast", UserId="obama", FaceIds=[ids["obama.jpg"], ids["obama2.jpg"]])
    client.associate_faces(CollectionId="cast", UserId="biden", FaceIds=[ids["biden.jpg"]])
    missing = "00000000-0000-4000-8000-000000000000"
    r = call(client, "AssociateFaces", CollectionId="cast", UserId="obama",
             FaceIds=[ids["obama3.jpg"], ids["biden.jpg"], ids["biden2.jpg"], missing])
    assert r["AssociatedFaces"] == [{"FaceId": ids["obama3.jpg"]}]
    reasons = {f["FaceId"]: f for f in r["UnsuccessfulFaceAssociations"]}
    assert reasons[missing]["Reasons"] == ["FACE_NOT_FOUND"]
    assert reasons[ids["biden.jpg"]]["Reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    assert reasons[ids["biden.jpg"]]["UserId"] == "biden"
    low = reasons[ids["biden2.jpg"]]  # Biden's face does not match Obama's user vector
    assert low["Reasons"] == ["LOW_MATCH_CONFIDENCE"] and low["Confidence"] < 75
    # UserMatchThreshold 0 lets it through.
    r = call(client, "AssociateFaces", CollectionId="cast", UserId="obama", FaceIds=[ids["biden2.jpg"]],
             UserMatchThreshold=0)
    assert r["AssociatedFaces"] == [{"FaceId": ids["biden2.jpg"]}]
    r = call(client, "DisassociateFaces", CollectionId="cast", UserId="obama",
             FaceIds=[ids["biden2.jpg"], ids["biden.jpg"], missing, ids["lin-manuel-miranda.png"]])
    assert r["DisassociatedFaces"] == [{"FaceId": ids["biden2.jpg"]}]  # lin: no user -> ignored
    assert {f["FaceId"]: f["Reasons"] for f in r["UnsuccessfulFaceDisassociations"]} == {
        ids["biden.jpg"]: ["ASSOCIATED_TO_A_DIFFERENT_USER"], missing: ["FACE_NOT_FOUND"]}
    with pytest.raises(client.exceptions.ConflictException):
        client.create_user(CollectionId="cast", UserId="obama")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.associate_faces(CollectionId="cast", UserId="nobody", FaceIds=[ids["obama.jpg"]])
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.create_user(CollectionId="no-such-collection", UserId="x")
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.create_user(CollectionId="cast", UserId="bad/id")  # UserId pattern
    with pytest.raises(rk.ParamValidationError):
        client.associate_faces(CollectionId="cast", UserId="obama", FaceIds=[])  # min 1
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.search_users(CollectionId="cast", UserId="obama", FaceId=ids["obama.jpg"])


def test_search_users_by_image_finds_that_user_and_no_other(env):
    client, ids = env
    for user, files in PEOPLE.items():
        client.create_user(CollectionId="cast", UserId=user)
        r = client.associate_faces(CollectionId="cast", UserId=user, FaceIds=[ids[f] for f in files])
        assert len(r["AssociatedFaces"]) == len(files)
    for user, probe in (("obama", "obama2.jpg"), ("biden", "biden2.jpg"), ("lin", "lin-manuel-miranda.png")):
        r = call(client, "SearchUsersByImage", CollectionId="cast", Image=image(probe))
        assert [m["User"]["UserId"] for m in r["UserMatches"]] == [user], (probe, r["UserMatches"])
        assert r["UserMatches"][0]["Similarity"] >= 80 and r["UserMatches"][0]["User"]["UserStatus"] == "ACTIVE"
        assert "BoundingBox" in r["SearchedFace"]["FaceDetail"] and r["UnsearchedFaces"] == []
    # Three faces: the largest is searched, the others are FACE_NOT_LARGEST.
    r = call(client, "SearchUsersByImage", CollectionId="cast", Image=image("obama_and_biden.jpg"),
             UserMatchThreshold=0, MaxUsers=2)
    assert len(r["UserMatches"]) == 2 and len(r["UnsearchedFaces"]) == 2
    assert all("FACE_NOT_LARGEST" in u["Reasons"] for u in r["UnsearchedFaces"])
    # No face: empty matches, no SearchedFace (not an error).
    r = call(client, "SearchUsersByImage", CollectionId="cast",
             Image={"Bytes": (MEDIA / "scenes" / "dog.jpg").read_bytes()})
    assert r["UserMatches"] == [] and "SearchedFace" not in r
    # SearchUsers by a face and by a user.
    r = call(client, "SearchUsers", CollectionId="cast", FaceId=ids["obama3.jpg"])
    assert [m["User"]["UserId"] for m in r["UserMatches"]] == ["obama"]
    assert r["SearchedFace"] == {"FaceId": ids["obama3.jpg"]}
    r = call(client, "SearchUsers", CollectionId="cast", UserId="obama", UserMatchThreshold=0)
    assert "obama" not in [m["User"]["UserId"] for m in r["UserMatches"]] and r["SearchedUser"] == {"UserId": "obama"}
    sims = [m["Similarity"] for m in r["UserMatches"]]
    assert sims == sorted(sims, reverse=True) and max(sims) < 80
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.search_users_by_image(CollectionId="nope", Image=image("obama.jpg"))


def test_list_users_pages_and_idempotency(env):
    client, ids = env
    for u in ("a", "b", "c"):
        client.create_user(CollectionId="cast", UserId=u, ClientRequestToken=f"tok-{u}")
    # The same token and parameters: the first response, no ConflictException.
    assert body(client.create_user(CollectionId="cast", UserId="a", ClientRequestToken="tok-a")) == {}
    with pytest.raises(client.exceptions.IdempotentParameterMismatchException):
        client.create_user(CollectionId="cast", UserId="z", ClientRequestToken="tok-a")
    seen, token = [], None
    while True:
        r = call(client, "ListUsers", CollectionId="cast", MaxResults=2, **({"NextToken": token} if token else {}))
        seen += [u["UserId"] for u in r["Users"]]
        token = r.get("NextToken")
        if not token:
            break
    assert seen == ["a", "b", "c"]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.list_users(CollectionId="cast", NextToken="forged.token")
    first = client.associate_faces(CollectionId="cast", UserId="a", FaceIds=[ids["obama.jpg"]],
                                   ClientRequestToken="assoc-1")
    again = client.associate_faces(CollectionId="cast", UserId="a", FaceIds=[ids["obama.jpg"]],
                                   ClientRequestToken="assoc-1")
    assert body(again) == body(first) and first["AssociatedFaces"] == [{"FaceId": ids["obama.jpg"]}]


def _synthetic_collection(client, name: str, n: int) -> list[str]:
    """A collection of ``n`` faces with random embeddings (no detector run)."""
    client.create_collection(CollectionId=name)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, 128)).astype(np.float32)
    faces = [{"BoundingBox": {"Width": 0.1, "Height": 0.1, "Left": 0.01 * i % 0.9, "Top": 0.0},
              "Confidence": 99.0} for i in range(n)]
    stored = C.add_faces(name, emb / np.linalg.norm(emb, axis=1, keepdims=True), faces, f"sha-{name}")
    return [f["FaceId"] for f in stored]


def test_hundred_faces_per_user_and_deleted_faces_leave_users(env):
    client, _ = env
    ids = _synthetic_collection(client, "synthetic", 102)
    client.create_user(CollectionId="synthetic", UserId="u")
    r = client.associate_faces(CollectionId="synthetic", UserId="u", FaceIds=ids[:100][:1])
    assert len(r["AssociatedFaces"]) == 1
    # Random embeddings do not look alike: threshold 0 to test the count limit alone.
    for chunk in (ids[1:60], ids[60:100]):
        client.associate_faces(CollectionId="synthetic", UserId="u", FaceIds=chunk, UserMatchThreshold=0)
    assert len(client.list_faces(CollectionId="synthetic", UserId="u")["Faces"]) == 100
    with pytest.raises(client.exceptions.ServiceQuotaExceededException):
        client.associate_faces(CollectionId="synthetic", UserId="u", FaceIds=ids[100:], UserMatchThreshold=0)
    client.delete_faces(CollectionId="synthetic", FaceIds=ids[:10])
    assert len(client.list_faces(CollectionId="synthetic", UserId="u")["Faces"]) == 90
    r = client.associate_faces(CollectionId="synthetic", UserId="u", FaceIds=ids[100:], UserMatchThreshold=0)
    assert len(r["AssociatedFaces"]) == 2
    client.delete_collection(CollectionId="synthetic")


def test_concurrent_writers_lose_no_association(env, tmp_path):
    client, _ = env
    ids = _synthetic_collection(client, "busy", 40)
    users = [f"u{i}" for i in range(4)]
    for u in users:
        client.create_user(CollectionId="busy", UserId=u)
    # Two processes and two threads associate disjoint faces at once.
    script = textwrap.dedent("""
        import sys
        import rekolab as rk
        c = rk.client()
        user, faces = sys.argv[1], sys.argv[2].split(",")
        for f in faces:
            c.associate_faces(CollectionId="busy", UserId=user, FaceIds=[f], UserMatchThreshold=0)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, users[k], ",".join(ids[k * 10:(k + 1) * 10])],
                              cwd=REPO) for k in (0, 1)]

    def worker(k):
        for f in ids[k * 10:(k + 1) * 10]:
            client.associate_faces(CollectionId="busy", UserId=users[k], FaceIds=[f], UserMatchThreshold=0)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for k, u in enumerate(users):
        got = {f["FaceId"] for f in client.list_faces(CollectionId="busy", UserId=u)["Faces"]}
        assert got == set(ids[k * 10:(k + 1) * 10]), u
    client.delete_collection(CollectionId="busy")


# ------------------------------------------------------------------ tags


def test_collection_tags(env):
    client, _ = env
    arn = client.describe_collection(CollectionId="cast")["CollectionARN"]
    assert arn.startswith("arn:aws:rekognition:") and arn.endswith(":collection/cast")
    assert call(client, "TagResource", ResourceArn=arn, Tags={"team": "hamilton", "env": "dev"}) == {}
    call(client, "UntagResource", ResourceArn=arn, TagKeys=["env", "absent"])
    assert call(client, "ListTagsForResource", ResourceArn=arn) == {"Tags": {"team": "hamilton"}}
    with pytest.raises(client.exceptions.ServiceQuotaExceededException):
        client.tag_resource(ResourceArn=arn, Tags={f"k{i}": "v" for i in range(50)})  # 51 with "team"
    assert client.list_tags_for_resource(ResourceArn=arn)["Tags"] == {"team": "hamilton"}
    for bad in ({"aws:owner": "x"}, {"k" * 129: "x"}, {"k": "v" * 257}):
        with pytest.raises(client.exceptions.InvalidParameterException):
            client.tag_resource(ResourceArn=arn, Tags=bad)
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.list_tags_for_resource(ResourceArn="arn:aws:s3:::my-bucket/object")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(ResourceArn=arn.replace(":collection/cast", ":collection/nope"))
    call(client, "UntagResource", ResourceArn=arn, TagKeys=["team"])


def test_stream_processor_tags(env):
    client, _ = env
    params = {"Name": "tagged", "Input": {"KinesisVideoStream": {
                  "Arn": "arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam-tagged/1700000000000"}},
              "Output": {"S3Destination": {"Bucket": "my-bucket", "KeyPrefix": "events"}},
              "RoleArn": "arn:aws:iam::123456789012:role/rekognition",
              "NotificationChannel": {"SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:Events"},
              "Settings": {"ConnectedHome": {"Labels": ["PERSON"]}}, "Tags": {"site": "gym"}}
    arn = client.create_stream_processor(**params)["StreamProcessorArn"]
    assert call(client, "ListTagsForResource", ResourceArn=arn) == {"Tags": {"site": "gym"}}
    client.tag_resource(ResourceArn=arn, Tags={"floor": "2"})
    client.untag_resource(ResourceArn=arn, TagKeys=["site"])
    assert body(client.list_tags_for_resource(ResourceArn=arn)) == {"Tags": {"floor": "2"}}
    # The creation request is unchanged: the Name stays idempotent.
    assert client.create_stream_processor(**params)["StreamProcessorArn"] == arn
    client.delete_stream_processor(Name="tagged")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(ResourceArn=arn)
