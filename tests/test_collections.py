"""Face collections end to end: CreateCollection ... SearchFacesByImage with the real
face pack on real stills, errors, persistence, and concurrent writers."""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rekolab as rk
from rekolab import collections as C
from rekolab.testing import body, validate_response

from conftest import MEDIA, REPO

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DEFAULT_KEYS = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
CAST = [("lin-manuel-miranda", "faces/lin-manuel-miranda.png"), ("obama", "faces/obama.jpg"),
        ("biden", "faces/biden.jpg")]


def image(name: str) -> dict:
    return {"Bytes": (MEDIA / name).read_bytes()}


@pytest.fixture
def client(models_dir, media):
    return rk.client(buckets={"media": str(media)})


@pytest.fixture
def cast(client):
    """Collection "cast" holding Lin-Manuel Miranda, Obama and Biden: name -> FaceId."""
    validate_response("CreateCollection", client.create_collection(CollectionId="cast"))
    ids = {}
    for external_id, path in CAST:
        r = client.index_faces(CollectionId="cast", Image=image(path), ExternalImageId=external_id)
        validate_response("IndexFaces", r)
        assert len(r["FaceRecords"]) == 1 and r["UnindexedFaces"] == []
        ids[external_id] = r["FaceRecords"][0]["Face"]["FaceId"]
    return ids


def matches(response) -> list[tuple[str, float]]:
    return [(m["Face"].get("ExternalImageId"), m["Similarity"]) for m in response["FaceMatches"]]


# ------------------------------------------------------------------ collection lifecycle


def test_create_describe_list_delete(client):
    before = dt.datetime.now(dt.timezone.utc)
    r = client.create_collection(CollectionId="cast", Tags={"team": "hamilton"})
    validate_response("CreateCollection", r)
    assert body(r) == {"StatusCode": 200, "CollectionArn": "arn:aws:rekognition:local:000000000000:collection/cast",
                 "FaceModelVersion": "scrfd500m_mfn128"}
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException,
                       match="The collection id: cast already exists."):
        client.create_collection(CollectionId="cast")
    d = client.describe_collection(CollectionId="cast")
    validate_response("DescribeCollection", d)
    assert d["FaceCount"] == 0 and d["UserCount"] == 0 and d["FaceModelVersion"] == "scrfd500m_mfn128"
    assert d["CollectionARN"] == r["CollectionArn"]
    assert before - dt.timedelta(seconds=1) <= d["CreationTimestamp"] <= dt.datetime.now(dt.timezone.utc)
    # Ids are case-sensitive, and "." / ".." are legal ids that stay inside the home.
    for cid in ["Cast", "a.b-c_d", "..", "."]:
        client.create_collection(CollectionId=cid)
    listed = client.list_collections()
    validate_response("ListCollections", listed)
    assert listed["CollectionIds"] == [".", "..", "Cast", "a.b-c_d", "cast"]
    assert listed["FaceModelVersions"] == ["scrfd500m_mfn128"] * 5 and "NextToken" not in listed
    pages, token = [], None
    while True:
        page = client.list_collections(MaxResults=2, **({"NextToken": token} if token else {}))
        validate_response("ListCollections", page)
        pages.append(page["CollectionIds"])
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [[".", ".."], ["Cast", "a.b-c_d"], ["cast"]]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.list_collections(NextToken="garbage")
    assert validate_response("DeleteCollection", client.delete_collection(CollectionId="..")) is None
    assert body(client.delete_collection(CollectionId="cast")) == {"StatusCode": 200}
    for call in (client.describe_collection, client.delete_collection):
        with pytest.raises(client.exceptions.ResourceNotFoundException, match="cast"):
            call(CollectionId="cast")
    assert client.list_collections()["CollectionIds"] == [".", "Cast", "a.b-c_d"]


def test_collection_files_stay_in_the_home(client, rekolab_home):
    client.create_collection(CollectionId="..")
    client.create_collection(CollectionId="x")
    folders = sorted(p.name for p in (rekolab_home / "collections").iterdir())
    assert folders == ["%2E.", ".locks", "x"]
    assert json.loads((rekolab_home / "collections" / "%2E." / "collection.json").read_text())["CollectionId"] == ".."


# ------------------------------------------------------------------ IndexFaces / search on real faces


def test_index_faces_records(client, cast):
    r = client.index_faces(CollectionId="cast", Image=image("faces/obama_and_biden.jpg"),
                           ExternalImageId="group:2009", DetectionAttributes=["ALL"])
    validate_response("IndexFaces", r)
    assert r["FaceModelVersion"] == "scrfd500m_mfn128" and "OrientationCorrection" not in r
    records = r["FaceRecords"]
    assert len(records) == 3 and r["UnindexedFaces"] == []
    areas = [f["Face"]["BoundingBox"]["Width"] * f["Face"]["BoundingBox"]["Height"] for f in records]
    assert areas == sorted(areas, reverse=True)  # largest face first
    image_ids = {f["Face"]["ImageId"] for f in records}
    assert len(image_ids) == 1 and UUID.match(image_ids.pop())
    for rec in records:
        face, detail = rec["Face"], rec["FaceDetail"]
        assert UUID.match(face["FaceId"]) and face["ExternalImageId"] == "group:2009"
        assert re.fullmatch(r"[0-9.]+", face["IndexFacesModelVersion"])
        assert face["BoundingBox"] == detail["BoundingBox"] and face["Confidence"] == detail["Confidence"]
        assert DEFAULT_KEYS | {"AgeRange", "Gender", "Emotions"} <= set(detail)
    assert client.describe_collection(CollectionId="cast")["FaceCount"] == 6
    # DetectionAttributes: DEFAULT always; a named attribute adds only itself.
    one = client.index_faces(CollectionId="cast", Image=image("faces/obama2.jpg"), DetectionAttributes=["GENDER"])
    assert set(one["FaceRecords"][0]["FaceDetail"]) == DEFAULT_KEYS | {"Gender"}
    plain = client.index_faces(CollectionId="cast", Image=image("faces/biden2.jpg"))
    assert set(plain["FaceRecords"][0]["FaceDetail"]) == DEFAULT_KEYS
    assert "ExternalImageId" not in plain["FaceRecords"][0]["Face"]


def test_same_image_and_external_id_do_not_duplicate(client, cast):
    group = {"S3Object": {"Bucket": "media", "Name": "faces/obama_and_biden.jpg"}}
    first = client.index_faces(CollectionId="cast", Image=group, ExternalImageId="group")
    again = client.index_faces(CollectionId="cast", Image=group, ExternalImageId="group")
    validate_response("IndexFaces", again)
    assert [f["Face"] for f in again["FaceRecords"]] == [f["Face"] for f in first["FaceRecords"]]
    assert client.describe_collection(CollectionId="cast")["FaceCount"] == 6
    other = client.index_faces(CollectionId="cast", Image=group, ExternalImageId="group-2")
    assert {f["Face"]["FaceId"] for f in other["FaceRecords"]}.isdisjoint(
        f["Face"]["FaceId"] for f in first["FaceRecords"])
    assert {f["Face"]["ImageId"] for f in other["FaceRecords"]} == {first["FaceRecords"][0]["Face"]["ImageId"]}
    assert client.describe_collection(CollectionId="cast")["FaceCount"] == 9


def test_max_faces_and_quality_filter(client, cast, tmp_path):
    r = client.index_faces(CollectionId="cast", Image=image("faces/obama_and_biden.jpg"), MaxFaces=1)
    validate_response("IndexFaces", r)
    assert len(r["FaceRecords"]) == 1
    assert [u["Reasons"] for u in r["UnindexedFaces"]] == [["EXCEEDS_MAX_FACES"]] * 2
    kept = r["FaceRecords"][0]["Face"]["BoundingBox"]
    assert all(kept["Width"] * kept["Height"] > u["FaceDetail"]["BoundingBox"]["Width"]
               * u["FaceDetail"]["BoundingBox"]["Height"] for u in r["UnindexedFaces"])
    # HIGH refuses the third face (turned ~55 degrees away); AUTO keeps it.
    high = client.index_faces(CollectionId="cast", Image=image("faces/obama_and_biden.jpg"),
                              ExternalImageId="high", QualityFilter="HIGH")
    validate_response("IndexFaces", high)
    assert len(high["FaceRecords"]) == 2 and len(high["UnindexedFaces"]) == 1
    assert "EXTREME_POSE" in high["UnindexedFaces"][0]["Reasons"]
    assert abs(high["UnindexedFaces"][0]["FaceDetail"]["Pose"]["Yaw"]) > 45
    # The Hamilton clip's last shot: a dark, blurred audience. AUTO refuses the
    # blurriest faces with their reasons; NONE indexes every detected face.
    import av
    import cv2
    with av.open(str(MEDIA / "video/short_hamilton_clip.mp4")) as c:
        frame = [f for i, f in enumerate(c.decode(video=0)) if i == 250][0].to_ndarray(format="bgr24")
    png = cv2.imencode(".png", frame)[1].tobytes()
    auto = client.index_faces(CollectionId="cast", Image={"Bytes": png}, ExternalImageId="audience")
    validate_response("IndexFaces", auto)
    reasons = {reason for u in auto["UnindexedFaces"] for reason in u["Reasons"]}
    assert auto["UnindexedFaces"] and reasons <= {"LOW_SHARPNESS", "LOW_BRIGHTNESS", "LOW_FACE_QUALITY",
                                                   "LOW_CONFIDENCE", "SMALL_BOUNDING_BOX", "EXTREME_POSE"}
    assert "LOW_SHARPNESS" in reasons
    for u in auto["UnindexedFaces"]:
        if "LOW_SHARPNESS" in u["Reasons"]:
            assert u["FaceDetail"]["Quality"]["Sharpness"] < C.QUALITY_BARS["AUTO"]["sharpness"]
    none = client.index_faces(CollectionId="cast", Image={"Bytes": png}, ExternalImageId="audience-all",
                              QualityFilter="NONE")
    assert none["UnindexedFaces"] == []
    assert len(none["FaceRecords"]) == len(auto["FaceRecords"]) + len(auto["UnindexedFaces"])


def test_search_faces_by_image(client, cast):
    for still, person in [("faces/obama2.jpg", "obama"), ("faces/obama3.jpg", "obama"),
                          ("faces/biden2.jpg", "biden")]:
        r = client.search_faces_by_image(CollectionId="cast", Image=image(still))
        validate_response("SearchFacesByImage", r)
        assert [name for name, _ in matches(r)] == [person], still
        assert matches(r)[0][1] >= 90
        assert r["FaceModelVersion"] == "scrfd500m_mfn128" and 50 <= r["SearchedFaceConfidence"] <= 100
        assert r["FaceMatches"][0]["Face"]["FaceId"] == cast[person]
    # People who are not in the collection match nobody at the default threshold 80.
    for still in ["faces/alex-lacamoire.png", "celebrities/Rob_Lowe_0001.jpg", "celebrities/Nathalie_Baye_0002.jpg"]:
        r = client.search_faces_by_image(CollectionId="cast", Image=image(still))
        validate_response("SearchFacesByImage", r)
        assert r["FaceMatches"] == [], still
    # Threshold 0: every face, highest Similarity first; MaxFaces caps the list.
    r = client.search_faces_by_image(CollectionId="cast", Image=image("faces/obama2.jpg"), FaceMatchThreshold=0)
    sims = [s for _, s in matches(r)]
    assert len(sims) == 3 and sims == sorted(sims, reverse=True) and sims[0] > 99 > 50 > sims[1]
    r = client.search_faces_by_image(CollectionId="cast", Image=image("faces/obama2.jpg"), FaceMatchThreshold=0,
                                     MaxFaces=2)
    assert [name for name, _ in matches(r)][:1] == ["obama"] and len(r["FaceMatches"]) == 2
    # The largest face of a group photo is searched.
    group = client.search_faces_by_image(CollectionId="cast", Image={"S3Object": {
        "Bucket": "media", "Name": "faces/obama_and_biden.jpg"}})
    validate_response("SearchFacesByImage", group)
    box = group["SearchedFaceBoundingBox"]
    assert matches(group)[0][0] in {"obama", "biden"} and box["Width"] > 0.05


def test_search_faces_by_face_id(client, cast):
    obama3 = client.index_faces(CollectionId="cast", Image=image("faces/obama3.jpg"), ExternalImageId="obama-3")
    r = client.search_faces(CollectionId="cast", FaceId=cast["obama"])
    validate_response("SearchFaces", r)
    assert r["SearchedFaceId"] == cast["obama"]
    assert [m["Face"]["FaceId"] for m in r["FaceMatches"]] == [obama3["FaceRecords"][0]["Face"]["FaceId"]]
    r = client.search_faces(CollectionId="cast", FaceId=cast["obama"], FaceMatchThreshold=0, MaxFaces=4096)
    assert cast["obama"] not in {m["Face"]["FaceId"] for m in r["FaceMatches"]} and len(r["FaceMatches"]) == 3
    with pytest.raises(client.exceptions.InvalidParameterException, match="not in collection"):
        client.search_faces(CollectionId="cast", FaceId="00000000-0000-4000-8000-000000000000")


def test_list_and_delete_faces(client, cast):
    client.index_faces(CollectionId="cast", Image=image("faces/obama_and_biden.jpg"), ExternalImageId="group")
    everything = client.list_faces(CollectionId="cast")
    validate_response("ListFaces", everything)
    ids = [f["FaceId"] for f in everything["Faces"]]
    assert len(ids) == 6 and ids == sorted(ids) and everything["FaceModelVersion"] == "scrfd500m_mfn128"
    paged, token = [], None
    while True:
        page = client.list_faces(CollectionId="cast", MaxResults=4, **({"NextToken": token} if token else {}))
        validate_response("ListFaces", page)
        paged += page["Faces"]
        token = page.get("NextToken")
        assert token is None or len(token) <= 255
        if not token:
            break
    assert paged == everything["Faces"]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.list_faces(CollectionId="cast", NextToken="garbage")
    picked = client.list_faces(CollectionId="cast", FaceIds=[cast["biden"], cast["lin-manuel-miranda"]])
    assert {f["ExternalImageId"] for f in picked["Faces"]} == {"biden", "lin-manuel-miranda"}
    assert client.list_faces(CollectionId="cast", UserId="someone")["Faces"] == []  # no users in rekolab

    missing = "00000000-0000-4000-8000-000000000000"
    r = client.delete_faces(CollectionId="cast", FaceIds=[cast["obama"], missing])
    validate_response("DeleteFaces", r)
    assert body(r) == {"DeletedFaces": [cast["obama"]],
                 "UnsuccessfulFaceDeletions": [{"FaceId": missing, "Reasons": ["FACE_NOT_FOUND"]}]}
    assert client.describe_collection(CollectionId="cast")["FaceCount"] == 5
    # obama2 now finds only the group photo's Obama, never the deleted face.
    found = client.search_faces_by_image(CollectionId="cast", Image=image("faces/obama2.jpg"))
    assert [name for name, _ in matches(found)] == ["group"]
    again = client.delete_faces(CollectionId="cast", FaceIds=[cast["obama"]])
    validate_response("DeleteFaces", again)
    assert "DeletedFaces" not in again and again["UnsuccessfulFaceDeletions"][0]["FaceId"] == cast["obama"]
    client.delete_faces(CollectionId="cast", FaceIds=ids)
    assert client.list_faces(CollectionId="cast")["Faces"] == []
    assert client.describe_collection(CollectionId="cast")["FaceCount"] == 0


def test_no_face_in_the_image(client, cast):
    r = client.index_faces(CollectionId="cast", Image=image("scenes/dog.jpg"))
    validate_response("IndexFaces", r)
    assert r["FaceRecords"] == [] and r["UnindexedFaces"] == []
    with pytest.raises(client.exceptions.InvalidParameterException, match="no faces"):
        client.search_faces_by_image(CollectionId="cast", Image=image("scenes/dog.jpg"))


# ------------------------------------------------------------------ the contract for stream processors


def test_search_embeddings_contract(client, cast):
    import cv2

    from rekolab.models.faces import face_pack
    pack = face_pack()
    frame = cv2.imread(str(MEDIA / "faces/obama_and_biden.jpg"))
    boxes, scores, kps = pack.detect(frame)
    emb = pack.embed(frame, kps)
    results = C.search_embeddings("cast", emb)
    assert len(results) == 3
    names = [[m["Face"]["ExternalImageId"] for m in r] for r in results]
    assert sorted(n for r in names for n in r) == ["biden", "obama"]  # the third face is neither
    for r in results:
        for m in r:
            assert set(m) == {"Similarity", "Face"} and m["Similarity"] >= 80
            assert set(m["Face"]) == {"FaceId", "BoundingBox", "ImageId", "ExternalImageId", "Confidence",
                                      "IndexFacesModelVersion"}
    every = C.search_embeddings("cast", emb[:1], face_match_threshold=0, max_faces=2)[0]
    assert len(every) == 2 and every[0]["Similarity"] >= every[1]["Similarity"]
    assert C.search_embeddings("cast", emb[:0]) == []
    assert C.collection_face_model_version("cast") == pack.version == "scrfd500m_mfn128"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        C.search_embeddings("nobody", emb)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        C.collection_face_model_version("nobody")
    with pytest.raises(client.exceptions.InvalidParameterException, match="dimensions"):
        C.search_embeddings("cast", np.ones((1, 512), np.float32))
    with pytest.raises(client.exceptions.InvalidParameterException, match="face pack"):
        C.search_embeddings("cast", emb, face_model_version="buffalo_l")


def test_collection_refuses_another_face_pack(client, cast, monkeypatch):
    # The same weights folder holds a second pack (detector + gender/age, no recognizer).
    monkeypatch.setenv("REKOLAB_FACE_PACK", "scrfd500m_genderage")
    for call in (lambda: client.index_faces(CollectionId="cast", Image=image("faces/obama2.jpg")),
                 lambda: client.search_faces_by_image(CollectionId="cast", Image=image("faces/obama2.jpg")),
                 lambda: C.search_embeddings("cast", np.ones((1, 128), np.float32))):
        with pytest.raises(client.exceptions.InvalidParameterException,
                           match="built with face model 'scrfd500m_mfn128'.*'scrfd500m_genderage'"):
            call()
    # Reading is fine, and a new collection takes the pack in use.
    assert client.describe_collection(CollectionId="cast")["FaceCount"] == 3
    r = client.search_faces(CollectionId="cast", FaceId=cast["obama"])
    validate_response("SearchFaces", r)
    assert client.create_collection(CollectionId="other")["FaceModelVersion"] == "scrfd500m_genderage"


# ------------------------------------------------------------------ validation and errors


@pytest.mark.parametrize("call, kwargs, error, fragment", [
    ("create_collection", {"CollectionId": "bad/id"}, "InvalidParameterException", "pattern"),
    ("create_collection", {"CollectionId": "x" * 256}, "InvalidParameterException", "at most 255"),
    ("create_collection", {}, "ParamValidationError", "CollectionId"),
    ("describe_collection", {"CollectionId": "nobody"}, "ResourceNotFoundException", "nobody"),
    ("list_faces", {"CollectionId": "nobody"}, "ResourceNotFoundException", "nobody"),
    ("delete_faces", {"CollectionId": "nobody", "FaceIds": ["00000000-0000-4000-8000-000000000000"]},
     "ResourceNotFoundException", "nobody"),
    ("search_faces", {"CollectionId": "nobody", "FaceId": "00000000-0000-4000-8000-000000000000"},
     "ResourceNotFoundException", "nobody"),
    ("index_faces", {"CollectionId": "nobody", "Image": {"Bytes": b"\xff\xd8\xff"}},
     "ResourceNotFoundException", "nobody"),
    ("search_faces_by_image", {"CollectionId": "nobody", "Image": {"Bytes": b"\xff\xd8\xff"}},
     "ResourceNotFoundException", "nobody"),
    ("list_faces", {"CollectionId": "cast", "FaceIds": ["not-a-uuid"]}, "InvalidParameterException", "pattern"),
    ("delete_faces", {"CollectionId": "cast", "FaceIds": []}, "ParamValidationError", "FaceIds"),
    ("list_faces", {"CollectionId": "cast", "MaxResults": 4097}, "InvalidParameterException", "4096"),
    ("search_faces", {"CollectionId": "cast", "FaceId": "00000000-0000-4000-8000-000000000000",
                      "FaceMatchThreshold": 101}, "InvalidParameterException", "maximum is 100"),
    ("search_faces", {"CollectionId": "cast", "FaceId": "00000000-0000-4000-8000-000000000000",
                      "MaxFaces": 0}, "ParamValidationError", "MaxFaces"),
    ("index_faces", {"CollectionId": "cast", "Image": {"Bytes": b"\xff\xd8\xff"}, "ExternalImageId": "has space"},
     "InvalidParameterException", "ExternalImageId"),
    ("index_faces", {"CollectionId": "cast", "Image": {"Bytes": b"\xff\xd8\xff"}, "QualityFilter": "BEST"},
     "InvalidParameterException", "QualityFilter"),
    ("index_faces", {"CollectionId": "cast", "Image": {"Bytes": b"\xff\xd8\xff"}, "MaxFaces": 0},
     "ParamValidationError", "MaxFaces"),
    ("index_faces", {"CollectionId": "cast", "Image": {"Bytes": b"\xff\xd8\xff"},
                     "DetectionAttributes": ["HAIR"]}, "InvalidParameterException", "DetectionAttributes"),
    ("index_faces", {"CollectionId": "cast"}, "ParamValidationError", "Image"),
])
def test_bad_requests(client, call, kwargs, error, fragment):
    client.create_collection(CollectionId="cast")
    exc = rk.ParamValidationError if error == "ParamValidationError" else getattr(client.exceptions, error)
    with pytest.raises(exc, match=fragment):
        getattr(client, call)(**kwargs)


def _png(shape=(100, 100)) -> bytes:
    import cv2
    return cv2.imencode(".png", np.full((*shape, 3), 128, np.uint8))[1].tobytes()


def test_bad_images(client, tmp_path):
    import cv2
    client.create_collection(CollectionId="cast")
    jpeg = (MEDIA / "faces/obama.jpg").read_bytes()
    bmp = cv2.imencode(".bmp", cv2.imread(str(MEDIA / "faces/obama.jpg")))[1].tobytes()
    cases = [
        ({"Bytes": jpeg + b"\0" * (5 * 1024 * 1024)}, "ImageTooLargeException", "5 MB"),
        ({"Bytes": b"definitely not an image"}, "InvalidImageFormatException", "JPEG or PNG"),
        ({"Bytes": bmp}, "InvalidImageFormatException", "JPEG or PNG"),
        ({"Bytes": jpeg[:200]}, "InvalidImageFormatException", "could not be decoded"),
        ({"Bytes": _png((50, 200))}, "InvalidParameterException", "at least 80 pixels"),
        ({"S3Object": {"Bucket": "media", "Name": "../shared/media/faces/obama.jpg"}}, "InvalidS3ObjectException",
         "'..'"),
        ({"S3Object": {"Bucket": "media", "Name": "/etc/passwd"}}, "InvalidS3ObjectException", "relative key"),
        ({"S3Object": {"Bucket": "media", "Name": "faces/nobody.jpg"}}, "InvalidS3ObjectException", "does not exist"),
        ({"S3Object": {"Bucket": "media", "Name": "faces/obama.jpg", "Version": "v1"}},
         "InvalidParameterException", "Version"),
        ({"S3Object": {"Bucket": "elsewhere", "Name": "obama.jpg"}}, "InvalidS3ObjectException", "elsewhere"),
        ({"Bytes": jpeg, "S3Object": {"Bucket": "media", "Name": "faces/obama.jpg"}}, "InvalidParameterException",
         "exactly one"),
        ({}, "InvalidParameterException", "exactly one"),
    ]
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.write(jpeg)
        f.truncate(16 * 1024 * 1024)
    local = rk.client(buckets={"media": str(MEDIA), "tmp": str(tmp_path)})
    cases.append(({"S3Object": {"Bucket": "tmp", "Name": "big.jpg"}}, "ImageTooLargeException", "15 MB"))
    for img, error, fragment in cases:
        for call in (local.index_faces, local.search_faces_by_image):
            with pytest.raises(getattr(client.exceptions, error), match=fragment):
                call(CollectionId="cast", Image=img)
    assert client.describe_collection(CollectionId="cast")["FaceCount"] == 0


# ------------------------------------------------------------------ persistence and concurrency


def test_collection_survives_a_new_process(client, cast):
    code = textwrap.dedent(f"""
        import json, rekolab as rk
        c = rk.client()
        faces = c.list_faces(CollectionId="cast")["Faces"]
        hit = c.search_faces(CollectionId="cast", FaceId={cast['obama']!r}, FaceMatchThreshold=0)
        print(json.dumps([sorted(f["ExternalImageId"] for f in faces), len(hit["FaceMatches"])]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         timeout=120)
    assert json.loads(out.stdout) == [["biden", "lin-manuel-miranda", "obama"], 2]


def _run_together(codes: list[str], go) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO) for code in codes]
    time.sleep(0.5)
    go.write_text("go")  # every writer starts at once
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


def test_concurrent_index_faces_from_several_processes(client, tmp_path):
    """Three processes index stills into one collection at the same moment: every face is kept."""
    client.create_collection(CollectionId="crowd")
    go = tmp_path / "go"
    jobs = [["faces/obama.jpg", "faces/biden.jpg"], ["faces/obama2.jpg", "faces/biden2.jpg"],
            ["faces/lin-manuel-miranda.png", "faces/two_people.jpg"]]
    codes = []
    for k, stills in enumerate(jobs):
        codes.append(textwrap.dedent(f"""
            import json, pathlib, time, rekolab as rk
            from rekolab.models.faces import face_pack
            c = rk.client(buckets={{"media": {str(MEDIA)!r}}})
            face_pack()                       # load the models before the start line
            while not pathlib.Path({str(go)!r}).exists():
                time.sleep(0.01)
            ids = []
            for name in {stills!r}:
                r = c.index_faces(CollectionId="crowd", ExternalImageId="w{k}",
                                  Image={{"S3Object": {{"Bucket": "media", "Name": name}}}})
                ids += [f["Face"]["FaceId"] for f in r["FaceRecords"]]
            print(json.dumps(ids))
        """))
    outs = _run_together(codes, go)
    written = [i for out in outs for i in json.loads(out)]
    assert len(written) == 7  # 1 + 1, 1 + 1, 1 + 2 faces
    listed = client.list_faces(CollectionId="crowd")["Faces"]
    assert sorted(f["FaceId"] for f in listed) == sorted(written)
    assert client.describe_collection(CollectionId="crowd")["FaceCount"] == 7


def test_concurrent_writers_lose_nothing(client, tmp_path, rekolab_home):
    """Storage stress: 4 processes x 25 appends of random faces, plus deletes, at once."""
    client.create_collection(CollectionId="stress")
    go = tmp_path / "go"
    code = textwrap.dedent("""
        import json, pathlib, time, sys, numpy as np
        from rekolab import collections as C
        k = int(sys.argv[1]); rng = np.random.default_rng(k)
        while not pathlib.Path(sys.argv[2]).exists():
            time.sleep(0.005)
        kept = []
        for i in range(25):
            e = rng.standard_normal((2, 128)).astype(np.float32)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            box = {"Width": 0.1, "Height": 0.1, "Left": 0.1 * k, "Top": 0.01 * i}
            faces = C.add_faces("stress", e, [{"BoundingBox": box, "Confidence": 99.0, "ExternalImageId": f"p{k}"}] * 2,
                                image_sha=f"{k}-{i}", face_model_version=C.current_face_model_version())
            C.delete_faces("stress", [faces[1]["FaceId"]])      # a read-modify-write that removes
            kept.append([faces[0]["FaceId"], e[0].tolist()])
        print(json.dumps(kept))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO) for k in range(4)]
    time.sleep(0.5)
    go.write_text("go")
    kept = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        kept += json.loads(out)
    assert len(kept) == 100
    faces = client.list_faces(CollectionId="stress")["Faces"]
    assert sorted(f["FaceId"] for f in faces) == sorted(fid for fid, _ in kept)
    # Every stored embedding is intact: each finds its own face first.
    emb = np.array([e for _, e in kept], np.float32)
    found = C.search_embeddings("stress", emb, 99.0, 1, face_model_version=C.current_face_model_version())
    assert [r[0]["Face"]["FaceId"] for r in found] == [fid for fid, _ in kept]
    folder = rekolab_home / "collections" / "stress"
    manifest = json.loads((folder / "collection.json").read_text())
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(["collection.json"] + [f"{s['Name']}.{ext}" for s in manifest["Segments"]
                                                  for ext in ("npy", "parquet")])  # nothing half-written left
    assert len(manifest["Segments"]) <= 7  # merged as it grew (binary counter: <= log2(100) + 1)


# ------------------------------------------------------------------ notebook handle


def test_notebook_collection_handle(models_dir, media):
    cast = rk.Collection.create("cast")
    assert rk.Collection.create("cast", exist_ok=True).id == "cast"
    with pytest.raises(rk.client().exceptions.ResourceAlreadyExistsException):
        rk.Collection.create("cast")
    r = cast.index(media / "faces/lin-manuel-miranda.png", external_image_id="lin-manuel-miranda")
    validate_response("IndexFaces", r)
    cast.index((media / "faces/obama.jpg").read_bytes(), "obama")
    assert len(cast) == 2 and "faces=2" in repr(cast) and cast.face_model_version == "scrfd500m_mfn128"
    found = cast.search(media / "faces/obama2.jpg")
    validate_response("SearchFacesByImage", found)
    assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["obama"]
    df = cast.faces()
    assert sorted(df["ExternalImageId"]) == ["lin-manuel-miranda", "obama"] and len(df.columns) == 6
    assert cast.search_face(df["FaceId"].iloc[0], 0)["FaceMatches"]
    assert rk.Collection.ids() == ["cast"] and rk.Collection("cast").id == "cast"
    cast.delete_faces(df["FaceId"].tolist()[:1])
    assert len(cast) == 1
    cast.delete()
    with pytest.raises(rk.client().exceptions.ResourceNotFoundException):
        rk.Collection("cast")


# ------------------------------------------------------------------ review fixes


def test_image_bytes_take_what_botocore_takes(client, tmp_path):
    """Image.Bytes may be bytes, bytearray, an open file or a str (UTF-8, as botocore
    sends it), for IndexFaces and SearchFacesByImage alike; never a raw TypeError or
    UnicodeEncodeError."""
    import io

    client.create_collection(CollectionId="cast")
    with open(MEDIA / "faces/obama.jpg", "rb") as f:
        r = client.index_faces(CollectionId="cast", Image={"Bytes": f}, ExternalImageId="obama", MaxFaces=1)
    validate_response("IndexFaces", r)
    assert len(r["FaceRecords"]) == 1
    for blob in (io.BytesIO((MEDIA / "faces/obama2.jpg").read_bytes()),
                 bytearray((MEDIA / "faces/obama2.jpg").read_bytes())):
        hit = client.search_faces_by_image(CollectionId="cast", Image={"Bytes": blob})
        validate_response("SearchFacesByImage", hit)
        assert [m["Face"]["ExternalImageId"] for m in hit["FaceMatches"]] == ["obama"]
    for call in (client.index_faces, client.search_faces_by_image):
        # "\u2603" has no latin-1 form: it must be sent as UTF-8, then refused as not an image.
        with pytest.raises(client.exceptions.InvalidImageFormatException, match="JPEG or PNG"):
            call(CollectionId="cast", Image={"Bytes": "snowman \u2603"})
        big = tmp_path / "big.bin"
        big.write_bytes(b"\xff\xd8\xff" + b"\0" * (5 * 1024 * 1024))
        with open(big, "rb") as f, pytest.raises(client.exceptions.ImageTooLargeException, match="5 MB"):
            call(CollectionId="cast", Image={"Bytes": f})
        with pytest.raises(rk.ParamValidationError, match="Image.Bytes"):
            call(CollectionId="cast", Image={"Bytes": 12})


def test_list_collections_pages_by_the_last_id(client):
    """A collection deleted (or created) between two ListCollections pages shifts
    nothing: the NextToken holds the last id returned, not an offset."""
    for cid in "abcde":
        client.create_collection(CollectionId=cid)
    first = client.list_collections(MaxResults=2)
    assert first["CollectionIds"] == ["a", "b"]
    client.delete_collection(CollectionId="a")  # an offset would now skip "c"
    second = client.list_collections(MaxResults=2, NextToken=first["NextToken"])
    validate_response("ListCollections", second)
    assert second["CollectionIds"] == ["c", "d"]
    client.create_collection(CollectionId="a0")  # sorts before the last id returned: not listed
    client.create_collection(CollectionId="d1")  # sorts after it: listed next
    third = client.list_collections(MaxResults=2, NextToken=second["NextToken"])
    assert third["CollectionIds"] == ["d1", "e"] and "NextToken" not in third
    # Ids longer than a token can hold are found again by a hash of the whole id.
    long_ids = ["L" * 100 + str(i) for i in range(3)]
    for cid in long_ids:
        client.create_collection(CollectionId=cid)
    page = client.list_collections(MaxResults=2)
    assert page["CollectionIds"] == long_ids[:2]
    validate_response("ListCollections", page)
    client.delete_collection(CollectionId=long_ids[0])
    assert client.list_collections(MaxResults=2, NextToken=page["NextToken"])["CollectionIds"] == [long_ids[2], "a0"]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.list_collections(NextToken=page["NextToken"] + "x")
