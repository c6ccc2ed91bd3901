"""Face attributes (rekolab.analysis.face_attributes) on the real shared media and models.

Faces come from insightface's SCRFD-500M (the shared ``det_500m.onnx``), as in the
face-detection job; expectations are checked against what the photos show and
against ../shared/models/MANIFEST.md.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("insightface")

from rekolab.models.faces import face_confidence, face_score  # noqa: E402
from rekolab.analysis.face_attributes import (  # noqa: E402
    ALL_ONLY_ATTRIBUTES,
    BASIC_LANDMARKS,
    DEFAULT_ATTRIBUTES,
    EMOTION_TYPES,
    LANDMARKS_68,
    FaceAttributeModels,
    describe_faces,
)

DEFAULT_KEYS = set(DEFAULT_ATTRIBUTES)
ALL_KEYS = DEFAULT_KEYS | set(ALL_ONLY_ATTRIBUTES)
NEVER = {"FaceOccluded", "EyeDirection", "Eyeglasses", "Sunglasses", "Beard", "Mustache"}
NO_MODELS = FaceAttributeModels(None, None, None)


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=1)
def _detector(path: str):
    from insightface.model_zoo import get_model

    det = get_model(path, providers=["CPUExecutionProvider"])
    det.prepare(ctx_id=-1, input_size=(640, 640))
    return det


def _detect(models_dir: Path, img: np.ndarray):
    """(boxes (N,4), kps (N,5,2), scores (N,)) from SCRFD."""
    det = _detector(str(models_dir / "insightface/models/scrfd500m_mfn128/det_500m.onnx"))
    bboxes, kpss = det.detect(img)
    return bboxes[:, :4], kpss, bboxes[:, 4]


def _image(media: Path, rel: str) -> np.ndarray:
    img = cv2.imread(str(media / rel))
    assert img is not None, rel
    return img


def _faces(media, models_dir, rel, attributes="ALL", models=None, img=None):
    img = _image(media, rel) if img is None else img
    boxes, kps, scores = _detect(models_dir, img)
    models = FaceAttributeModels.discover() if models is None else models
    return describe_faces(img, boxes, kps, scores, models, attributes), boxes, img


def _landmarks(face: dict) -> dict[str, tuple[float, float]]:
    return {lm["Type"]: (lm["X"], lm["Y"]) for lm in face["Landmarks"]}


def _largest(faces: list[dict]) -> dict:
    return max(faces, key=lambda f: f["BoundingBox"]["Width"] * f["BoundingBox"]["Height"])


@functools.lru_cache(maxsize=1)
def _face_detail_shape():
    import botocore.session

    return botocore.session.get_session().get_service_model("rekognition").shape_for("FaceDetail")


def _check_ranges(value, shape, where="FaceDetail") -> None:
    """Enums and min/max of every member: botocore's validator checks neither for floats."""
    if shape.type_name == "structure":
        assert isinstance(value, dict), where
        for key, item in value.items():
            assert key in shape.members, f"{where}.{key} is not in the shape"
            _check_ranges(item, shape.members[key], f"{where}.{key}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            _check_ranges(item, shape.member, f"{where}[{i}]")
    else:
        enum = shape.metadata.get("enum")
        if enum:
            assert value in enum, (where, value)
        if shape.type_name in ("float", "integer", "long", "double"):
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (where, value)
            assert math.isfinite(value), (where, value)
            if "min" in shape.metadata:
                assert value >= shape.metadata["min"], (where, value)
            if "max" in shape.metadata:
                assert value <= shape.metadata["max"], (where, value)


def _assert_valid(face: dict) -> None:
    from botocore.validate import ParamValidator

    shape = _face_detail_shape()
    report = ParamValidator().validate(face, shape)
    assert not report.has_errors(), report.generate_report()
    _check_ranges(face, shape)
    assert not NEVER & set(face)


# --------------------------------------------------------------------------- models


def test_discover_finds_the_shared_models(models_dir, monkeypatch):
    found = FaceAttributeModels.discover()
    assert found.landmarks68 == models_dir / "face_attributes/landmarks_68_pfld.onnx"
    assert found.emotion == models_dir / "face_attributes/emotion_mini_xception_fer2013_64.onnx"
    # No pack given: the first pack (sorted) that has one.
    ga = models_dir / "insightface/models/scrfd500m_genderage/genderage.onnx"
    assert found.genderage == ga
    assert FaceAttributeModels.discover(ga.parent).genderage == ga
    # A pack without genderage.onnx falls back to the other packs.
    assert FaceAttributeModels.discover(models_dir / "insightface/models/scrfd500m_mfn128").genderage == ga

    monkeypatch.delenv("REKOLAB_MODEL_DIR")
    assert FaceAttributeModels.discover() == NO_MODELS
    assert FaceAttributeModels.discover(ga.parent) == FaceAttributeModels(None, None, ga)


def test_methods_name_the_model_of_each_attribute(models_dir):
    models = FaceAttributeModels.discover()
    full = models.methods("ALL")
    assert set(full) == ALL_KEYS
    assert set(models.methods("DEFAULT")) == DEFAULT_KEYS
    for key in ("Landmarks", "Pose", "EyesOpen", "MouthOpen"):
        assert full[key].startswith("landmarks_68_pfld.onnx: "), full[key]
    for key in ("AgeRange", "Gender"):
        assert full[key].startswith("genderage.onnx: "), full[key]
    assert full["Emotions"].startswith("emotion_mini_xception_fer2013_64.onnx: ")
    assert "emotion_mini_xception_fer2013_64.onnx" in full["Smile"]
    assert "landmarks_68_pfld.onnx" in full["Smile"]

    bare = NO_MODELS.methods("ALL")
    assert set(bare) == DEFAULT_KEYS  # nothing without a model is promised
    assert bare["Landmarks"].startswith("detector: ") and bare["Pose"].startswith("detector: ")

    only_emotion = FaceAttributeModels(None, models.emotion, None).methods()
    assert set(only_emotion) == DEFAULT_KEYS | {"Emotions", "Smile"}
    assert "landmarks" not in only_emotion["Smile"]
    with pytest.raises(ValueError):
        models.methods("FACES")


# --------------------------------------------------------------------------- real faces


def test_obama(media, models_dir):
    faces, _, _ = _faces(media, models_dir, "faces/obama.jpg")
    assert len(faces) == 1
    face = faces[0]
    assert set(face) == ALL_KEYS
    assert face["Gender"]["Value"] == "Male" and face["Gender"]["Confidence"] > 90
    low, high = face["AgeRange"]["Low"], face["AgeRange"]["High"]
    assert low < high and low <= 75 and high >= 45  # the range meets 45..75
    assert face["EyesOpen"]["Value"] is True
    assert face["Emotions"][0]["Type"] == "HAPPY" and face["Emotions"][0]["Confidence"] > 90
    assert face["Smile"]["Value"] is True and face["Smile"]["Confidence"] > 90
    assert face["MouthOpen"]["Value"] is True  # a wide smile, teeth apart
    pose = face["Pose"]
    assert abs(pose["Yaw"]) < 25 and abs(pose["Roll"]) < 20 and abs(pose["Pitch"]) < 25
    assert 0.8 < face_score(face["Confidence"]) < 0.9  # SCRFD's score (MANIFEST: 0.74..0.90), calibrated
    assert face["Confidence"] > 99  # a clear face reads 99+, as in Rekognition
    q = face["Quality"]
    assert 30 < q["Brightness"] < 80 and q["Sharpness"] > 60  # a sharp, well-lit portrait


def test_emotions_are_all_seven_sorted(media, models_dir):
    faces, _, _ = _faces(media, models_dir, "faces/insightface_t1.jpg")
    assert len(faces) == 6
    for face in faces:
        emotions = face["Emotions"]
        assert sorted(e["Type"] for e in emotions) == sorted(EMOTION_TYPES)
        conf = [e["Confidence"] for e in emotions]
        assert conf == sorted(conf, reverse=True)
        assert abs(sum(conf) - 100.0) < 0.1  # softmax probabilities x 100


def test_expressions_match_the_photos(media, models_dir):
    # MANIFEST: biden.jpg is not smiling (neutral 0.67); lin-manuel-miranda.png is
    # singing, mouth open (surprise 0.75).
    biden = _largest(_faces(media, models_dir, "faces/biden.jpg")[0])
    assert biden["Emotions"][0]["Type"] == "CALM"
    assert biden["Smile"]["Value"] is False
    assert biden["MouthOpen"]["Value"] is False
    lin = _largest(_faces(media, models_dir, "faces/lin-manuel-miranda.png")[0])
    assert lin["MouthOpen"]["Value"] is True
    assert lin["Emotions"][0]["Type"] == "SURPRISED"
    assert lin["Smile"]["Value"] is False
    assert lin["EyesOpen"]["Value"] is True
    # Closed mouths elsewhere.
    for rel in ("celebrities/Rob_Lowe_0002.jpg", "faces/obama3.jpg", "celebrities/Nathalie_Baye_0002.jpg"):
        face = _largest(_faces(media, models_dir, rel)[0])
        assert face["MouthOpen"]["Value"] is False, rel
    # A big laugh with teeth apart.
    laugh = _largest(_faces(media, models_dir, "celebrities/Rob_Lowe_0001.jpg")[0])
    assert laugh["MouthOpen"]["Value"] is True


def test_t1_genders_match_by_box(media, models_dir):
    # The six people of insightface_t1.jpg, by face centre in pixels (left to right),
    # and their sex as seen in the photo. MANIFEST lists F, M, M, M, F, F in its order:
    # three women, three men.
    truth = [((112, 329), "Female"), ((321, 208), "Female"), ((518, 341), "Male"),
             ((796, 411), "Male"), ((959, 133), "Male"), ((1179, 337), "Female")]
    faces, boxes, _ = _faces(media, models_dir, "faces/insightface_t1.jpg")
    assert len(faces) == 6
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    seen = set()
    for (cx, cy), sex in truth:
        d = np.hypot(centres[:, 0] - cx, centres[:, 1] - cy)
        i = int(np.argmin(d))
        assert d[i] < 40, (cx, cy, centres)
        seen.add(i)
        assert faces[i]["Gender"]["Value"] == sex, ((cx, cy), faces[i]["Gender"])
        # Young adults in the photo: the point estimate sits in 18..60.
        mid = (faces[i]["AgeRange"]["Low"] + faces[i]["AgeRange"]["High"]) / 2
        assert 18 <= mid <= 60, faces[i]["AgeRange"]
    assert seen == set(range(6))


def test_other_genders(media, models_dir):
    # MANIFEST: Nathalie Baye F, the others M.
    for rel, sex in [("celebrities/Nathalie_Baye_0002.jpg", "Female"),
                     ("celebrities/Rob_Lowe_0001.jpg", "Male"),
                     ("faces/biden2.jpg", "Male"), ("faces/alex-lacamoire.png", "Male")]:
        face = _largest(_faces(media, models_dir, rel)[0])
        assert face["Gender"]["Value"] == sex, rel


@pytest.mark.parametrize("rel", [
    "faces/obama.jpg", "faces/biden.jpg", "faces/biden2.jpg", "faces/lin-manuel-miranda.png",
    "celebrities/Rob_Lowe_0002.jpg",
])
def test_landmarks_of_a_frontal_face(media, models_dir, rel):
    faces, boxes, img = _faces(media, models_dir, rel, "DEFAULT")
    h, w = img.shape[:2]
    face = _largest(faces)
    types = [lm["Type"] for lm in face["Landmarks"]]
    assert types == [name for name, _ in LANDMARKS_68] and len(set(types)) == 30
    # Inside the face box grown by 20% (10% each side).
    bb = face["BoundingBox"]
    for t, (x, y) in _landmarks(face).items():
        assert bb["Left"] - 0.1 * bb["Width"] <= x <= bb["Left"] + 1.1 * bb["Width"], (t, x, bb)
        assert bb["Top"] - 0.1 * bb["Height"] <= y <= bb["Top"] + 1.1 * bb["Height"], (t, y, bb)
    p = _landmarks(face)
    # Left = the image's left (smaller X).
    for left, right in [("eyeLeft", "eyeRight"), ("leftPupil", "rightPupil"), ("mouthLeft", "mouthRight"),
                        ("leftEyeLeft", "leftEyeRight"), ("rightEyeLeft", "rightEyeRight"),
                        ("leftEyeRight", "rightEyeLeft"), ("noseLeft", "noseRight"),
                        ("leftEyeBrowLeft", "rightEyeBrowRight"), ("upperJawlineLeft", "upperJawlineRight"),
                        ("midJawlineLeft", "midJawlineRight")]:
        assert p[left][0] < p[right][0], (left, right)
    # Top to bottom along the face.
    assert p["leftEyeBrowUp"][1] < p["leftEyeUp"][1] < p["leftEyeDown"][1] < p["nose"][1]
    assert p["nose"][1] < p["mouthUp"][1] < p["mouthDown"][1] < p["chinBottom"][1]
    # The 68-point eyes agree with the detector's keypoints (within 15% of the eye distance).
    _, kps, _ = _detect(models_dir, img)
    k = kps[int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))] / [w, h]
    iod = np.hypot(*(k[1] - k[0]))
    for i, name in enumerate(BASIC_LANDMARKS):
        assert np.hypot(*(np.array(p[name]) - k[i])) < 0.15 * iod * (2 if name == "nose" else 1), name


def test_default_has_exactly_the_default_keys(media, models_dir):
    faces, _, _ = _faces(media, models_dir, "faces/obama_and_biden.jpg", "DEFAULT")
    assert len(faces) == 3
    for face in faces:
        assert set(face) == DEFAULT_KEYS
        _assert_valid(face)


def test_without_models_only_detector_attributes(media, models_dir):
    img = _image(media, "faces/two_people.jpg")
    boxes, kps, scores = _detect(models_dir, img)
    h, w = img.shape[:2]
    faces = describe_faces(img, boxes, kps, scores, NO_MODELS, "ALL")
    assert len(faces) == 2
    for face, k, box, score in zip(faces, kps, boxes, scores):
        assert set(face) == DEFAULT_KEYS  # nothing invented without a model
        assert [lm["Type"] for lm in face["Landmarks"]] == list(BASIC_LANDMARKS)
        got = np.array([[lm["X"], lm["Y"]] for lm in face["Landmarks"]])
        np.testing.assert_allclose(got, k / [w, h], rtol=1e-6)
        assert face["Confidence"] == pytest.approx(float(face_confidence(score)))
        assert face["BoundingBox"]["Left"] == pytest.approx(box[0] / w)
        assert face["BoundingBox"]["Height"] == pytest.approx((box[3] - box[1]) / h)
        assert abs(face["Pose"]["Roll"]) < 20 and abs(face["Pose"]["Yaw"]) < 35
        _assert_valid(face)
    # No keypoints and no 68-point model: no points at all, so no Landmarks or Pose.
    bare = describe_faces(img, boxes, None, scores, NO_MODELS, "ALL")
    assert all(set(f) == {"BoundingBox", "Quality", "Confidence"} for f in bare)


def test_each_model_alone(media, models_dir):
    full = FaceAttributeModels.discover()
    img = _image(media, "faces/obama.jpg")
    boxes, kps, scores = _detect(models_dir, img)
    cases = {
        FaceAttributeModels(None, None, full.genderage): DEFAULT_KEYS | {"AgeRange", "Gender"},
        FaceAttributeModels(None, full.emotion, None): DEFAULT_KEYS | {"Emotions", "Smile"},
        FaceAttributeModels(full.landmarks68, None, None): DEFAULT_KEYS | {"EyesOpen", "MouthOpen"},
    }
    for models, keys in cases.items():
        (face,) = describe_faces(img, boxes, kps, scores, models, "ALL")
        assert set(face) == keys == set(models.methods("ALL"))
        _assert_valid(face)
    emotion_models = FaceAttributeModels(None, full.emotion, None)
    (emotion_only,) = describe_faces(img, boxes, kps, scores, emotion_models, "ALL")
    assert emotion_only["Smile"]["Value"] is True  # P(happy) alone
    assert len(emotion_only["Landmarks"]) == 5


def test_every_face_validates_against_botocore(media, models_dir):
    models = FaceAttributeModels.discover()
    count = 0
    for rel in sorted(p.relative_to(media).as_posix() for p in (media / "faces").iterdir()) + [
        "celebrities/Rob_Lowe_0001.jpg", "celebrities/Nathalie_Baye_0002.jpg",
    ]:
        img = _image(media, rel)
        boxes, kps, scores = _detect(models_dir, img)
        for attributes in ("DEFAULT", "ALL"):
            for m in (models, NO_MODELS):
                for face in describe_faces(img, boxes, kps, scores, m, attributes):
                    _assert_valid(face)
                    count += 1
    assert count >= 4 * 18


def test_batch_equals_one_face_at_a_time(media, models_dir):
    models = FaceAttributeModels.discover()
    img = _image(media, "faces/insightface_t1.jpg")
    boxes, kps, scores = _detect(models_dir, img)
    together = describe_faces(img, boxes, kps, scores, models, "ALL")
    for i in range(len(boxes)):
        (alone,) = describe_faces(img, boxes[i:i + 1], kps[i:i + 1], scores[i:i + 1], models, "ALL")
        assert alone.keys() == together[i].keys()
        assert alone["Gender"] == together[i]["Gender"] and alone["AgeRange"] == together[i]["AgeRange"]
        for a, b in zip(alone["Landmarks"], together[i]["Landmarks"]):
            assert a["Type"] == b["Type"]
            assert a["X"] == pytest.approx(b["X"], abs=1e-4) and a["Y"] == pytest.approx(b["Y"], abs=1e-4)
        for a, b in zip(alone["Emotions"], together[i]["Emotions"]):
            assert a["Confidence"] == pytest.approx(b["Confidence"], abs=1e-3)


def test_empty_and_bad_input(media, models_dir):
    img = _image(media, "faces/obama.jpg")
    models = FaceAttributeModels.discover()
    assert describe_faces(img, np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0), models, "ALL") == []
    assert describe_faces(img, np.zeros((0, 4)), None, np.zeros(0), models, "ALL") == []
    with pytest.raises(ValueError):
        describe_faces(img, np.zeros((0, 4)), None, np.zeros(0), models, "FACES")
    with pytest.raises(ValueError):
        describe_faces(img, np.zeros((1, 4)), None, np.zeros(2), models)


# --------------------------------------------------------------------------- geometry


def test_bounding_box_is_not_clamped(media, models_dir):
    img = _image(media, "faces/obama.jpg")
    h, w = img.shape[:2]
    boxes, kps, scores = _detect(models_dir, img)
    x1, y1, x2, y2 = boxes[0]
    # Shift the frame so the face runs off its left and top edges.
    dx, dy = int(x1 + (x2 - x1) * 0.3), int(y1 + (y2 - y1) * 0.2)
    cut = np.ascontiguousarray(img[dy:, dx:])
    shifted = boxes - [dx, dy, dx, dy]
    (face,) = describe_faces(cut, shifted, kps - [dx, dy], scores, FaceAttributeModels.discover(), "ALL")
    bb = face["BoundingBox"]
    ch, cw = cut.shape[:2]
    assert bb["Left"] < 0 and bb["Top"] < 0
    assert bb["Left"] == pytest.approx(shifted[0, 0] / cw) and bb["Width"] == pytest.approx((x2 - x1) / cw)
    _assert_valid(face)
    # A box past the right/bottom edges too: ratios above 1, still a valid FaceDetail.
    big = np.array([[-50.0, -60.0, w + 40.0, h + 30.0]])
    (face,) = describe_faces(img, big, None, np.array([0.5]), FaceAttributeModels.discover(), "ALL")
    assert face["BoundingBox"]["Left"] < 0 and face["BoundingBox"]["Left"] + face["BoundingBox"]["Width"] > 1
    _assert_valid(face)


def test_quality_follows_blur_and_brightness(media, models_dir):
    img = _image(media, "faces/obama.jpg")
    boxes, kps, scores = _detect(models_dir, img)
    models = FaceAttributeModels.discover()

    def quality(frame):
        return describe_faces(frame, boxes, kps, scores, models, "DEFAULT")[0]["Quality"]

    base = quality(img)
    blurred = quality(cv2.GaussianBlur(img, (0, 0), 3))
    brighter = quality(cv2.convertScaleAbs(img, alpha=1.0, beta=50))
    darker = quality(cv2.convertScaleAbs(img, alpha=0.5, beta=0))
    assert blurred["Sharpness"] < 0.5 * base["Sharpness"], (base, blurred)
    assert blurred["Brightness"] == pytest.approx(base["Brightness"], abs=2)
    assert brighter["Brightness"] > base["Brightness"] + 15, (base, brighter)
    assert darker["Brightness"] < base["Brightness"] - 15, (base, darker)
    # Brightness = 100 x mean gray of the box / 255.
    x1, y1, x2, y2 = boxes[0]
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
    assert base["Brightness"] == pytest.approx(100 * gray.mean() / 255, abs=0.5)


@pytest.mark.parametrize("with_68", [True, False], ids=["68-points", "5-keypoints"])
@pytest.mark.parametrize("rel", ["faces/obama2.jpg", "faces/biden.jpg", "celebrities/Nathalie_Baye_0002.jpg"])
def test_flipped_face_flips_yaw_and_roll(media, models_dir, rel, with_68):
    models = FaceAttributeModels.discover() if with_68 else NO_MODELS
    img = _image(media, rel)
    pose = _largest(_faces(media, models_dir, rel, "DEFAULT", models, img)[0])["Pose"]
    mirror = np.ascontiguousarray(img[:, ::-1])
    flipped = _largest(_faces(media, models_dir, rel, "DEFAULT", models, mirror)[0])["Pose"]
    assert abs(pose["Yaw"]) > 5  # these faces are turned, so the sign means something
    assert np.sign(flipped["Yaw"]) == -np.sign(pose["Yaw"]), (pose, flipped)
    assert abs(pose["Yaw"] + flipped["Yaw"]) < 8, (pose, flipped)
    assert abs(pose["Roll"] + flipped["Roll"]) < 5, (pose, flipped)
    if abs(pose["Roll"]) > 3:
        assert np.sign(flipped["Roll"]) == -np.sign(pose["Roll"]), (pose, flipped)
    assert abs(pose["Pitch"] - flipped["Pitch"]) < 8, (pose, flipped)


@pytest.mark.parametrize("with_68", [True, False], ids=["68-points", "5-keypoints"])
def test_roll_follows_an_image_rotation(media, models_dir, with_68):
    models = FaceAttributeModels.discover() if with_68 else NO_MODELS
    img = _image(media, "faces/obama.jpg")
    h, w = img.shape[:2]
    base = _faces(media, models_dir, "", "DEFAULT", models, img)[0][0]["Pose"]
    for angle in (15, -15):
        # cv2's positive angle is counter-clockwise; Roll > 0 is clockwise.
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        rotated = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        (face,) = _faces(media, models_dir, "", "DEFAULT", models, rotated)[0]
        turned = face["Pose"]["Roll"] - base["Roll"]
        assert turned == pytest.approx(-angle, abs=5), (angle, face["Pose"], base)
        assert abs(face["Pose"]["Yaw"] - base["Yaw"]) < 8
