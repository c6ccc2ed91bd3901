"""Synchronous image operations on real stills: DetectFaces, CompareFaces, DetectLabels
(with IMAGE_PROPERTIES), the image input rules, the notebook verbs and the CLI."""
from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest

import rekolab as rk
from rekolab.testing import validate_response

from conftest import MEDIA, MODELS, module_env, need

FACES, SCENES = MEDIA / "faces", MEDIA / "scenes"
DEFAULT_KEYS = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
IDENTITY = {"obama": ["obama.jpg", "obama2.jpg", "obama3.jpg"], "biden": ["biden.jpg", "biden2.jpg"],
            "lin": ["lin-manuel-miranda.png"], "alex": ["alex-lacamoire.png"]}


def code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def img(path) -> dict:
    return {"Bytes": path.read_bytes()}


def png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    need(MODELS / "insightface" / "models")
    need(FACES / "obama.jpg")
    with module_env(tmp_path_factory, "images-home"):
        yield rk.client(buckets={"media": str(MEDIA)})


@pytest.fixture(autouse=True)
def _models(monkeypatch):
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(MODELS))


# ------------------------------------------------------------------ DetectFaces


@pytest.mark.parametrize("name,count", [("faces/two_people.jpg", 2), ("faces/insightface_t1.jpg", 6),
                                        ("faces/obama.jpg", 1)] + [(f"scenes/{s}.jpg", 0) for s in
                                                                   ("dog", "eagle", "giraffe", "horses", "person")])
def test_detect_faces_counts(client, name, count):
    r = client.detect_faces(Image=img(MEDIA / name))
    validate_response("DetectFaces", r)
    assert len(r["FaceDetails"]) == count
    assert all(set(f) == DEFAULT_KEYS for f in r["FaceDetails"])
    assert "OrientationCorrection" not in r


def test_detect_faces_attributes(client):
    image = img(FACES / "obama.jpg")
    all_ = client.detect_faces(Image=image, Attributes=["ALL"])["FaceDetails"][0]
    assert {"AgeRange", "Gender", "Emotions", "Smile", "EyesOpen", "MouthOpen"} <= set(all_)
    named = client.detect_faces(Image=image, Attributes=["EMOTIONS", "AGE_RANGE"])
    validate_response("DetectFaces", named)
    assert set(named["FaceDetails"][0]) == DEFAULT_KEYS | {"Emotions", "AgeRange"}
    # An attribute no installed model produces is left out, never invented.
    assert set(client.detect_faces(Image=image, Attributes=["BEARD"])["FaceDetails"][0]) == DEFAULT_KEYS
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.detect_faces(Image=image, Attributes=["WRINKLES"])


def test_detect_faces_is_the_video_analyzers_path(client):
    """A still as a one-frame batch through StartFaceDetection's analyzer gives the same faces."""
    import cv2

    from rekolab.analysis.faces import FaceDetectionAnalyzer
    from rekolab.video import FrameBatch

    bgr = cv2.imread(str(FACES / "insightface_t1.jpg"))
    batch = FrameBatch(frames=bgr[None, :, :, ::-1].copy(), timestamps_ms=np.array([0]), indices=np.array([0]))
    rows = FaceDetectionAnalyzer({"FaceAttributes": "ALL"})(batch).to_pylist()
    image = client.detect_faces(Image=img(FACES / "insightface_t1.jpg"), Attributes=["ALL"])["FaceDetails"]
    assert [r["BoundingBox"] for r in rows] == [f["BoundingBox"] for f in image]
    assert [r["AgeRange"] for r in rows] == [f["AgeRange"] for f in image]


# ------------------------------------------------------------------ CompareFaces


def test_compare_faces_same_and_different_people(client, capsys):
    files = [(who, f) for who, fs in IDENTITY.items() for f in fs]
    same, different = [], []
    for (a_who, a), (b_who, b) in itertools.combinations(files, 2):
        r = client.compare_faces(SourceImage=img(FACES / a), TargetImage=img(FACES / b), SimilarityThreshold=0)
        validate_response("CompareFaces", r)
        assert len(r["FaceMatches"]) == 1 and r["UnmatchedFaces"] == []
        (same if a_who == b_who else different).append(r["FaceMatches"][0]["Similarity"])
    with capsys.disabled():
        print(f"\nCompareFaces Similarity, same person ({len(same)} pairs): "
              f"{', '.join(f'{s:.1f}' for s in sorted(same))}")
        print(f"CompareFaces Similarity, different people ({len(different)} pairs): "
              f"min {min(different):.2f} median {np.median(different):.2f} max {max(different):.2f}")
    assert min(same) >= 80 > max(different)
    # Default threshold 80: Obama found once among the three faces of obama_and_biden.jpg.
    r = client.compare_faces(SourceImage=img(FACES / "obama2.jpg"), TargetImage=img(FACES / "obama_and_biden.jpg"))
    validate_response("CompareFaces", r)
    assert len(r["FaceMatches"]) == 1 and len(r["UnmatchedFaces"]) == 2
    assert r["FaceMatches"][0]["Similarity"] >= 80
    assert set(r["SourceImageFace"]) == {"BoundingBox", "Confidence"}
    assert {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"} <= set(r["FaceMatches"][0]["Face"])
    # The same Similarity as face search gives for the same two faces.
    client.create_collection(CollectionId="one")
    client.index_faces(CollectionId="one", Image=img(FACES / "obama.jpg"))
    searched = client.search_faces_by_image(CollectionId="one", Image=img(FACES / "obama3.jpg"))
    compared = client.compare_faces(SourceImage=img(FACES / "obama3.jpg"), TargetImage=img(FACES / "obama.jpg"))
    assert compared["FaceMatches"][0]["Similarity"] == pytest.approx(searched["FaceMatches"][0]["Similarity"], abs=1e-4)
    client.delete_collection(CollectionId="one")


def test_compare_faces_errors(client):
    obama, dog = img(FACES / "obama.jpg"), img(SCENES / "dog.jpg")
    for source, target in ((dog, obama), (obama, dog)):
        with pytest.raises(client.exceptions.InvalidParameterException, match="no faces"):
            client.compare_faces(SourceImage=source, TargetImage=target)
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.compare_faces(SourceImage=obama, TargetImage=obama, SimilarityThreshold=101)
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.compare_faces(SourceImage=obama, TargetImage=obama, QualityFilter="BEST")
    with pytest.raises(client.exceptions.InvalidImageFormatException):
        client.compare_faces(SourceImage=obama, TargetImage={"Bytes": b"GIF89a" + b"\0" * 100})


# ------------------------------------------------------------------ DetectLabels


@pytest.mark.parametrize("scene,expected", [("dog", {"Dog", "Bicycle", "Car"}), ("person", {"Person", "Dog", "Horse"}),
                                            ("giraffe", {"Giraffe", "Zebra"})])
def test_detect_labels_scenes(client, scene, expected):
    r = client.detect_labels(Image=img(SCENES / f"{scene}.jpg"))
    validate_response("DetectLabels", r)
    by_name = {lab["Name"]: lab for lab in r["Labels"]}
    assert expected <= set(by_name), sorted(by_name)
    for name in expected:
        assert by_name[name]["Instances"], name
        assert all(0 <= i["BoundingBox"]["Left"] <= 1 and i["Confidence"] >= 55 for i in by_name[name]["Instances"])
    assert all(lab["Confidence"] >= 55 for lab in r["Labels"])  # the DetectLabels default MinConfidence
    conf = [lab["Confidence"] for lab in r["Labels"]]
    assert conf == sorted(conf, reverse=True)
    for lab in r["Labels"]:  # every parent is itself a label with at least the child's confidence
        for parent in lab["Parents"]:
            assert by_name[parent["Name"]]["Confidence"] >= lab["Confidence"]
    assert "Animal" in [p["Name"] for p in by_name["Dog" if scene != "giraffe" else "Giraffe"]["Parents"]]
    assert r["LabelModelVersion"].startswith("rekolab-labels/")
    assert "ImageProperties" not in r


def test_detect_labels_parameters(client):
    dog = img(SCENES / "dog.jpg")
    r = client.detect_labels(Image=dog, MaxLabels=2)
    assert len(r["Labels"]) == 2
    assert client.detect_labels(Image=dog, MinConfidence=99.9)["Labels"] == []
    r = client.detect_labels(Image=dog, Settings={"GeneralLabels": {"LabelInclusionFilters": ["Car"]}})
    assert [lab["Name"] for lab in r["Labels"]] == ["Car"]
    general = {"LabelExclusionFilters": ["Dog"], "LabelCategoryExclusionFilters": ["Vehicles and Automotive"]}
    r = client.detect_labels(Image=dog, Settings={"GeneralLabels": general})
    names = {lab["Name"] for lab in r["Labels"]}
    assert "Dog" not in names and "Car" not in names and "Animal" in names
    only_props = client.detect_labels(Image=dog, Features=["IMAGE_PROPERTIES"])
    validate_response("DetectLabels", only_props)
    assert "Labels" not in only_props and "Quality" in only_props["ImageProperties"]
    for bad in ({"Settings": {"GeneralLabels": {"LabelInclusionFilters": ["Dgo"]}}},
                {"Features": ["IMAGE_PROPERTIES"], "Settings": {"GeneralLabels": {"LabelInclusionFilters": ["Dog"]}}},
                {"Settings": {"ImageProperties": {"MaxDominantColors": 3}}},
                {"Features": ["IMAGE_PROPERTIES"], "Settings": {"ImageProperties": {"MaxDominantColors": 21}}},
                {"MinConfidence": 101}, {"Features": ["TEXT"]}):
        with pytest.raises(client.exceptions.InvalidParameterException):
            client.detect_labels(Image=dog, **bad)
    with pytest.raises(rk.ParamValidationError):
        client.detect_labels(Image=dog, MaxLabels=-1)


def test_detect_labels_without_clip_refuses_clip_only_labels(client, monkeypatch):
    """CLIP cannot run here (offline, no weights): asking only for labels that CLIP alone
    finds is refused, with the reason, rather than answered with nothing."""
    from rekolab.analysis.labels import load_clip

    if load_clip({})[0] is not None:
        pytest.skip("a CLIP model is available here")
    with pytest.raises(client.exceptions.InvalidParameterException, match="only be found by CLIP"):
        client.detect_labels(Image=img(SCENES / "dog.jpg"),
                             Settings={"GeneralLabels": {"LabelInclusionFilters": ["Sunset"]}})
    with pytest.raises(client.exceptions.InvalidParameterException, match="CLIP was requested"):
        client.detect_labels(Image=img(SCENES / "dog.jpg"), Models=["CLIP"])


def test_image_properties_on_real_scene(client):
    r = client.detect_labels(Image=img(SCENES / "giraffe.jpg"), Features=["GENERAL_LABELS", "IMAGE_PROPERTIES"],
                             Settings={"ImageProperties": {"MaxDominantColors": 4}})
    validate_response("DetectLabels", r)
    props = r["ImageProperties"]
    assert set(props["Quality"]) == {"Brightness", "Sharpness", "Contrast"}
    assert 1 <= len(props["DominantColors"]) <= 4
    assert sum(c["PixelPercent"] for c in props["DominantColors"]) <= 100.0 + 1e-6
    assert set(props["Foreground"]["Quality"]) == {"Brightness", "Sharpness"}
    giraffe = next(lab for lab in r["Labels"] if lab["Name"] == "Giraffe")
    assert 1 <= len(giraffe["Instances"][0]["DominantColors"]) <= 3


# ------------------------------------------------------------------ dominant colours, independently


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) by the textbook formulas, independent of OpenCV."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _css_nearest(rgb) -> str:
    """The nearest CSS4 colour (matplotlib's table) by CIE76, as a hex code."""
    import matplotlib.colors as mcolors

    table = sorted({h.lower() for n, h in mcolors.CSS4_COLORS.items() if n != "rebeccapurple"})
    pal = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in table])
    d = ((_srgb_to_lab(pal) - _srgb_to_lab(np.array(rgb))) ** 2).sum(-1)
    return table[int(d.argmin())]


def test_dominant_colors_match_independent_counts(client):
    rng = np.random.default_rng(7)
    # Four regions of known area with off-palette colours (plus a little noise).
    colours = [(200, 30, 40), (20, 40, 150), (240, 240, 235), (40, 160, 60)]
    widths = [120, 80, 60, 40]  # of 300 columns: 40 %, 26.7 %, 20 %, 13.3 %
    rgb = np.concatenate([np.tile(np.array(c, np.uint8), (200, w, 1)) for c, w in zip(colours, widths)], 1)
    rgb = np.clip(rgb.astype(int) + rng.integers(-4, 5, rgb.shape), 0, 255).astype(np.uint8)
    r = client.detect_labels(Image={"Bytes": png(rgb)}, Features=["IMAGE_PROPERTIES"])
    validate_response("DetectLabels", r)
    got = r["ImageProperties"]["DominantColors"]
    expected = [(_css_nearest(c), 100 * w / sum(widths)) for c, w in zip(colours, widths)]
    assert [c["HexCode"] for c in got[:4]] == [hexcode for hexcode, _ in expected]
    for c, (_, share) in zip(got, expected):
        assert c["PixelPercent"] == pytest.approx(share, abs=2.0)
        assert c["HexCode"] == "#%02x%02x%02x" % (c["Red"], c["Green"], c["Blue"])
    assert [c["SimplifiedColor"] for c in got[:4]] == ["red", "blue", "white", "green"]
    # MaxDominantColors bounds the list; 0 gives none.
    r = client.detect_labels(Image={"Bytes": png(rgb)}, Features=["IMAGE_PROPERTIES"],
                             Settings={"ImageProperties": {"MaxDominantColors": 2}})
    assert len(r["ImageProperties"]["DominantColors"]) == 2
    r = client.detect_labels(Image={"Bytes": png(rgb)}, Features=["IMAGE_PROPERTIES"],
                             Settings={"ImageProperties": {"MaxDominantColors": 0}})
    assert r["ImageProperties"]["DominantColors"] == []


def test_quality_and_foreground_on_synthetic_images(client):
    half = np.zeros((120, 240, 3), np.uint8)
    half[:, 120:] = 255
    q = client.detect_labels(Image={"Bytes": png(half)}, Features=["IMAGE_PROPERTIES"])["ImageProperties"]["Quality"]
    assert q["Brightness"] == pytest.approx(50, abs=0.5) and q["Contrast"] == pytest.approx(100, abs=0.5)
    flat = np.full((120, 240, 3), 128, np.uint8)
    q = client.detect_labels(Image={"Bytes": png(flat)}, Features=["IMAGE_PROPERTIES"])["ImageProperties"]["Quality"]
    assert q["Sharpness"] == pytest.approx(0, abs=1e-6) and q["Contrast"] == pytest.approx(0, abs=1e-6)
    # No detector instance: the saliency proxy finds the odd square on a plain background.
    scene = np.full((200, 200, 3), (30, 90, 200), np.uint8)
    scene[80:120, 80:120] = (250, 220, 0)
    props = client.detect_labels(Image={"Bytes": png(scene)}, Features=["IMAGE_PROPERTIES"])["ImageProperties"]
    validate_response("DetectLabels", {"ImageProperties": props})
    assert props["Foreground"]["DominantColors"][0]["HexCode"] == _css_nearest((250, 220, 0))
    assert props["Background"]["DominantColors"][0]["HexCode"] == _css_nearest((30, 90, 200))


def test_video_label_instances_carry_the_same_colours():
    import cv2

    from rekolab.analysis.colors import box_colors
    from rekolab.analysis.labels import LabelDetectionAnalyzer

    rgb = cv2.imread(str(SCENES / "dog.jpg"))[:, :, ::-1].copy()
    _, instances = LabelDetectionAnalyzer({"Models": ["DETECTOR"]}).detect([rgb])
    boxes = [i for found in instances[0].values() for i in found]
    assert boxes
    for inst in boxes:
        assert inst["DominantColors"] and inst["DominantColors"] == box_colors(rgb, inst["BoundingBox"])


# ------------------------------------------------------------------ image input rules


def test_image_input_rules(client, tmp_path, monkeypatch):
    import cv2

    ok = (FACES / "obama.jpg").read_bytes()
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    big = bytearray(png(np.zeros((100, 100, 3), np.uint8)))
    (bucket / "big.png").write_bytes(bytes(big) + b"\0" * (15 * 1024 * 1024))
    (bucket / "ok.jpg").write_bytes(ok)
    c = rk.client(buckets={"bkt": str(bucket)})
    # Every refusal happens before any model is loaded: no models here at all.
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(tmp_path / "no-models"))
    gif = {"Bytes": b"GIF89a" + bytes(200)}
    bmp = cv2.imencode(".bmp", np.zeros((90, 90, 3), np.uint8))[1].tobytes()
    cases = [
        ("InvalidImageFormatException", {"Image": gif}),
        ("InvalidImageFormatException", {"Image": {"Bytes": ok[: len(ok) // 3]}}),  # truncated JPEG
        ("InvalidImageFormatException", {"Image": {"Bytes": bmp}}),
        ("ImageTooLargeException", {"Image": {"Bytes": ok + bytes(5 * 1024 * 1024)}}),
        ("ImageTooLargeException", {"Image": {"S3Object": {"Bucket": "bkt", "Name": "big.png"}}}),
        ("InvalidS3ObjectException", {"Image": {"S3Object": {"Bucket": "bkt", "Name": "missing.jpg"}}}),
        ("InvalidParameterException", {"Image": {"Bytes": png(np.zeros((60, 300, 3), np.uint8))}}),
        ("InvalidParameterException", {"Image": {"Bytes": ok, "S3Object": {"Bucket": "bkt", "Name": "ok.jpg"}}}),
    ]
    for op in ("detect_faces", "detect_labels"):
        for expected, params in cases:
            with pytest.raises(rk.ClientError) as exc:
                getattr(c, op)(**params)
            assert code(exc) == expected, (op, expected, exc.value)
    with pytest.raises(c.exceptions.InvalidImageFormatException):
        c.compare_faces(SourceImage=gif, TargetImage={"Bytes": ok})
    # DetectLabels takes at most 10000 pixels a side; DetectFaces has no such limit.
    tall = {"Bytes": png(np.zeros((10001, 80, 3), np.uint8))}
    with pytest.raises(c.exceptions.ImageTooLargeException, match="10000"):
        c.detect_labels(Image=tall)


def test_exif_orientation_is_applied(client):
    """A JPEG stored sideways with EXIF Orientation=6 reads upright: same face box."""
    from PIL import Image

    upright = Image.open(FACES / "obama.jpg").convert("RGB")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored rotated; EXIF 6 turns it back
    exif = sideways.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    sideways.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    buf2 = io.BytesIO()
    upright.save(buf2, format="JPEG", quality=95)
    a = client.detect_faces(Image={"Bytes": buf.getvalue()})
    b = client.detect_faces(Image={"Bytes": buf2.getvalue()})
    validate_response("DetectFaces", a)
    assert "OrientationCorrection" not in a
    for k in ("Left", "Top", "Width", "Height"):
        assert a["FaceDetails"][0]["BoundingBox"][k] == pytest.approx(b["FaceDetails"][0]["BoundingBox"][k], abs=0.01)


# ------------------------------------------------------------------ notebook verbs and CLI


def test_notebook_verbs(client):
    from PIL import Image

    path = FACES / "two_people.jpg"
    df = rk.detect_faces(path, client=client)
    assert len(df) == 2 and list(df.columns[:2]) == ["Image", "BoundingBox"]
    pil = Image.open(path)
    for other in (rk.detect_faces(pil, client=client), rk.detect_faces(np.asarray(pil.convert("RGB")), client=client)):
        assert [b["Left"] for b in other["BoundingBox"]] == pytest.approx([b["Left"] for b in df["BoundingBox"]],
                                                                          abs=1e-6)
    assert len(rk.detect_faces(SCENES, client=client)) == 0
    assert len(rk.detect_faces([path, FACES / "obama.jpg"], client=client)) == 3
    labels = rk.detect_labels(SCENES / "giraffe.jpg", features=["GENERAL_LABELS", "IMAGE_PROPERTIES"], client=client)
    assert {"Giraffe", "Zebra"} <= set(labels["Name"])
    assert str(SCENES / "giraffe.jpg") in labels.attrs["ImageProperties"]
    assert labels.attrs["LabelModelVersion"].startswith("rekolab-labels/")
    cmp = rk.compare_faces(FACES / "obama.jpg", FACES / "obama_and_biden.jpg", client=client)
    assert cmp["Matched"].tolist().count(True) == 1 and len(cmp) == 3


def test_cli(client, tmp_path, capsys, monkeypatch):
    from rekolab.cli import main

    monkeypatch.setenv("REKOLAB_BUCKETS", "")
    assert main(["detect-faces", str(FACES / "two_people.jpg"), "--attributes", "ALL", "-o",
                 str(tmp_path / "f.parquet")]) == 0
    out = capsys.readouterr().out
    assert "2 faces" in out and "age" in out
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "f.parquet").num_rows == 2
    assert main(["detect-labels", str(SCENES), "--properties", "--max-labels", "5", "-o",
                 str(tmp_path / "l.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and all(len(x["Labels"]) <= 5 and "ImageProperties" in x for x in lines)
    for line in lines:
        validate_response("DetectLabels", {k: v for k, v in line.items() if k != "Image"})
    assert main(["compare-faces", str(FACES / "obama.jpg"), str(FACES / "obama2.jpg")]) == 0
    assert "1 matches" in capsys.readouterr().out
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["detect-faces", str(bad)]) == 1
    assert "InvalidImageFormatException" in capsys.readouterr().err
