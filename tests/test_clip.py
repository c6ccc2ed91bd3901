"""open_clip wrapper: real architectures with random weights saved to a checkpoint
file, loaded through the same path as real weights; calibration on controlled
embeddings; real accuracy only with REKOLAB_CLIP_CHECKPOINT."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
cv2 = pytest.importorskip("cv2")

from rekolab.models import clip as rclip  # noqa: E402
from rekolab.models.clip import (  # noqa: E402
    CALIBRATIONS,
    NEUTRAL_PROMPTS,
    ClipModel,
    ClipSpec,
    ClipWeightsNotFound,
    clip_confidence,
    default_prompts,
    resolve_checkpoint,
    resolve_preprocess,
)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# The smallest architecture in open_clip's registry (43M parameters, 173 MB in fp32),
# a plain ViT-S/32 + 10-layer text transformer with open_clip's own BPE tokenizer.
TEST_ARCH = "ViT-S-32-alt"


def _random_checkpoint(tmp_path_factory, arch: str) -> Path:
    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None)
    path = tmp_path_factory.mktemp("clip-ckpt") / f"{arch}-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def test_checkpoint(tmp_path_factory) -> Path:
    return _random_checkpoint(tmp_path_factory, TEST_ARCH)


@pytest.fixture(scope="session")
def clip_model(test_checkpoint) -> ClipModel:
    return ClipModel.load(ClipSpec(arch=TEST_ARCH, pretrained=None, checkpoint=test_checkpoint), device="cpu")


def _rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return np.ascontiguousarray(img[:, :, ::-1])


# -- loading --------------------------------------------------------------------------


def test_load_from_checkpoint_file(clip_model, test_checkpoint):
    m = clip_model
    assert m.checkpoint == test_checkpoint
    sha = rclip.file_sha256(test_checkpoint)
    assert m.id == f"{TEST_ARCH}/file:{sha[:12]}"
    assert m.identity["checkpoint_sha256"] == sha
    assert m.device == "cpu" and m.precision == "fp32"
    assert not m.model.training
    # the weights really are the file's (not a fresh random init)
    saved = torch.load(test_checkpoint, map_location="cpu", weights_only=True)
    for name, value in m.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    # an arch with no pretrained cfg gets open_clip's (OpenAI) defaults, and says so
    pp = m.preprocess_cfg
    assert pp["size"] == (224, 224)
    assert tuple(pp["mean"]) == OPENAI_MEAN and tuple(pp["std"]) == OPENAI_STD
    assert pp["resize_mode"] == "shortest" and pp["interpolation"] == "bicubic"
    assert "no pretrained cfg" in m.preprocess_source
    assert m.family == "clip" and m.calibration == CALIBRATIONS["clip"]


def test_encode_images(clip_model, media):
    m = clip_model
    dog = _rgb(media / "scenes" / "dog.jpg")
    giraffe = _rgb(media / "scenes" / "giraffe.jpg")
    emb = m.encode_images([dog, giraffe])
    assert emb.shape == (2, m.embed_dim) == (2, 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])
    # batching does not change the result; an NxHxWx3 array and one frame work too
    np.testing.assert_allclose(m.encode_images([dog, giraffe], batch_size=1), emb, atol=1e-5)
    np.testing.assert_allclose(m.encode_images(dog[None]), emb[:1], atol=1e-5)
    np.testing.assert_allclose(m.encode_images(giraffe), emb[1:], atol=1e-5)
    assert m.encode_images([]).shape == (0, 256)
    # the preprocessing is open_clip's own transform, built from the resolved cfg
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    ref = image_transform_v2(PreprocessCfg(**m.preprocess_cfg), is_train=False)(Image.fromarray(dog))
    with torch.no_grad():
        want = m.model.encode_image(ref[None], normalize=True).numpy()
    np.testing.assert_allclose(emb[:1], want, atol=1e-5)
    with pytest.raises(ValueError, match="HxWx3"):
        m.encode_images([np.zeros((4, 4), np.uint8)])


def test_local_load_is_offline(monkeypatch, test_checkpoint):
    seen = {}

    def spy(*args, **kwargs):
        import huggingface_hub.constants as hc

        seen["env"] = os.environ.get("HF_HUB_OFFLINE")
        seen["const"] = hc.HF_HUB_OFFLINE
        seen["pretrained"] = kwargs.get("pretrained")
        raise RuntimeError("stop here")

    import huggingface_hub.constants as hc

    before = hc.HF_HUB_OFFLINE
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(open_clip, "create_model", spy)
    with pytest.raises(RuntimeError, match="does not hold"):
        ClipModel.load(ClipSpec(arch=TEST_ARCH, pretrained=None, checkpoint=test_checkpoint), device="cpu")
    assert seen == {"env": "1", "const": True, "pretrained": str(test_checkpoint)}
    assert "HF_HUB_OFFLINE" not in os.environ  # restored
    assert hc.HF_HUB_OFFLINE is before


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ClipWeightsNotFound, match="CLIP checkpoint not found"):
        ClipModel.load(ClipSpec(arch=TEST_ARCH, checkpoint=tmp_path / "nope.pt"))


def test_no_local_weights_offline_fails_fast(monkeypatch, tmp_path):
    """No file, a tag that would download, no network: a clear error, not a hang."""
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(ClipWeightsNotFound) as info:
        ClipModel.load(ClipSpec(arch="ViT-B-32", pretrained="laion2b_s34b_b79k"), device="cpu",
                       cache_dir=tmp_path / "hf-cache")
    assert time.monotonic() - start < 30
    msg = str(info.value)
    assert "ViT-B-32/laion2b_s34b_b79k" in msg and "offline" in msg
    assert str(tmp_path / "clip" / "ViT-B-32") in msg and "checkpoint=" in msg


def test_bad_tag_and_arch():
    with pytest.raises(ValueError, match="not an open_clip pretrained tag"):
        ClipModel.load(ClipSpec(arch=TEST_ARCH, pretrained="laion2b_s34b_b79k"))
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        ClipModel.load(ClipSpec(arch="ViT-Nope", checkpoint=None))


def test_model_dir_resolution(monkeypatch, tmp_path, test_checkpoint):
    monkeypatch.setenv("REKOLAB_MODEL_DIR", str(tmp_path))
    spec = ClipSpec(arch=TEST_ARCH, pretrained="mytag")
    assert resolve_checkpoint(spec) is None
    folder = tmp_path / "clip" / TEST_ARCH
    folder.mkdir(parents=True)
    assert resolve_checkpoint(spec) is None
    (folder / "other.pt").symlink_to(test_checkpoint)
    assert resolve_checkpoint(spec) == folder / "other.pt"  # any checkpoint in the folder
    (folder / "mytag.bin").symlink_to(test_checkpoint)
    assert resolve_checkpoint(spec) == folder / "mytag.bin"  # the one named after the tag
    explicit = ClipSpec(arch=TEST_ARCH, checkpoint=test_checkpoint)
    assert resolve_checkpoint(explicit) == test_checkpoint  # explicit wins


# -- preprocessing of bare weight files -----------------------------------------------


@pytest.fixture(scope="session")
def pe_core_model(tmp_path_factory) -> ClipModel:
    """PE-Core-T-16-384 (70M parameters, 278 MB fp32): the smallest registry arch whose
    real weights use a non-OpenAI normalisation (mean=std=0.5, squash, bilinear)."""
    path = _random_checkpoint(tmp_path_factory, "PE-Core-T-16-384")
    return ClipModel.load(ClipSpec(arch="PE-Core-T-16-384", pretrained=None, checkpoint=path), device="cpu")


def test_bare_file_gets_the_arch_preprocessing(pe_core_model, media):
    m = pe_core_model
    pp = m.preprocess_cfg
    # open_clip alone would give OpenAI mean/std and "shortest" for a bare file
    assert tuple(pp["mean"]) == (0.5, 0.5, 0.5) and tuple(pp["std"]) == (0.5, 0.5, 0.5)
    assert pp["resize_mode"] == "squash" and pp["interpolation"] == "bilinear"
    assert pp["size"] == (384, 384)
    assert "PE-Core-T-16-384" in m.preprocess_source
    norm = [t for t in m.transform.transforms if type(t).__name__ == "Normalize"][0]
    assert tuple(norm.mean) == (0.5, 0.5, 0.5) and tuple(norm.std) == (0.5, 0.5, 0.5)
    emb = m.encode_images([_rgb(media / "scenes" / "eagle.jpg")])
    assert emb.shape == (1, 512)
    np.testing.assert_allclose(np.linalg.norm(emb), 1.0, atol=1e-5)


@pytest.mark.parametrize("arch, tag, mean, std, resize", [
    ("ViT-B-16-SigLIP", None, (0.5,) * 3, (0.5,) * 3, "squash"),
    ("ViT-B-16-SigLIP2", None, (0.5,) * 3, (0.5,) * 3, "squash"),
    ("ViT-SO400M-14-SigLIP", None, (0.5,) * 3, (0.5,) * 3, "squash"),
    ("MobileCLIP-S1", None, (0.0,) * 3, (1.0,) * 3, "shortest"),
    ("ViT-L-14", "laion2b_s32b_b82k", (0.5,) * 3, (0.5,) * 3, "shortest"),
    ("ViT-L-14", "openai", OPENAI_MEAN, OPENAI_STD, "shortest"),
    ("ViT-B-32", None, OPENAI_MEAN, OPENAI_STD, "shortest"),
    ("ViT-B-32", "laion2b_s34b_b79k", OPENAI_MEAN, OPENAI_STD, "shortest"),
])
def test_resolve_preprocess_registry(arch, tag, mean, std, resize):
    """Config-only: no model is built and nothing is downloaded."""
    choice = resolve_preprocess(arch, tag)
    assert tuple(choice.cfg["mean"]) == mean and tuple(choice.cfg["std"]) == std
    assert choice.cfg["resize_mode"] == resize


def test_resolve_preprocess_rules():
    # ViT-B-32's tags agree on preprocessing but not on QuickGELU: left to the arch
    assert resolve_preprocess("ViT-B-32").quick_gelu is None
    assert resolve_preprocess("ViT-B-32", "openai").quick_gelu is True
    assert resolve_preprocess("ViT-B-32", "laion2b_s34b_b79k").quick_gelu is False
    # ViT-L-14's weights disagree (OpenAI vs 0.5 normalisation): a bare file needs a tag
    with pytest.raises(ValueError, match="pretrained=<tag>"):
        resolve_preprocess("ViT-L-14")
    forced = dict(mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", resize_mode="shortest")
    assert resolve_preprocess("ViT-L-14", overrides=forced).cfg["mean"] == (0.5,) * 3
    # untagged arch: family defaults
    assert resolve_preprocess(TEST_ARCH).cfg["mean"] == OPENAI_MEAN
    # overrides win
    assert resolve_preprocess("ViT-B-32", "openai", {"std": (1, 1, 1)}).cfg["std"] == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        resolve_preprocess("nope")


# -- text embeddings and the disk cache -----------------------------------------------


def test_text_embeddings_cached_on_disk(clip_model, monkeypatch, rekolab_home):
    m = clip_model
    labels = ["dog", "giraffe"]
    m._text_cache.clear()
    emb = m.text_embeddings(labels)
    assert emb.shape == (2, 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the label embedding is the normalised mean of its prompts' embeddings
    prompts = default_prompts("giraffe")
    want = m.encode_texts(prompts).mean(axis=0)
    np.testing.assert_allclose(emb[1], want / np.linalg.norm(want), atol=1e-5)

    cache_dir = Path(rekolab_home) / "cache" / "clip_text" / rclip._safe_dirname(m.id)
    assert m.text_cache_dir() == cache_dir
    files = list(cache_dir.glob("*.npz"))
    assert len(files) == 1

    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise AssertionError("text tower called again")

    with monkeypatch.context() as mp:
        mp.setattr(m.model, "encode_text", boom)  # the full path
        mp.setattr(m.model.transformer, "forward", boom)  # the truncated path too
        m._text_cache.clear()  # force the disk read
        again = m.text_embeddings(labels)
        np.testing.assert_array_equal(again, emb)
        assert calls == []
        # another prompt set is another key: the text tower is needed
        with pytest.raises(AssertionError, match="called again"):
            m.text_embeddings(labels, prompts=lambda n: [f"a {n}"])
    assert len(m.text_embeddings(labels, prompts=lambda n: [f"a {n}"])) == 2
    assert len(list(cache_dir.glob("*.npz"))) == 2


def test_text_cache_key_includes_identity(clip_model, tmp_path):
    m = clip_model
    one = lambda n: [f"a photo of a {n}."]  # noqa: E731
    a = m.text_embeddings(["dog"], one)
    other = ClipModel(model=m.model, tokenizer=m.tokenizer, transform=m.transform, spec=m.spec,
                      model_id=f"{TEST_ARCH}/file:000000000000",
                      identity={**m.identity, "checkpoint_sha256": "0" * 64}, device="cpu",
                      precision="fp32", preprocess_source="", checkpoint=None)
    calls = []
    real = other.encode_texts
    other.encode_texts = lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw)
    b = other.text_embeddings(["dog"], one)
    assert calls == [1]
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert other.text_cache_dir() != m.text_cache_dir()


def test_damaged_cache_is_recomputed(clip_model):
    m = clip_model
    m._text_cache.clear()
    two = lambda n: [f"a photo of a {n}.", f"a {n}."]  # noqa: E731
    emb = m.text_embeddings(["cat"], two)
    for f in m.text_cache_dir().glob("*.npz"):
        f.write_bytes(b"not an npz")
    m._text_cache.clear()
    np.testing.assert_allclose(m.text_embeddings(["cat"], two), emb, atol=1e-6)
    with pytest.raises(ValueError, match="no prompts"):
        m.text_embeddings(["cat"], prompts=lambda n: [])


def test_background_and_model_confidence(clip_model, media):
    m = clip_model
    bg = m.background_embedding()
    assert bg.shape == (256,)
    want = m.encode_texts(list(NEUTRAL_PROMPTS)).mean(axis=0)
    np.testing.assert_allclose(bg, want / np.linalg.norm(want), atol=1e-5)
    img = m.encode_images([_rgb(media / "scenes" / "dog.jpg")])
    txt = m.text_embeddings(["dog", "giraffe"], lambda n: [f"a photo of a {n}."])
    conf = m.confidence(img, txt)
    expect = clip_confidence(img @ txt.T, img @ bg, scale=100.0, offset=0.02)
    np.testing.assert_allclose(conf, expect, atol=1e-4)
    assert conf.shape == (1, 2) and np.all((conf >= 0) & (conf <= 100))


# -- the truncated text path ----------------------------------------------------------


def _prompt_of_length(tokenizer, n: int) -> str:
    """A prompt whose tokens (start and end-of-text included) are exactly ``n``."""
    text = " ".join(["dog"] * (n - 2))
    assert int(tokenizer([text])[0].argmax()) + 1 == n
    return text


def _reference(m: ClipModel, texts) -> np.ndarray:
    """open_clip's own encode_text over the whole 77-token context, normalised."""
    with torch.inference_mode():
        return m.model.encode_text(m.tokenizer(list(texts)), normalize=True).numpy()


def _copy(m: ClipModel) -> ClipModel:
    """Another ClipModel on the same open_clip module (the text path is chosen anew)."""
    return ClipModel(model=m.model, tokenizer=m.tokenizer, transform=m.transform, spec=m.spec,
                     model_id=m.id, identity=m.identity, device="cpu", precision="fp32",
                     preprocess_source="", checkpoint=None)


def test_truncated_text_path_is_exact(clip_model, monkeypatch):
    m = clip_model
    assert m.text_path == "truncated", m.text_path_reason
    assert "self-check" in m.text_path_reason
    tok = m.tokenizer
    texts = ["", "a photo.", "a photo of a giraffe.", "a blurry photo of the small red car.",
             _prompt_of_length(tok, 40), _prompt_of_length(tok, 75), _prompt_of_length(tok, 76),
             _prompt_of_length(tok, 77), " ".join(["cat"] * 120)]  # the last is cut to 77
    lengths = (tok(texts).argmax(dim=-1) + 1).tolist()
    assert lengths == [2, 5, 8, 11, 40, 75, 76, 77, 77]
    want = _reference(m, texts)
    seen = []
    real_forward = m.model.transformer.forward

    def spy(x, attn_mask=None):
        seen.append((x.shape[1], tuple(attn_mask.shape)))
        return real_forward(x, attn_mask=attn_mask)

    with monkeypatch.context() as mp:
        mp.setattr(m.model.transformer, "forward", spy)
        got = m.encode_texts(texts)
        assert seen == [(77, (77, 77))]  # one batch, cut at its longest real length
        seen.clear()
        short = m.encode_texts(texts[:4])
        assert seen == [(11, (11, 11))]  # a batch of short prompts runs on 11 tokens, not 77
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(short, want[:4], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # prompt by prompt (each on its own length) too
    for i, text in enumerate(texts):
        np.testing.assert_allclose(m.encode_texts([text]), want[i:i + 1], atol=1e-5, rtol=0)


def test_truncated_path_sorts_batches_and_keeps_the_callers_order(clip_model, monkeypatch):
    m = clip_model
    tok = m.tokenizer
    texts = [_prompt_of_length(tok, 30), "a photo.", _prompt_of_length(tok, 76), "a photo of a dog.",
             _prompt_of_length(tok, 12), "a photo.", _prompt_of_length(tok, 50)]  # one repeated
    want = _reference(m, texts)
    seen = []
    real_forward = m.model.transformer.forward

    def spy(x, attn_mask=None):
        seen.append(x.shape[1])
        return real_forward(x, attn_mask=attn_mask)

    with monkeypatch.context() as mp:
        mp.setattr(m.model.transformer, "forward", spy)
        got = m.encode_texts(texts, batch_size=2)
    # lengths 30, 5, 76, 8, 12, 5, 50 sorted: (5, 5) (8, 12) (30, 50) (76)
    assert seen == [5, 12, 50, 76]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[1], got[5], atol=1e-6, rtol=0)
    # the label embeddings (mean of each label's prompts) are those of the full path
    full = _copy(m)
    full._text_path = "full"
    assert full.encode_texts(texts).shape == got.shape
    np.testing.assert_allclose(full.encode_texts(texts), want, atol=1e-6, rtol=0)
    two = lambda n: [f"a photo of a {n}.", f"a close-up photo of the small {n} on a table."]  # noqa: E731
    np.testing.assert_allclose(m._compute_text([two("dog"), two("cat")]),
                               full._compute_text([two("dog"), two("cat")]), atol=1e-5, rtol=0)


def test_text_cache_is_shared_by_both_paths(clip_model):
    """The cache key does not name the path: the embeddings are the same."""
    m = clip_model
    one = lambda n: [f"a photo of a {n} in the snow."]  # noqa: E731
    m._text_cache.clear()
    emb = m.text_embeddings(["fox", "owl"], one)
    full = _copy(m)
    full._text_path = "full"
    full.encode_texts = lambda *a, **k: pytest.fail("the cached embeddings were not reused")
    np.testing.assert_array_equal(full.text_embeddings(["fox", "owl"], one), emb)
    np.testing.assert_allclose(emb, _reference(m, one("fox") + one("owl")), atol=1e-5, rtol=0)


@pytest.mark.parametrize("change, reason", [
    ("last_pool", "pooling 'last'"),
    ("bidirectional", "not causal"),
    ("no_mask", "no additive (n, n) attention mask"),
])
def test_models_that_do_not_qualify_use_the_full_path(clip_model, change, reason):
    m = clip_model
    texts = ["a photo.", "a photo of a giraffe near a tree.", _prompt_of_length(m.tokenizer, 30)]
    mask, pool = m.model.attn_mask, m.model.text_pool_type
    try:  # (not monkeypatch: its undo drops a module's buffer)
        if change == "last_pool":  # pools position 76, which sees the padding
            m.model.text_pool_type = "last"
        elif change == "bidirectional":
            m.model.attn_mask = torch.zeros(77, 77)
        else:  # no mask at all: bidirectional attention too
            m.model.attn_mask = None
        other = _copy(m)
        assert other.text_path == "full"
        assert reason in other.text_path_reason, other.text_path_reason
        got = other.encode_texts(texts)
        want = _reference(other, texts)
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        # where the model does not qualify, truncating would be wrong
        if change != "no_mask":
            short = m.tokenizer(texts[:2])[:, :9]
            with torch.inference_mode():
                cut = torch.nn.functional.normalize(rclip._truncated_encode_text(m.model, short), dim=-1)
            assert np.abs(cut.numpy() - want[:2]).max() > 1e-3
    finally:
        m.model.attn_mask, m.model.text_pool_type = mask, pool
    assert _copy(m).text_path == "truncated"


def test_self_check_failure_falls_back(clip_model, monkeypatch):
    m = clip_model
    real = rclip._truncated_encode_text

    def off(model, tokens):  # a replica that is slightly wrong
        return real(model, tokens) + 0.05 * torch.randn(tokens.shape[0], m.embed_dim)

    def broken(model, tokens):
        raise RuntimeError("shape mismatch")

    with monkeypatch.context() as mp:
        mp.setattr(rclip, "_truncated_encode_text", off)
        other = _copy(m)
        assert other.text_path == "full"
        assert "differs from encode_text" in other.text_path_reason
        np.testing.assert_allclose(other.encode_texts(["a photo."]), _reference(m, ["a photo."]), atol=1e-6)
        mp.setattr(rclip, "_truncated_encode_text", broken)
        other = _copy(m)
        assert other.text_path == "full"
        assert "failed its self-check: RuntimeError: shape mismatch" in other.text_path_reason


def test_custom_text_tower_uses_the_full_path(pe_core_model):
    m = pe_core_model  # CustomTextCLIP: its text tower is not the one replicated
    assert m.text_path == "full"
    assert "CustomTextCLIP" in m.text_path_reason
    emb = m.encode_texts(["a photo.", "a photo of an eagle."])
    np.testing.assert_allclose(emb, _reference(m, ["a photo.", "a photo of an eagle."]), atol=1e-6)


# -- calibration on controlled embeddings ---------------------------------------------


def _unit_vectors_with_cosines(cosines, dim=64):
    """An image vector x = e0 and one unit vector per cosine c: c*e0 + sqrt(1-c^2)*e_i."""
    x = np.zeros(dim, np.float32)
    x[0] = 1
    vecs = []
    for i, c in enumerate(cosines, start=1):
        v = np.zeros(dim, np.float32)
        v[0] = c
        v[i] = np.sqrt(1 - c * c)
        vecs.append(v)
    return x, np.stack(vecs)


def test_calibration_several_labels_pass_together():
    # a street scene: car, road, vehicle match; giraffe, piano do not. background 0.21
    cos = [0.30, 0.28, 0.26, 0.17, 0.15]
    x, labels = _unit_vectors_with_cosines(cos + [0.21])
    sims = labels[:-1] @ x
    np.testing.assert_allclose(sims, cos, atol=1e-6)
    bg = float(labels[-1] @ x)
    conf = clip_confidence(sims, bg)
    assert conf.dtype == np.float32
    assert (conf[:3] >= 50).all(), conf  # several labels above MinConfidence 50 at once
    assert (conf[3:] < 5).all(), conf
    assert conf.sum() > 100  # not a softmax over labels
    # independent per label: dropping labels leaves the others' scores unchanged
    np.testing.assert_allclose(clip_confidence(sims[:2], bg), conf[:2])


def test_calibration_no_match_frame_scores_low():
    x, labels = _unit_vectors_with_cosines([0.20, 0.19, 0.18, 0.21])
    conf = clip_confidence(labels[:-1] @ x, float(labels[-1] @ x))
    assert (conf < 50).all() and conf.max() < 15, conf


def test_calibration_batch_and_monotonic():
    sims = np.linspace(0.0, 0.45, 91)
    conf = clip_confidence(sims, 0.21)
    assert np.all(np.diff(conf) >= 0) and conf[0] < 0.1 and conf[-1] > 99.9
    assert np.all((conf >= 0) & (conf <= 100))
    # value at the offset is 50; the background shifts the curve
    assert clip_confidence(np.array([0.23]), 0.21)[0] == pytest.approx(50, abs=1e-3)
    assert clip_confidence(np.array([0.25]), 0.25)[0] < clip_confidence(np.array([0.25]), 0.20)[0]
    # (N, L) with a per-frame background
    batch = clip_confidence(np.array([[0.3, 0.2], [0.3, 0.2]]), np.array([0.2, 0.3]))
    assert batch.shape == (2, 2) and batch[0, 0] > 95 and batch[1, 0] < 50
    # scale and offset are parameters
    assert clip_confidence(np.array([0.24]), 0.21, scale=50, offset=0.0)[0] == pytest.approx(
        100 / (1 + np.exp(-1.5)), abs=1e-3)
    # no overflow far from the curve
    assert clip_confidence(np.array([-1.0, 1.0]), 0.0, scale=1e4).tolist() == [0.0, 100.0]


def test_siglip_family_uses_its_own_logit_scale_and_bias(clip_model):
    m = clip_model
    fake = type("M", (), {})()
    fake.logit_scale = torch.tensor(np.log(10.0))
    fake.logit_bias = torch.tensor(-2.0)
    sig = ClipModel(model=fake, tokenizer=None, transform=None, spec=m.spec, model_id="x", identity={},
                    device="cpu", precision="fp32", preprocess_source="", checkpoint=None)
    cal = sig.calibration
    assert cal.family == "siglip" and not cal.background
    assert cal.scale == pytest.approx(10.0) and cal.offset == pytest.approx(0.2)
    # = the model's own sigmoid(t*cos + b)
    got = clip_confidence(np.array([0.3]), None, scale=cal.scale, offset=cal.offset)[0]
    assert got == pytest.approx(100 / (1 + np.exp(-(10 * 0.3 - 2))), abs=1e-3)


# -- real accuracy (needs a real checkpoint) ------------------------------------------


def test_real_accuracy(media):
    path = os.environ.get("REKOLAB_CLIP_CHECKPOINT")
    if not path:
        pytest.skip("set REKOLAB_CLIP_CHECKPOINT=<open_clip checkpoint> to run the real-accuracy test")
    spec = ClipSpec(arch=os.environ.get("REKOLAB_CLIP_ARCH", "ViT-B-32"),
                    pretrained=os.environ.get("REKOLAB_CLIP_PRETRAINED", "laion2b_s34b_b79k"),
                    checkpoint=path)
    m = ClipModel.load(spec)
    txt = m.text_embeddings(["dog", "giraffe"])
    img = m.encode_images([_rgb(media / "scenes" / "dog.jpg"), _rgb(media / "scenes" / "giraffe.jpg")])
    sims = img @ txt.T
    assert sims[0, 0] > sims[0, 1], sims  # dog.jpg: dog above giraffe
    assert sims[1, 1] > sims[1, 0], sims  # giraffe.jpg: giraffe above dog
    conf = m.confidence(img, txt)
    assert conf[0, 0] > conf[0, 1] and conf[1, 1] > conf[1, 0]
