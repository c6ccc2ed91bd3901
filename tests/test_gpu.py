"""The CUDA paths, checked against the CPU (marked ``gpu``: skipped without a CUDA GPU
unless ``REKOLAB_REQUIRE_GPU=1``, which ``bench/gpu.sh`` sets).

* every converted ONNX model on CUDA (fp32; cuDNN may use TF32) matches onnxruntime on
  the CPU on inputs recorded from the real pipeline;
* the face detection job on CUDA (torch backend, batched, pinned memory + stream)
  finds the same faces as the CPU job, boxes within 0.2 % of the frame;
* YOLOX on CUDA gives the CPU's detections;
* CLIP ViT-B-32 in fp16 on CUDA embeds frames like fp32 on the CPU (cosine > 0.99).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MEDIA, MODELS, module_env, need

pytestmark = pytest.mark.gpu

CLIP = MEDIA / "video" / "short_hamilton_clip.mp4"

#: CUDA vs onnxruntime-CPU max abs difference allowed per model (TF32 convolutions).
GPU_TOLERANCE = {
    "det_500m.onnx": 5e-3,
    "MobileFaceNet.onnx": 5e-3,
    "genderage.onnx": 5e-2,
    "landmarks_68_pfld.onnx": 2e-3,
    "emotion_mini_xception_fer2013_64.onnx": 2e-3,
    "yolox_nano.onnx": 5e-2,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need(CLIP)
    with module_env(tmp_path_factory, REKOLAB_BACKEND="onnxruntime", REKOLAB_DEVICE=None):
        yield


@pytest.fixture(scope="module")
def frames(env):
    from rekolab.video import plan

    return [np.ascontiguousarray(f[:, :, ::-1]) for b in plan(CLIP, 1.0).batches() for f in b.frames]


def test_cuda_is_there():
    import torch

    from rekolab.models.backend import torch_device

    assert torch.cuda.is_available(), "REKOLAB_REQUIRE_GPU=1 but torch sees no CUDA device"
    assert torch_device() == "cuda"


def test_every_model_on_cuda_matches_onnxruntime(env, frames):
    from rekolab.analysis.face_attributes import FaceAttributeModels, describe_faces_batch
    from rekolab.models import backend as B
    from rekolab.models.faces import face_pack
    from rekolab.models.yolox import YoloxDetector

    pack = face_pack()
    models = FaceAttributeModels(landmarks68=pack.attributes.landmarks68, emotion=pack.attributes.emotion,
                                 genderage=need(MODELS / "insightface/models/scrfd500m_genderage/genderage.onnx"))
    with B.recording() as calls:
        found = pack.detect_batch(frames)
        pack.embed_batch(frames, [f[2] for f in found])
        describe_faces_batch(frames, [f[0] for f in found], [f[2] for f in found], [f[1] for f in found],
                             models, "ALL")
        YoloxDetector().detect_batch(frames[:4])
    diffs = B.engine_differences(calls, "torch", "cuda")
    print("\nmax abs difference torch (cuda) vs onnxruntime (cpu):", diffs)
    assert set(diffs) == set(GPU_TOLERANCE)
    for name, diff in diffs.items():
        assert diff <= GPU_TOLERANCE[name], (name, diff)


def _faces_rows(backend: str, monkeypatch):
    import rekolab as rk
    from rekolab.models import backend as B

    monkeypatch.setenv("REKOLAB_BACKEND", backend)
    B._cached_model.cache_clear()
    job = rk.start_face_detection(CLIP, face_attributes="ALL", sample_rate=2).wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    return job.to_pandas()


def test_face_job_on_cuda_matches_cpu(env, monkeypatch):
    cpu = _faces_rows("onnxruntime", monkeypatch)
    gpu = _faces_rows("torch", monkeypatch)
    assert len(cpu) > 10
    assert list(gpu["Timestamp"]) == list(cpu["Timestamp"])  # same faces in the same frames
    for key in ("Left", "Top", "Width", "Height"):
        a = np.array([b[key] for b in cpu["BoundingBox"]])
        b = np.array([b[key] for b in gpu["BoundingBox"]])
        assert np.abs(a - b).max() < 2e-3, key
    np.testing.assert_allclose(gpu["Confidence"].astype(float), cpu["Confidence"].astype(float), atol=0.5)


def test_yolox_on_cuda_matches_cpu(env, frames, monkeypatch):
    import cv2

    from rekolab.models import backend as B
    from rekolab.models.yolox import YoloxDetector

    images = [cv2.imread(str(need(MEDIA / "scenes" / "dog.jpg")))] + frames[:3]
    cpu = YoloxDetector().detect_batch(images)
    monkeypatch.setenv("REKOLAB_BACKEND", "torch")
    B._cached_model.cache_clear()
    det = YoloxDetector()
    assert det.model.device == "cuda" and det.fixed_batch is None and det.batch_size == 32
    gpu = det.detect_batch(images)
    checked = 0
    for a, b in zip(cpu, gpu):
        for box, score, name in zip(a.boxes_xyxy, a.scores, a.class_names):
            if score < 0.5:
                continue  # a borderline box may fall either side of the threshold
            same = [g for g, n in zip(b.boxes_xyxy, b.class_names) if n == name]
            assert same and min(np.abs(g - box).max() for g in same) < 2.0, (name, box)
            checked += 1
    assert checked >= 1


def test_clip_fp16_on_cuda_matches_fp32_cpu(env, frames, tmp_path):
    import open_clip
    import torch

    from rekolab.models.clip import ClipModel, ClipSpec

    ckpt = tmp_path / "ViT-B-32-random.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), ckpt)
    spec = ClipSpec(arch="ViT-B-32", pretrained=None, checkpoint=ckpt)
    gpu = ClipModel.load(spec)
    assert gpu.device.startswith("cuda") and gpu.precision == "fp16"
    cpu = ClipModel.load(spec, device="cpu")
    rgb = [f[:, :, ::-1] for f in frames[:8]]
    a, b = cpu.encode_images(rgb), gpu.encode_images(rgb)
    assert (a * b).sum(axis=1).min() > 0.99
