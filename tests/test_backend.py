"""The torch backend (ONNX graphs converted by onnx2torch) and batched inference.

* every model's torch module matches onnxruntime on inputs recorded from the real
  pipeline (face pack, attribute models, YOLOX on the shared media);
* every converted module runs on torch's ``meta`` device with its shape values on
  the host: nothing reads a device tensor back, which on CUDA would block;
* batched detection, recognition and attributes give the same results as frame by
  frame, on the Hamilton clip at 1 sample per second.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MEDIA, MODELS, module_env, need

pytest.importorskip("onnx2torch")
torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from rekolab.models import backend as B  # noqa: E402

CLIP = MEDIA / "video" / "short_hamilton_clip.mp4"

#: Max abs difference allowed between torch (CPU, fp32) and onnxruntime, per model.
#: Measured on these inputs: docs/performance.md.
TOLERANCE = {
    "det_500m.onnx": 1e-4,
    "MobileFaceNet.onnx": 1e-4,
    "genderage.onnx": 1e-4,
    "landmarks_68_pfld.onnx": 1e-5,
    "emotion_mini_xception_fer2013_64.onnx": 1e-5,
    "yolox_nano.onnx": 2e-3,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need(CLIP)
    need(MODELS / "insightface" / "models" / "scrfd500m_mfn128")
    with module_env(tmp_path_factory, REKOLAB_BACKEND="onnxruntime"):
        yield


@pytest.fixture(scope="module")
def frames(env):
    from rekolab.video import plan

    return [np.ascontiguousarray(f[:, :, ::-1]) for b in plan(CLIP, 1.0).batches() for f in b.frames]


@pytest.fixture(scope="module")
def recorded(env, frames):
    """Every model input of one pass over real media (onnxruntime engine)."""
    from rekolab.analysis.face_attributes import FaceAttributeModels, describe_faces_batch
    from rekolab.models.faces import face_pack
    from rekolab.models.yolox import YoloxDetector

    need(MODELS / "coco_detection" / "yolox_nano.onnx")
    pack = face_pack()
    ga = MODELS / "insightface/models/scrfd500m_genderage/genderage.onnx"
    models = FaceAttributeModels(landmarks68=pack.attributes.landmarks68, emotion=pack.attributes.emotion,
                                 genderage=need(ga))
    sample = frames[::4]
    with B.recording() as calls:
        found = pack.detect_batch(sample)
        pack.embed_batch(sample, [f[2] for f in found])
        describe_faces_batch(sample, [f[0] for f in found], [f[2] for f in found], [f[1] for f in found],
                             models, "ALL")
        YoloxDetector().detect_batch([cv2.imread(str(need(MEDIA / "scenes" / "dog.jpg"))), sample[0]])
    # At most 4 items per model: torch on the CPU is slow (docs/performance.md), and a
    # few real inputs per model are enough to see a conversion error.
    kept, count = [], {}
    for path, x in calls:
        room = 4 - count.get(path.name, 0)
        if room > 0:
            kept.append((path, x[:room]))
            count[path.name] = count.get(path.name, 0) + len(x[:room])
    return kept


def test_default_backend_and_switch(monkeypatch):
    monkeypatch.delenv("REKOLAB_BACKEND", raising=False)
    expected = "torch" if B.torch_device() == "cuda" else "onnxruntime"
    assert B.backend() == expected
    monkeypatch.setenv("REKOLAB_BACKEND", "TORCH")
    assert B.backend() == "torch"
    monkeypatch.setenv("REKOLAB_BACKEND", "auto")
    assert B.backend() == expected
    monkeypatch.setenv("REKOLAB_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="REKOLAB_BACKEND must be one of"):
        B.backend()
    monkeypatch.setenv("REKOLAB_DEVICE", "cpu")
    assert B.torch_device() == "cpu"


def test_torch_matches_onnxruntime_on_real_media(recorded):
    assert {p.name for p, _ in recorded} == set(TOLERANCE)  # every model was exercised
    # MobileFaceNet and YOLOX-nano are exported with batch 1: onnxruntime runs them
    # item by item, the converted modules take the whole batch.
    assert {p.name for p, _ in recorded if B.OnnxModel(p, "onnxruntime").fixed_batch == 1} == {
        "MobileFaceNet.onnx", "yolox_nano.onnx"}
    diffs = B.engine_differences(recorded, "torch", "cpu")
    print("\nmax abs difference torch (cpu) vs onnxruntime:", diffs)
    for name, diff in diffs.items():
        assert diff <= TOLERANCE[name], (name, diff)


def test_converted_modules_keep_shapes_on_the_host(recorded):
    """On the meta device any .tolist()/.item() of a device tensor raises: passing
    proves the module reads no value back from the device it runs on."""
    shapes = {}
    for path, x in recorded:
        shapes.setdefault(path, x.shape)
    for path, shape in shapes.items():
        module = B.place(B.convert_onnx(path), "meta")
        with torch.inference_mode():
            out = module(torch.empty((2,) + shape[1:], device="meta"))
        outs = out if isinstance(out, (list, tuple)) else [out]
        assert all(o.device.type == "meta" and o.shape[0] == 2 for o in outs), path.name
    # And without the host placement the same check fails (the test can fail).
    det = next(p for p in shapes if p.name == "det_500m.onnx")
    with pytest.raises((RuntimeError, NotImplementedError)):
        with torch.inference_mode():
            B.convert_onnx(det).to("meta")(torch.empty((1,) + shapes[det][1:], device="meta"))


def test_batched_detection_equals_insightface_frame_by_frame(env, frames):
    from rekolab.models.faces import _det_input_size, face_pack

    pack = face_pack()
    batched = pack.detect_batch(frames)
    faces = 0
    for frame, (boxes, scores, kps) in zip(frames, batched):
        ref, ref_kps = pack.detector.detect(frame, input_size=_det_input_size(*frame.shape[:2]), max_num=0)
        order = np.argsort(-ref[:, 4], kind="stable")
        np.testing.assert_array_equal(boxes, ref[order, :4])
        np.testing.assert_array_equal(scores, ref[order, 4])
        np.testing.assert_array_equal(kps, ref_kps[order])
        faces += len(boxes)
    assert faces >= len(frames) // 2  # the clip has faces in most frames

    from insightface.utils import face_align

    rec = pack.recognizer
    embedded = pack.embed_batch(frames, [f[2] for f in batched])
    for frame, (_, _, kps), emb in zip(frames, batched, embedded):
        assert emb.shape == (len(kps), 128)
        for k, e in zip(kps, emb):
            one = rec.get_feat(face_align.norm_crop(frame, landmark=k, image_size=112)).reshape(-1)
            np.testing.assert_array_equal(e, one / np.linalg.norm(one))


def test_face_job_batched_equals_frame_by_frame(env):
    """The analyzers see whole batches; one frame per batch gives the same rows."""
    from rekolab.analysis.faces import FaceDetectionAnalyzer
    from rekolab.video import FrameBatch, plan

    (batch,) = list(plan(CLIP, 1.0).batches(batch_size=64))
    analyzer = FaceDetectionAnalyzer({"FaceAttributes": "ALL"})
    together = analyzer(batch).to_pylist()
    alone = [row for i in range(len(batch)) for row in analyzer(FrameBatch(
        batch.frames[i:i + 1], batch.timestamps_ms[i:i + 1], batch.indices[i:i + 1])).to_pylist()]
    assert len(together) >= 5
    assert together == alone
