"""Celebrity galleries, RecognizeCelebrities, GetCelebrityInfo and
StartCelebrityRecognition / GetCelebrityRecognition, with the real face pack on
the shared media.

Ground truth (looked at frame by frame): in short_hamilton_clip.mp4 Lin-Manuel
Miranda sings in the first shot (0-600 ms, beside a small pianist), is seen in
profile and close-ups (800-2600 ms, with a blurred audience), faces the camera
from 2802 to 7007 ms, and the last shot (7207 ms on) is the audience, with Barack
Obama between Marian Robinson and Michelle Obama. faces/two_people.jpg shows
Barack Obama and Joe Biden (not unnamed people, as ../shared/media/MANIFEST.md says).
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import rekolab as rk
from rekolab import testing
from rekolab.celebrities import Gallery, celebrity_id
from rekolab.errors import ParamValidationError
from rekolab.models.faces import face_pack
from rekolab.testing import body, still_video, validate_response

from conftest import MEDIA, MODELS, need, module_env

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"
DEFAULT_KEYS = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
OBAMA_URL = "www.wikidata.org/wiki/Q76"

#: The acceptance gallery: the shared stills of six people.
PEOPLE = {
    "Barack Obama": (["faces/obama.jpg", "faces/obama2.jpg", "faces/obama3.jpg"], [OBAMA_URL], "Male"),
    "Joe Biden": (["faces/biden.jpg", "faces/biden2.jpg"], ["www.wikidata.org/wiki/Q6279"], "Male"),
    "Lin-Manuel Miranda": (["faces/lin-manuel-miranda.png"], ["www.wikidata.org/wiki/Q2358015"], "Male"),
    "Alex Lacamoire": (["faces/alex-lacamoire.png"], [], None),
    "Rob Lowe": (["celebrities/Rob_Lowe_0001.jpg", "celebrities/Rob_Lowe_0002.jpg"], [], "Male"),
    "Nathalie Baye": (["celebrities/Nathalie_Baye_0002.jpg"], [], "Female"),
}


def code_of(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def build(path: Path, people=PEOPLE) -> Gallery:
    g = Gallery(path)
    for name, (images, urls, gender) in people.items():
        g.add(name, images=[need(MEDIA / i) for i in images], urls=urls, known_gender=gender)
    return g


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One rekolab home with the six-person gallery and one Hamilton job, for the
    read-only tests of this module."""
    need(HAMILTON)
    need(MODELS / "insightface" / "models")
    with module_env(tmp_path_factory, "celeb-home") as home:
        g = build(home / "celebrities")
        c = rk.client(buckets={"media": str(MEDIA)})
        r = c.start_celebrity_recognition(Video={"S3Object": {"Bucket": "media", "Name": "video/" + HAMILTON.name}},
                                          JobTag="hamilton")
        job = rk.Job(r["JobId"], c).wait(progress=False)
        yield {"home": home, "gallery": g, "client": c, "job": job}


@pytest.fixture
def env(shared, monkeypatch, models_dir):
    monkeypatch.setenv("REKOLAB_HOME", str(shared["home"]))
    return shared


def image_bytes(rel: str) -> bytes:
    return need(MEDIA / rel).read_bytes()


def recognize(client, rel: str, **kw) -> dict:
    r = client.recognize_celebrities(Image={"Bytes": image_bytes(rel)}, **kw)
    validate_response("RecognizeCelebrities", r)
    return r


# -- Ids ----------------------------------------------------------------------------------
def test_ids_are_rekognition_shaped_and_derived_from_the_name():
    oid = celebrity_id("Barack Obama")
    assert len(oid) == 8 and oid.isalnum() and oid.isascii()
    assert celebrity_id("  barack   OBAMA ") == oid  # same person, any case and spacing
    assert celebrity_id("Joe Biden") != oid
    ids = {celebrity_id(f"person {i}") for i in range(2000)}
    assert len(ids) == 2000


def test_gallery_ids_match_and_metadata_is_kept(env):
    g = env["gallery"]
    people = {p["Name"]: p for p in g.people()}
    assert set(people) == set(PEOPLE)
    for name, p in people.items():
        assert p["Id"] == celebrity_id(name)
        assert p["Urls"] == PEOPLE[name][1] and p["KnownGender"] == PEOPLE[name][2]
        assert p["Faces"] == len(PEOPLE[name][0])
    assert g.face_model["Recognizer"] == "MobileFaceNet.onnx" and g.face_model["Dimension"] == 128
    assert len(g) == 6 and "barack obama" in g and celebrity_id("Joe Biden") in g
    assert "people=6, faces=10" in repr(g)


# -- building a gallery ---------------------------------------------------------------------
def test_add_update_remove(models_dir, tmp_path, rekolab_home):
    g = rk.celebrities.gallery()  # the default gallery, in the rekolab home
    assert g.path == rekolab_home / "celebrities" and len(g) == 0
    p = g.add("Barack Obama", images=[MEDIA / "faces/obama.jpg", MEDIA / "faces/obama2.jpg"],
              urls=[OBAMA_URL], known_gender="male")
    assert p == {"Id": celebrity_id("Barack Obama"), "Name": "Barack Obama", "Urls": [OBAMA_URL],
                 "KnownGender": "Male", "Faces": 2}
    # More faces of a known person (any spelling of the name); metadata is kept.
    p = g.add("barack  obama", images=MEDIA / "faces/obama3.jpg")
    assert p["Faces"] == 3 and p["Urls"] == [OBAMA_URL] and p["Name"] == "Barack Obama"
    assert g.add("Barack Obama", images=[MEDIA / "faces/obama3.jpg"])["Faces"] == 3  # same photo: no duplicate
    # The photos live in the gallery folder (content-addressed), with the parquet table.
    stored = sorted((g.path / "images").iterdir())
    assert len(stored) == 3 and all(f.stat().st_size > 1000 for f in stored)
    assert (g.path / "gallery.parquet").is_file()
    assert g.update("Barack Obama", known_gender="Unlisted")["KnownGender"] == "Unlisted"
    faces = g.faces("Barack Obama")
    assert len(faces) == 3 and all(Path(f["Image"]).is_file() for f in faces)
    g.remove_face(faces[0]["FaceId"])
    assert g.get(p["Id"])["Faces"] == 2
    assert len(list((g.path / "images").iterdir())) == 2  # the photo went with its face
    assert g.remove(p["Id"])["Name"] == "Barack Obama"
    assert len(g) == 0 and g.face_model is None and not list((g.path / "images").iterdir())
    with pytest.raises(rk.errors.ResourceNotFoundException):
        g.remove("Barack Obama")


def test_bad_photos_are_refused_with_a_clear_error(models_dir, tmp_path):
    g = Gallery(tmp_path / "g")
    with pytest.raises(rk.errors.InvalidParameterException, match="no face found"):
        g.add("A Dog", images=[MEDIA / "scenes/dog.jpg"])
    with pytest.raises(rk.errors.InvalidParameterException, match=r"3 faces found.*face='largest' or face=<index>"):
        g.add("Joe Biden", images=[MEDIA / "faces/obama_and_biden.jpg"])
    with pytest.raises(rk.errors.InvalidImageFormatException):
        g.add("Nobody", images=[b"this is not an image"])
    with pytest.raises(rk.errors.InvalidParameterException, match="image not found"):
        g.add("Nobody", images=[tmp_path / "missing.jpg"])
    with pytest.raises(rk.errors.InvalidParameterException, match="known_gender"):
        g.add("Nobody", images=[MEDIA / "faces/obama.jpg"], known_gender="robot")
    with pytest.raises(rk.errors.InvalidParameterException, match="index from 0 to 2"):
        g.add("Joe Biden", images=[MEDIA / "faces/obama_and_biden.jpg"], face=3)
    assert len(g) == 0 and not (g.path / "gallery.parquet").exists()  # nothing half-added
    # An explicit choice of face: largest first, Biden's is the second largest there.
    g.add("Joe Biden", images=[MEDIA / "faces/obama_and_biden.jpg"], face=1)
    r = g.recognize(MEDIA / "faces/biden.jpg")
    assert [f["Name"] for f in r["CelebrityFaces"]] == ["Joe Biden"]
    # A pre-aligned 112x112 crop has no detectable face; aligned=True takes it as it is.
    with pytest.raises(rk.errors.InvalidParameterException, match="no face found"):
        g.add("Tom Hanks", images=[MEDIA / "celebrities/Tom_Hanks_54745.png"])
    g.add("Tom Hanks", images=[MEDIA / "celebrities/Tom_Hanks_54745.png"], aligned=True)
    assert g.faces("Tom Hanks")[0]["Aligned"] is True
    # The same face cannot be two people.
    with pytest.raises(rk.errors.InvalidParameterException, match="already a reference face of 'Joe Biden'"):
        g.add("Someone Else", images=[MEDIA / "faces/obama_and_biden.jpg"], face=1)


def test_id_collisions_are_refused(models_dir, tmp_path):
    g = Gallery(tmp_path / "g")
    g.add("Rob Lowe", images=[MEDIA / "celebrities/Rob_Lowe_0001.jpg"], id=celebrity_id("Nathalie Baye"))
    with pytest.raises(rk.errors.ResourceAlreadyExistsException, match="already belongs to 'Rob Lowe'"):
        g.add("Nathalie Baye", images=[MEDIA / "celebrities/Nathalie_Baye_0002.jpg"])
    g.add("Nathalie Baye", images=[MEDIA / "celebrities/Nathalie_Baye_0002.jpg"], id="NB1")
    assert g.find("nathalie baye")["Id"] == "NB1"
    with pytest.raises(rk.errors.InvalidParameterException, match="1-64 characters"):
        g.add("X", images=[MEDIA / "faces/obama.jpg"], id="has-dash")


def test_add_folder(models_dir, tmp_path):
    people = tmp_path / "people"
    for name, files in {"Rob_Lowe": ["celebrities/Rob_Lowe_0001.jpg", "celebrities/Rob_Lowe_0002.jpg"],
                        "Nathalie_Baye": ["celebrities/Nathalie_Baye_0002.jpg"],
                        "Not_A_Person": ["scenes/dog.jpg"]}.items():
        (people / name).mkdir(parents=True)
        for f in files:
            shutil.copy(MEDIA / f, people / name)
    (people / "Nathalie_Baye" / "person.json").write_text(json.dumps(
        {"Urls": ["www.wikidata.org/wiki/Q106418"], "KnownGender": "Female"}))
    g = Gallery(tmp_path / "g")
    with pytest.raises(rk.errors.InvalidParameterException, match=r"nothing was added:\n.*dog.jpg: no face found"):
        g.add_folder(people)
    assert len(g) == 0
    with pytest.warns(UserWarning, match="dog.jpg"):
        added = g.add_folder(people, skip_invalid=True)
    assert [(p["Name"], p["Faces"]) for p in added] == [("Nathalie Baye", 1), ("Rob Lowe", 2)]
    assert g.find("Nathalie Baye")["Urls"] == ["www.wikidata.org/wiki/Q106418"]
    assert g.find("Nathalie Baye")["KnownGender"] == "Female"


# -- sharing --------------------------------------------------------------------------------
def test_export_import_round_trip(env, tmp_path, monkeypatch):
    src = env["gallery"]
    f = src.export(tmp_path / "people.zip")
    assert zipfile.is_zipfile(f)
    other = Gallery(tmp_path / "colleague")
    imported = other.import_(f)
    assert {p["Name"] for p in imported} == set(PEOPLE)
    assert sorted(map(str, other.people())) == sorted(map(str, src.people()))  # same Ids, Urls, genders
    a = src.matcher(face_pack())
    b = other.matcher(face_pack())
    assert np.allclose(a.embeddings, b.embeddings) and [p["Id"] for p in a.people] == [p["Id"] for p in b.people]
    other.import_(f)  # again: nothing duplicated
    assert sum(p["Faces"] for p in other.people()) == 10
    # Damaged or foreign files are refused.
    with zipfile.ZipFile(f) as z:
        members = {n: z.read(n) for n in z.namelist()}
    photo = next(n for n in members if n.startswith("images/"))
    members[photo] = members[photo][:-10] + b"0123456789"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(rk.errors.InvalidParameterException, match="missing or damaged"):
        Gallery(tmp_path / "third").import_(bad)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(rk.errors.InvalidParameterException, match="not a rekolab celebrity gallery"):
        Gallery(tmp_path / "third").import_(tmp_path / "junk.zip")
    # A gallery that gave one of the incoming Ids to someone else refuses the import.
    clash = Gallery(tmp_path / "clash")
    clash.add("Someone", images=[MEDIA / "faces/two_people.jpg"], face=0, id=celebrity_id("Joe Biden"))
    with pytest.raises(rk.errors.ResourceAlreadyExistsException, match="Joe Biden"):
        clash.import_(f)


def test_other_face_model_is_refused_and_reembed_migrates(env, tmp_path, monkeypatch):
    """A gallery whose embeddings came from another recognizer is never searched;
    re-embedding its stored photos is the migration."""
    import pyarrow.parquet as pq
    g = Gallery(tmp_path / "old")
    g.import_(env["gallery"].export(tmp_path / "people.zip"))
    original = g.matcher(face_pack()).embeddings.copy()
    # Make it look like another model's gallery: another sha, other (random) vectors.
    table = pq.read_table(g.file)
    meta = json.loads(table.schema.metadata[b"rekolab.gallery"])
    meta["FaceModel"].update(FacePack="buffalo_l", Recognizer="w600k_r50.onnx", RecognizerSha256="0" * 64)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(table.num_rows, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    import pyarrow as pa
    table = table.set_column(table.schema.get_field_index("Embedding"), "Embedding",
                             pa.array(vectors.tolist(), pa.list_(pa.float32())))
    pq.write_table(table.replace_schema_metadata({b"rekolab.gallery": json.dumps(meta).encode()}), g.file)
    client = rk.client()
    with pytest.raises(client.exceptions.InvalidParameterException, match=r"w600k_r50.*reembed\(\)") as e:
        recognize(client, "faces/obama.jpg", CelebrityGallery=str(g.path))
    assert e.value.operation_name == "RecognizeCelebrities"
    with pytest.raises(client.exceptions.InvalidParameterException, match="reembed"):
        client.start_celebrity_recognition(Video={"Path": str(HAMILTON)}, CelebrityGallery=str(g.path))
    with pytest.raises(rk.errors.InvalidParameterException, match="reembed"):
        g.add("Tom Hanks", images=[MEDIA / "celebrities/Tom_Hanks_54745.png"], aligned=True)
    g.reembed()
    assert g.face_model["Recognizer"] == "MobileFaceNet.onnx"
    assert np.allclose(g.matcher(face_pack()).embeddings, original, atol=1e-5)
    r = recognize(client, "faces/obama.jpg", CelebrityGallery=str(g.path))
    assert [f["Name"] for f in r["CelebrityFaces"]] == ["Barack Obama"]


# -- RecognizeCelebrities / GetCelebrityInfo ------------------------------------------------------
def test_recognize_celebrities_on_stills(env):
    client = env["client"]
    r = recognize(client, "faces/obama_and_biden.jpg")
    assert sorted(f["Name"] for f in r["CelebrityFaces"]) == ["Barack Obama", "Joe Biden"]
    assert len(r["UnrecognizedFaces"]) == 1  # the third, smaller face
    for f in r["CelebrityFaces"]:
        assert f["MatchConfidence"] > 99 and f["Id"] == celebrity_id(f["Name"])
        assert f["KnownGender"] == {"Type": "Male"}
        assert [lm["Type"] for lm in f["Face"]["Landmarks"]] == [
            "eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"]
        assert {"BoundingBox", "Confidence", "Pose", "Quality"} <= set(f["Face"])
    obama = next(f for f in r["CelebrityFaces"] if f["Name"] == "Barack Obama")
    assert obama["Urls"] == [OBAMA_URL]
    # Six strangers: all unrecognized; a photo with no face: two empty lists (no error).
    r = recognize(client, "faces/insightface_t1.jpg")
    assert r["CelebrityFaces"] == [] and len(r["UnrecognizedFaces"]) == 6
    assert body(recognize(client, "scenes/dog.jpg")) == {"CelebrityFaces": [], "UnrecognizedFaces": []}


def test_two_people_is_obama_and_biden(env, tmp_path):
    """faces/two_people.jpg is Obama and Biden: named with them in the gallery,
    unrecognized with a gallery that lacks them."""
    r = recognize(env["client"], "faces/two_people.jpg")
    assert sorted(f["Name"] for f in r["CelebrityFaces"]) == ["Barack Obama", "Joe Biden"]
    others = build(tmp_path / "others", {k: v for k, v in PEOPLE.items() if k not in ("Barack Obama", "Joe Biden")})
    r = recognize(env["client"], "faces/two_people.jpg", CelebrityGallery=str(others.path))
    assert r["CelebrityFaces"] == [] and len(r["UnrecognizedFaces"]) == 2


def test_recognize_celebrities_bad_input(env, tmp_path):
    c = rk.client(buckets={"media": str(MEDIA), "empty": str(tmp_path)})
    ok = image_bytes("faces/obama.jpg")
    with pytest.raises(c.exceptions.ImageTooLargeException, match="5 MB"):
        c.recognize_celebrities(Image={"Bytes": ok + b"\0" * (5 * 1024 * 1024)})
    with pytest.raises(c.exceptions.InvalidImageFormatException):
        c.recognize_celebrities(Image={"Bytes": b"\x89PNG\r\n\x1a\n" + b"garbage" * 100})
    import cv2
    bmp = cv2.imencode(".bmp", cv2.imread(str(MEDIA / "faces/obama.jpg")))[1].tobytes()
    with pytest.raises(c.exceptions.InvalidImageFormatException, match="PNG or JPEG"):
        c.recognize_celebrities(Image={"Bytes": bmp})
    with pytest.raises(c.exceptions.InvalidParameterException, match="Image.Bytes is empty"):
        c.recognize_celebrities(Image={"Bytes": b""})
    with pytest.raises(ParamValidationError, match="Image.Bytes"):
        c.recognize_celebrities(Image={"Bytes": 12})
    with pytest.raises(c.exceptions.InvalidParameterException, match="Bytes or S3Object"):
        c.recognize_celebrities(Image={})
    with pytest.raises(c.exceptions.InvalidParameterException, match="not both"):
        c.recognize_celebrities(Image={"Bytes": ok, "S3Object": {"Bucket": "media", "Name": "faces/obama.jpg"}})
    with pytest.raises(c.exceptions.InvalidParameterException, match="MinConfidence"):
        c.recognize_celebrities(Image={"Bytes": ok}, MinConfidence=150)
    # S3Object against a bucket root, and its safety.
    r = c.recognize_celebrities(Image={"S3Object": {"Bucket": "media", "Name": "faces/obama.jpg"}})
    validate_response("RecognizeCelebrities", r)
    assert [f["Name"] for f in r["CelebrityFaces"]] == ["Barack Obama"]
    for name in ["../media/faces/obama.jpg", "/etc/passwd", "faces/nope.jpg"]:
        with pytest.raises(c.exceptions.InvalidS3ObjectException):
            c.recognize_celebrities(Image={"S3Object": {"Bucket": "media", "Name": name}})
    (tmp_path / "escape.jpg").symlink_to(MEDIA / "faces/obama.jpg")
    with pytest.raises(c.exceptions.InvalidS3ObjectException, match="outside its bucket root"):
        c.recognize_celebrities(Image={"S3Object": {"Bucket": "empty", "Name": "escape.jpg"}})
    # An empty gallery.
    with pytest.raises(c.exceptions.InvalidParameterException, match="is empty; add people first"):
        c.recognize_celebrities(Image={"Bytes": ok}, CelebrityGallery=str(tmp_path / "no-gallery"))


def test_get_celebrity_info(env):
    c = env["client"]
    info = c.get_celebrity_info(Id=celebrity_id("Barack Obama"))
    validate_response("GetCelebrityInfo", info)
    assert body(info) == {"Urls": [OBAMA_URL], "Name": "Barack Obama", "KnownGender": {"Type": "Male"}}
    info = c.get_celebrity_info(Id=celebrity_id("Alex Lacamoire"))
    assert body(info) == {"Urls": [], "Name": "Alex Lacamoire"}  # no KnownGender given
    with pytest.raises(c.exceptions.ResourceNotFoundException, match="not in the celebrity gallery") as e:
        c.get_celebrity_info(Id="Zz9Zz9Zz")
    assert e.value.operation_name == "GetCelebrityInfo"
    with pytest.raises(c.exceptions.InvalidParameterException, match="pattern"):
        c.get_celebrity_info(Id="has-dash")
    with pytest.raises(c.exceptions.InvalidParameterException, match="must not be empty"):
        c.get_celebrity_info(Id="")
    with pytest.raises(ParamValidationError):
        c.get_celebrity_info()


# -- StartCelebrityRecognition / GetCelebrityRecognition ----------------------------------------
def all_pages(client, job_id, **kw) -> list[dict]:
    return testing.all_pages(client.get_celebrity_recognition, "GetCelebrityRecognition", JobId=job_id, **kw)


def test_hamilton_names_lin_manuel_miranda_and_obama(env):
    c, job = env["client"], env["job"]
    assert job.status == "SUCCEEDED", job.status_message
    page = c.get_celebrity_recognition(JobId=job.id)
    validate_response("GetCelebrityRecognition", page)
    assert page["JobStatus"] == "SUCCEEDED" and page["JobTag"] == "hamilton"
    assert page["VideoMetadata"]["DurationMillis"] == 9175
    items = page["Celebrities"]
    assert [i["Timestamp"] for i in items] == sorted(i["Timestamp"] for i in items)
    names = {i["Celebrity"]["Name"] for i in items}
    assert names == {"Lin-Manuel Miranda", "Barack Obama"}  # no wrong name
    lin = [i["Timestamp"] for i in items if i["Celebrity"]["Name"] == "Lin-Manuel Miranda"]
    obama = [i for i in items if i["Celebrity"]["Name"] == "Barack Obama"]
    # Lin-Manuel: the first shot and his whole frontal shot; never in the audience shot.
    assert {0, 200, 400, 600} <= set(lin) and max(lin) < 7100
    assert len([t for t in lin if 2800 <= t <= 7010]) == 22
    # Obama: through the final audience shot, in the middle of the frame.
    assert len(obama) == 10 and min(i["Timestamp"] for i in obama) >= 7200
    for i in obama:
        box = i["Celebrity"]["BoundingBox"]
        assert 0.45 < box["Left"] + box["Width"] / 2 < 0.6
        assert i["Celebrity"]["Urls"] == [OBAMA_URL] and i["Celebrity"]["KnownGender"] == {"Type": "Male"}
    for i in items:
        cel = i["Celebrity"]
        assert set(cel["Face"]) == DEFAULT_KEYS and cel["Face"]["BoundingBox"] == cel["BoundingBox"]
        assert cel["Confidence"] >= 50 and cel["Id"] == celebrity_id(cel["Name"])
    assert job.models["Gallery"]["People"] == 6 and job.models["FaceModel"]["Dimension"] == 128


def test_one_name_per_appearance_no_flicker(env):
    """Over one continuous appearance the name does not change, even where the
    frame-by-frame similarity drops below the threshold."""
    df = env["job"].to_pandas()
    per_track = df.groupby("TrackIndex")["Id"].nunique()
    assert (per_track == 1).all()
    # Lin-Manuel in the first shot (small, 40 px): frame by frame he dips under the
    # default threshold, which would make the name blink on and off; the whole
    # appearance keeps one name and one Confidence.
    first = df[df["Timestamp"] <= 600]
    assert first["TrackIndex"].nunique() == 1 and set(first["Name"]) == {"Lin-Manuel Miranda"}
    assert first["FrameConfidence"].min() < 50 <= first["Confidence"].min()
    assert first["Confidence"].nunique() == 1
    # His frontal shot is one appearance, every sampled frame of it named...
    frontal = df[(df["Timestamp"] >= 2800) & (df["Timestamp"] <= 7010)]
    assert frontal["TrackIndex"].nunique() == 1 and len(frontal) == 22
    # ...and the appearance ends at the cut: Obama, where Lin-Manuel stood, is another one.
    audience = df[df["Timestamp"] >= 7200]
    assert set(audience["TrackIndex"]).isdisjoint(frontal["TrackIndex"])
    assert set(audience["Name"]) == {"Barack Obama"}


def test_sort_pages_and_tokens(env):
    c, job = env["client"], env["job"]
    df = job.to_pandas()
    pages = all_pages(c, job.id, MaxResults=7)
    assert len(pages) == -(-len(df) // 7) and all("VideoMetadata" in p for p in pages)
    items = [i for p in pages for i in p["Celebrities"]]
    assert [(i["Timestamp"], i["Celebrity"]["Id"]) for i in items] == list(zip(df["Timestamp"], df["Id"]))
    assert [i["Celebrity"]["Confidence"] for i in items] == df["Confidence"].tolist()
    by_id = [i for p in all_pages(c, job.id, MaxResults=7, SortBy="ID") for i in p["Celebrities"]]
    keys = [(i["Celebrity"]["Id"], i["Timestamp"]) for i in by_id]
    assert keys == sorted(keys) and len(keys) == len(df)
    first = c.get_celebrity_recognition(JobId=job.id, MaxResults=7)
    with pytest.raises(c.exceptions.InvalidPaginationTokenException):
        c.get_celebrity_recognition(JobId=job.id, MaxResults=7, SortBy="ID", NextToken=first["NextToken"])
    with pytest.raises(c.exceptions.InvalidParameterException, match="SortBy"):
        c.get_celebrity_recognition(JobId=job.id, SortBy="NAME")
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.get_celebrity_recognition(JobId="0" * 64)


def test_min_confidence_and_one_person_per_frame(env):
    """MinConfidence moves the line; at 0 every appearance takes a name, but no
    person is named twice in one frame."""
    c = env["client"]
    video = {"S3Object": {"Bucket": "media", "Name": "video/" + HAMILTON.name}}
    strict = rk.Job(c.start_celebrity_recognition(Video=video, MinConfidence=95)["JobId"], c).wait(progress=False)
    df = strict.to_pandas()
    assert set(df["Name"]) == {"Lin-Manuel Miranda"} and df["Timestamp"].min() >= 2800  # only the frontal shot
    loose = rk.Job(c.start_celebrity_recognition(Video=video, MinConfidence=0, SampleRate=2)["JobId"], c
                   ).wait(progress=False)
    df = loose.to_pandas()
    assert len(set(df["Name"])) > 2  # guesses, which the default threshold keeps out
    assert not df.duplicated(["Timestamp", "Id"]).any()
    audience = df[df["Timestamp"] >= 7200]
    obama_tracks = set(audience[audience["Name"] == "Barack Obama"]["TrackIndex"])
    assert len(obama_tracks) == 1


def test_start_refuses_an_empty_gallery(models_dir, tmp_path, rekolab_home):
    client = rk.client()
    with pytest.raises(client.exceptions.InvalidParameterException, match="is empty; add people first") as e:
        client.start_celebrity_recognition(Video={"Path": str(need(HAMILTON))})
    assert e.value.operation_name == "StartCelebrityRecognition"
    assert not (rekolab_home / "jobs").exists() or not list((rekolab_home / "jobs").iterdir())
    with pytest.raises(client.exceptions.InvalidParameterException, match="MinConfidence"):
        client.start_celebrity_recognition(Video={"Path": str(HAMILTON)}, MinConfidence=-1)
    with pytest.raises(client.exceptions.InvalidParameterException, match="CelebrityGallery"):
        client.start_celebrity_recognition(Video={"Path": str(HAMILTON)}, CelebrityGallery="")


def test_notebook_surface_on_a_still(env, tmp_path):
    """rk.start_celebrity_recognition with a Gallery object, on a one-frame video of
    obama_and_biden.jpg: both named in the same frame."""
    video = still_video(MEDIA / "faces/obama_and_biden.jpg", tmp_path / "ob.mp4", frames=1)
    job = rk.start_celebrity_recognition(video, gallery=env["gallery"], client=env["client"])
    assert "StartCelebrityRecognition" in repr(job)
    df = job.wait(progress=False).to_pandas()
    assert sorted(df["Name"]) == ["Barack Obama", "Joe Biden"] and set(df["Timestamp"]) == {0}
    assert list(df.columns[:5]) == ["Timestamp", "Id", "Name", "Confidence", "BoundingBox"]
    assert job.request["CelebrityGallery"] == str(env["gallery"].path)


# -- review fixes ---------------------------------------------------------------------------
def test_recognize_celebrities_never_downloads_a_face_pack(shared, tmp_path, monkeypatch):
    """Without REKOLAB_MODEL_DIR (and a HOME with no ~/.insightface): an empty gallery
    is refused before any model is loaded, and a gallery with people gets an
    InternalServerError that says how to install a face pack -- never a download
    and never a raw exception. A broken pack is an InternalServerError too."""
    monkeypatch.delenv("REKOLAB_MODEL_DIR", raising=False)
    monkeypatch.delenv("REKOLAB_FACE_PACK", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    c = rk.client()
    ok = {"Bytes": image_bytes("faces/obama.jpg")}
    with pytest.raises(c.exceptions.InvalidParameterException, match="is empty; add people first"):
        c.recognize_celebrities(Image=ok, CelebrityGallery=str(tmp_path / "no-gallery"))
    with pytest.raises(c.exceptions.InternalServerError, match="REKOLAB_MODEL_DIR") as e:
        c.recognize_celebrities(Image=ok, CelebrityGallery=str(shared["gallery"].path))
    assert e.value.operation_name == "RecognizeCelebrities"
    assert not (tmp_path / "home" / ".insightface").exists()
    broken = tmp_path / "packs" / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "det.onnx").write_bytes(b"not an onnx graph")
    monkeypatch.setenv("REKOLAB_FACE_PACK", str(broken))
    with pytest.raises(c.exceptions.InternalServerError, match="could not be loaded"):
        c.recognize_celebrities(Image=ok, CelebrityGallery=str(shared["gallery"].path))


def test_recognize_celebrities_takes_file_objects_and_skips_genderage(env, monkeypatch):
    """Image.Bytes as an open file works (botocore accepts file-like blobs), and the
    age/gender model is not run: a ComparedFace has no AgeRange or Gender."""
    from rekolab.analysis import face_attributes

    def refuse(*args, **kwargs):
        raise AssertionError("RecognizeCelebrities ran the age/gender model")

    monkeypatch.setattr(face_attributes, "_genderage", refuse)
    with open(need(MEDIA / "faces/obama_and_biden.jpg"), "rb") as f:
        r = env["client"].recognize_celebrities(Image={"Bytes": f})
    validate_response("RecognizeCelebrities", r)
    assert sorted(f["Name"] for f in r["CelebrityFaces"]) == ["Barack Obama", "Joe Biden"]
    for face in [f["Face"] for f in r["CelebrityFaces"]] + r["UnrecognizedFaces"]:
        assert {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality", "Emotions", "Smile"} <= set(face)
        assert not {"AgeRange", "Gender"} & set(face)


def test_start_celebrity_recognition_validates_once(env, tmp_path, monkeypatch):
    """parse_start validates the request; check_start only adds the gallery checks."""
    import rekolab.requests as requests

    calls = []
    real = requests.validate_request

    def counting(operation, params):
        calls.append(operation)
        return real(operation, params)

    monkeypatch.setattr(requests, "validate_request", counting)
    with pytest.raises(rk.errors.RekognitionError, match="missing.mp4"):  # no such video: after validation
        env["client"].start_celebrity_recognition(Video={"Path": str(tmp_path / "missing.mp4")})
    assert calls == ["StartCelebrityRecognition"]
