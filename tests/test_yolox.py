"""YOLOX-nano on the real darknet sample images and a real traffic clip.

Expected detections are the ones recorded in shared/models/MANIFEST.md."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from rekolab.models.yolox import COCO80, Detections, YoloxDetector, nms_per_class  # noqa: E402


@pytest.fixture
def det(models_dir):
    from conftest import need

    need(models_dir / "coco_detection" / "yolox_nano.onnx")
    return YoloxDetector()


def _image(media, name):
    img = cv2.imread(str(media / "scenes" / name))
    assert img is not None, name
    return img


def _best(dets: Detections, name: str) -> tuple[float, np.ndarray]:
    idx = [i for i, n in enumerate(dets.class_names) if n == name]
    assert idx, f"no {name} in {dets}"
    i = max(idx, key=lambda j: dets.scores[j])
    return float(dets.scores[i]), dets.boxes_xyxy[i]


def test_graph_facts(det):
    assert det.name == "yolox_nano.onnx"
    assert det.input_size == (416, 416)
    assert det.fixed_batch == 1 and det.batch_size == 1
    assert det.num_classes == 80
    assert det.labels == list(COCO80)  # coco80_labels.txt beside the model agrees
    grid, stride = det._grid()
    assert grid.shape == (52 * 52 + 26 * 26 + 13 * 13, 2)
    assert grid[0].tolist() == [0, 0] and grid[1].tolist() == [1, 0] and grid[52].tolist() == [0, 1]
    assert stride[0, 0] == 8 and stride[-1, 0] == 32


def test_dog_boxes_match_manifest(det, media):
    dets = det.detect(_image(media, "dog.jpg"))
    expected = {
        "dog": [133, 207, 326, 543],
        "bicycle": [52, 137, 572, 424],
        "car": [466, 78, 692, 171],
    }
    for name, box in expected.items():
        score, got = _best(dets, name)
        assert score > 0.7, (name, score)
        assert np.abs(got - np.asarray(box)).max() <= 15, (name, got, box)
    assert dets.boxes_xyxy.dtype == np.float32 and dets.boxes_xyxy.shape == (len(dets), 4)
    assert dets.class_ids.shape == dets.scores.shape == (len(dets),)
    assert np.all((dets.scores >= 0.25) & (dets.scores <= 1))
    assert np.all(np.diff(dets.scores) <= 0)  # sorted, best first
    assert [COCO80[i] for i in dets.class_ids] == dets.class_names


@pytest.mark.parametrize("image, names", [
    ("person.jpg", {"person", "dog", "horse"}),
    ("giraffe.jpg", {"giraffe", "zebra"}),
    ("eagle.jpg", {"bird"}),
])
def test_scenes(det, media, image, names):
    dets = det.detect(_image(media, image))
    found = {n for n, s in zip(dets.class_names, dets.scores) if s >= 0.5}
    assert names <= found, dets


def test_traffic_video_first_frame(det, media):
    cap = cv2.VideoCapture(str(media / "video" / "slow_traffic_small.mp4"))
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    assert ok and frame.shape == (360, 640, 3)
    dets = YoloxDetector(det.path, score_threshold=0.3).detect(frame)
    cars = [s for n, s in zip(dets.class_names, dets.scores) if n == "car"]
    assert len(cars) >= 3, dets
    assert max(cars) >= 0.8


def test_detect_batch_loops_on_fixed_batch(det, media):
    frames = [_image(media, "dog.jpg"), _image(media, "giraffe.jpg"),
              np.zeros((100, 200, 3), np.uint8)]
    many = det.detect_batch(frames)
    assert len(many) == 3
    for frame, got in zip(frames, many):
        one = det.detect(frame)
        assert got.class_names == one.class_names
        np.testing.assert_allclose(got.boxes_xyxy, one.boxes_xyxy, atol=1e-3)
    assert len(many[2]) == 0
    assert det.detect_batch([]) == []


def test_detect_batch_batches_on_dynamic_graph(det, media, tmp_path):
    """The same weights with a dynamic batch axis run frames together, same results."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(det.path))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    targets = {n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    for init in model.graph.initializer:
        if init.name in targets:
            shape = numpy_helper.to_array(init).copy()
            shape[0] = 0  # Reshape: 0 copies the input's (batch) dimension
            init.CopyFrom(numpy_helper.from_array(shape, init.name))
    path = tmp_path / "yolox_nano_dynamic.onnx"
    onnx.save(model, str(path))

    dyn = YoloxDetector(path, batch_size=4)
    assert dyn.fixed_batch is None and dyn.batch_size == 4
    assert dyn.labels == list(COCO80)  # no labels file beside it: the built-in list
    calls = []
    real = dyn.model  # the engine running the graph (rekolab.models.backend.OnnxModel)

    class Spy:
        frame_parallel = real.frame_parallel  # on the CPU the two calls run side by side

        def __call__(self, batch):
            calls.append(batch.shape[0])
            return real(batch)

    dyn.model = Spy()
    frames = [_image(media, n) for n in ("dog.jpg", "person.jpg", "giraffe.jpg", "eagle.jpg", "horses.jpg")]
    many = dyn.detect_batch(frames)
    assert sorted(calls) == [1, 4]
    for frame, got in zip(frames, many):
        one = det.detect(frame)
        assert got.class_names == one.class_names
        np.testing.assert_allclose(got.boxes_xyxy, one.boxes_xyxy, atol=0.05)
        np.testing.assert_allclose(got.scores, one.scores, atol=1e-4)


def test_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("REKOLAB_MODEL_DIR", raising=False)
    assert YoloxDetector.resolve() is None
    assert not YoloxDetector.available()
    with pytest.raises(FileNotFoundError, match="REKOLAB_MODEL_DIR"):
        YoloxDetector()
    with pytest.raises(FileNotFoundError):
        YoloxDetector(tmp_path / "missing.onnx")
    assert not YoloxDetector.available(tmp_path / "missing.onnx")
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(tmp_path))  # a folder without the model
    assert not YoloxDetector.available()


def test_available_with_models(models_dir):
    assert YoloxDetector.available()


def test_nms_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    keep = nms_per_class(boxes, scores, classes, 0.45)
    # box 1 overlaps box 0 (same class) and goes; box 2 is another class and stays
    assert keep.tolist() == [0, 2, 3]
    assert cv2.dnn.NMSBoxesBatched(
        [[int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])] for b in boxes],
        scores.tolist(), classes.tolist(), 0.0, 0.45).flatten().tolist() == [0, 2, 3]
    assert nms_per_class(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.45).size == 0
