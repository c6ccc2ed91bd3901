"""open_clip zero-shot scoring: image and text embeddings, and a confidence scale.

Loading (``ClipModel.load(ClipSpec(...))``) goes through open_clip's own
``create_model`` / ``load_checkpoint`` / ``get_tokenizer``, whatever the weights'
source. The weights are looked for in this order:

1. ``ClipSpec.checkpoint``: an explicit file (``.pt``/``.pth``/``.bin``/``.safetensors``),
   which must exist;
2. ``REKOLAB_MODEL_DIR/clip/<arch>/<pretrained>.{safetensors,pt,pth,bin}``, or else the
   only (or first, by name) checkpoint file in that folder;
3. open_clip's own download for the ``pretrained`` tag (Hugging Face Hub or the
   tag's URL), for users with internet.

Local loads (1 and 2) run with ``HF_HUB_OFFLINE=1``, so nothing contacts a hub.

**Preprocessing of bare weight files.** open_clip takes the image mean/std and
resize mode from the *pretrained tag's* config. Given a file path instead of a tag
it silently falls back to OpenAI's mean/std with "shortest" resizing, which is wrong
for SigLIP/SigLIP2 (mean=std=0.5, "squash"), PE-Core (0.5, "squash", bilinear),
MobileCLIP (mean 0, std 1) and others (open_clip issues #1068, #580, #528, #638).
:func:`resolve_preprocess` picks the preprocessing from open_clip's registry
instead: the tag's config when the tag is known (``ClipSpec.pretrained``, or the
file's stem when it is a tag name), else the configs of all the architecture's
tags when they agree (an error when they do not), else the architecture's family
defaults. ``ClipSpec.preprocess`` overrides any field. It also applies the tag's
``quick_gelu`` flag (e.g. OpenAI weights on ``ViT-B-32``), which open_clip only warns
about.

**Confidence.** :func:`clip_confidence` (in :mod:`rekolab.models.clip_confidence`,
re-exported here) maps cosine similarities to a 0..100 Rekognition-like confidence,
independently per label; see its docstring for the formula, the defaults and what is
and is not verified.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import model_dir, require
from .clip_confidence import CALIBRATIONS, Calibration, clip_confidence

__all__ = [
    "ClipSpec",
    "ClipModel",
    "ClipWeightsNotFound",
    "Calibration",
    "PreprocessChoice",
    "CALIBRATIONS",
    "NEUTRAL_PROMPTS",
    "DEFAULT_TEMPLATES",
    "default_prompts",
    "clip_confidence",
    "resolve_preprocess",
    "resolve_checkpoint",
    "hub_offline",
]

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")

#: Prompt templates for a label: photo-style templates from OpenAI's 80-template
#: ImageNet ensemble (CLIP repo, notebooks/Prompt_Engineering_for_ImageNet.ipynb),
#: leaving out the ones about drawings, toys, tattoos and video games.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a bad photo of a {}.",
    "a blurry photo of a {}.",
    "a low resolution photo of a {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
)

#: Generic prompts that describe any photo and no object in particular. Their
#: mean embedding is the per-frame "background" a label has to beat.
NEUTRAL_PROMPTS: tuple[str, ...] = (
    "a photo.",
    "a picture.",
    "an image.",
    "a photo of something.",
    "a blurry photo of something.",
    "a close-up photo of something.",
)

# Preprocessing families, as open_clip's pretrained.py defines them (_pcfg, _slpcfg).
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "openai": dict(mean=_OPENAI_MEAN, std=_OPENAI_STD, interpolation="bicubic", resize_mode="shortest"),
    "siglip": dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", resize_mode="squash"),
}
_PP_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


def default_prompts(label: str) -> list[str]:
    """The default prompt ensemble for one label."""
    return [t.format(label) for t in DEFAULT_TEMPLATES]


class ClipWeightsNotFound(FileNotFoundError):
    """No CLIP weights could be found locally or downloaded."""


# -- preprocessing resolution ---------------------------------------------------------


@dataclass(frozen=True)
class PreprocessChoice:
    """The image preprocessing chosen for an architecture (and the reason)."""

    cfg: dict  # mean, std, interpolation, resize_mode (open_clip PreprocessCfg fields)
    source: str
    quick_gelu: bool | None = None  # the weights' QuickGELU flag, when known


def _pp_key(cfg: Mapping[str, Any]) -> tuple:
    return (tuple(cfg.get("mean", ())), tuple(cfg.get("std", ())), cfg.get("interpolation"),
            cfg.get("resize_mode"))


def _pp_only(cfg: Mapping[str, Any]) -> dict:
    out = {k: cfg[k] for k in _PP_KEYS if k in cfg and cfg[k] is not None}
    for k in ("mean", "std"):
        if k in out:
            out[k] = tuple(float(v) for v in out[k])
    return out


def resolve_preprocess(arch: str, pretrained: str | None = None,
                       overrides: Mapping[str, Any] | None = None) -> PreprocessChoice:
    """The preprocessing for ``arch`` weights, from open_clip's registry, offline.

    1. ``pretrained`` is a known tag of ``arch``: that tag's config.
    2. Else all of ``arch``'s tags: their config when they agree on mean, std,
       interpolation and resize mode; a ``ValueError`` when they do not (name the
       tag, or pass ``overrides``).
    3. Else (an architecture with no pretrained weights in the registry): the
       family default: SigLIP-style (mean=std=0.5, squash) for sigmoid-loss
       architectures (``init_logit_bias`` in the config or "siglip" in the name),
       open_clip's OpenAI defaults otherwise.

    ``overrides`` (mean, std, interpolation, resize_mode, fill_color) win over all.
    """
    open_clip = require("open_clip", "labels")
    from open_clip.pretrained import get_pretrained_cfg, is_pretrained_cfg, list_pretrained_tags_by_model

    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ValueError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
    overrides = _pp_only(overrides or {})
    tags = list_pretrained_tags_by_model(arch)
    quick_gelu: bool | None = None
    if pretrained and is_pretrained_cfg(arch, pretrained):
        pcfg = get_pretrained_cfg(arch, pretrained)
        cfg = _pp_only(pcfg)
        quick_gelu = bool(pcfg.get("quick_gelu", False))
        source = f"open_clip pretrained cfg {arch}/{pretrained}"
    elif tags:
        groups: dict[tuple, list[str]] = {}
        gelus = set()
        for tag in tags:
            pcfg = get_pretrained_cfg(arch, tag)
            groups.setdefault(_pp_key(pcfg), []).append(tag)
            gelus.add(bool(pcfg.get("quick_gelu", False)))
        if len(groups) > 1 and not {"mean", "std", "interpolation", "resize_mode"} <= set(overrides):
            detail = "; ".join(f"{tags_}: mean={k[0]} std={k[1]} {k[2]} {k[3]}" for k, tags_ in groups.items())
            raise ValueError(
                f"{arch}: its pretrained weights use different preprocessing ({detail}). "
                f"Say which weights the file holds with pretrained=<tag>, or pass "
                f"preprocess={{'mean':..., 'std':..., 'interpolation':..., 'resize_mode':...}}")
        cfg = _pp_only(get_pretrained_cfg(arch, tags[0]))
        quick_gelu = gelus.pop() if len(gelus) == 1 else None
        source = f"open_clip pretrained cfgs of {arch} (all {len(tags)} tags agree)"
    else:
        sigmoid = model_cfg.get("init_logit_bias") is not None or "siglip" in arch.lower()
        family = "siglip" if sigmoid else "openai"
        cfg = dict(_FAMILY_DEFAULTS[family])
        source = f"{family} family defaults ({arch} has no pretrained cfg in open_clip)"
    if overrides:
        cfg.update(overrides)
        source += f" + overrides {sorted(overrides)}"
    return PreprocessChoice(cfg=cfg, source=source, quick_gelu=quick_gelu)


# -- weights resolution ---------------------------------------------------------------


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to load.

    ``arch``: an open_clip architecture name (``open_clip.list_models()``).
    ``pretrained``: an open_clip pretrained tag; it names the weights (download,
    file name under REKOLAB_MODEL_DIR, and preprocessing of a bare file).
    ``checkpoint``: an explicit weights file (must exist).
    ``preprocess``: optional overrides of mean/std/interpolation/resize_mode.
    """

    arch: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    checkpoint: str | os.PathLike | None = None
    preprocess: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)


def _clip_dir(arch: str) -> Path | None:
    root = model_dir()
    return root / "clip" / arch if root is not None else None


def resolve_checkpoint(spec: ClipSpec) -> Path | None:
    """A local weights file for ``spec``, or ``None`` (then open_clip downloads).

    Raises :class:`ClipWeightsNotFound` when ``spec.checkpoint`` names a missing file."""
    if spec.checkpoint is not None:
        path = Path(spec.checkpoint).expanduser()
        if not path.is_file():
            raise ClipWeightsNotFound(f"CLIP checkpoint not found: {path}")
        return path
    folder = _clip_dir(spec.arch)
    if folder is None or not folder.is_dir():
        return None
    if spec.pretrained:
        for suffix in CHECKPOINT_SUFFIXES:
            path = folder / f"{spec.pretrained}{suffix}"
            if path.is_file():
                return path
    found = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES),
                   key=lambda p: (CHECKPOINT_SUFFIXES.index(p.suffix), p.name))
    if len(found) > 1:
        log.warning("several CLIP checkpoints in %s; using %s", folder, found[0].name)
    return found[0] if found else None


_sha_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file (memoised per path, size and mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _sha_cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        digest = _sha_cache[key] = h.hexdigest()
    return digest


_offline_lock = threading.RLock()


@contextlib.contextmanager
def hub_offline():
    """Run with ``HF_HUB_OFFLINE=1`` (also in an already-imported huggingface_hub,
    which reads the variable once, at import), then restore both."""
    with _offline_lock:
        old_env = os.environ.get("HF_HUB_OFFLINE")
        consts = sys.modules.get("huggingface_hub.constants")
        old_const = getattr(consts, "HF_HUB_OFFLINE", None)
        os.environ["HF_HUB_OFFLINE"] = "1"
        if consts is not None:
            consts.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            if old_env is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old_env
            if consts is not None:
                consts.HF_HUB_OFFLINE = old_const


def _offline_requested() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    consts = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(consts, "HF_HUB_OFFLINE", False))


def _default_device(torch) -> str:
    if os.environ.get("REKOLAB_DEVICE", "").lower() == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _safe_dirname(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"


# -- the model ------------------------------------------------------------------------


class ClipModel:
    """A loaded open_clip model with batched, normalised numpy embeddings.

    Build with :meth:`load`. Attributes: ``id`` (stable identity string),
    ``arch``, ``device``, ``precision``, ``preprocess_cfg`` (the mean/std/size/resize
    actually used), ``preprocess_source``, ``checkpoint`` (``Path`` or ``None``),
    ``model`` (the open_clip module), ``tokenizer``, ``transform``, ``text_path``
    (``"truncated"`` or ``"full"``, see :meth:`encode_texts`) and ``text_path_reason``.
    """

    def __init__(self, *, model, tokenizer, transform, spec: ClipSpec, model_id: str,
                 identity: dict, device: str, precision: str, preprocess_source: str,
                 checkpoint: Path | None):
        self.model = model
        self.tokenizer = tokenizer
        self.transform = transform
        self.spec = spec
        self.arch = spec.arch
        self.id = model_id
        self.identity = identity
        self.device = device
        self.precision = precision
        self.preprocess_source = preprocess_source
        self.checkpoint = checkpoint
        self._text_cache: dict[str, np.ndarray] = {}
        self._embed_dim: int | None = None
        self._lock = threading.Lock()
        self._text_path: str | None = None
        self.text_path_reason = ""

    # -- loading --------------------------------------------------------------------

    @classmethod
    def load(cls, spec: ClipSpec | None = None, device: str | None = None, *,
             cache_dir: str | os.PathLike | None = None) -> "ClipModel":
        """Load ``spec`` (default ``ClipSpec()``: ViT-B-32 laion2b_s34b_b79k).

        ``device`` defaults to CUDA when torch sees one (``REKOLAB_DEVICE=cpu`` forces
        the CPU); the model runs in fp16 on CUDA and fp32 on the CPU. ``cache_dir`` is
        passed to open_clip for downloads."""
        spec = spec or ClipSpec()
        torch = require("torch", "labels")
        open_clip = require("open_clip", "labels")
        from open_clip.pretrained import get_pretrained_cfg, is_pretrained_cfg, list_pretrained_tags_by_model
        from open_clip.transform import PreprocessCfg, image_transform_v2

        device = device or _default_device(torch)
        precision = "fp16" if str(device).startswith("cuda") else "fp32"
        arch = spec.arch
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise ValueError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")

        checkpoint = resolve_checkpoint(spec)
        if checkpoint is not None:
            stem = checkpoint.name
            for suffix in CHECKPOINT_SUFFIXES:
                stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
            tag = stem if is_pretrained_cfg(arch, stem) else spec.pretrained
        else:
            tag = spec.pretrained
        choice = resolve_preprocess(arch, tag, spec.preprocess)
        force_quick_gelu = bool(choice.quick_gelu) and not model_cfg.get("quick_gelu", False)
        kwargs = dict(device=device, precision=precision, force_quick_gelu=force_quick_gelu,
                      force_preprocess_cfg=choice.cfg, require_pretrained=True,
                      cache_dir=str(cache_dir) if cache_dir is not None else None)

        if checkpoint is not None:
            sha = file_sha256(checkpoint)
            model_id = f"{arch}/file:{sha[:12]}"
            identity = {"arch": arch, "checkpoint_sha256": sha, "quick_gelu": force_quick_gelu}
            try:
                with hub_offline():
                    model = open_clip.create_model(arch, pretrained=str(checkpoint), **kwargs)
                    tokenizer = open_clip.get_tokenizer(arch)
            except ImportError as exc:
                raise ImportError(f"loading {arch} needs a package that is not installed: {exc}") from exc
            except RuntimeError as exc:  # strict load_state_dict: wrong architecture
                raise RuntimeError(f"{checkpoint} does not hold {arch} weights: {exc}") from exc
            except OSError as exc:  # e.g. an HF tokenizer that is not in the local cache
                raise ClipWeightsNotFound(
                    f"{arch}: a file it needs is not available offline ({exc}); "
                    f"the weights were {checkpoint}") from exc
        else:
            if not spec.pretrained:
                raise ClipWeightsNotFound(cls._not_found_message(spec, "no pretrained tag was given"))
            if not is_pretrained_cfg(arch, spec.pretrained):
                raise ValueError(
                    f"{spec.pretrained!r} is not an open_clip pretrained tag of {arch}; "
                    f"known tags: {list_pretrained_tags_by_model(arch)}")
            pcfg = get_pretrained_cfg(arch, spec.pretrained)
            if _offline_requested() and not pcfg.get("hf_hub"):
                raise ClipWeightsNotFound(cls._not_found_message(
                    spec, "HF_HUB_OFFLINE is set and this tag downloads from a URL"))
            model_id = f"{arch}/{spec.pretrained}"
            identity = {"arch": arch, "pretrained": spec.pretrained, "quick_gelu": force_quick_gelu}
            try:
                model = open_clip.create_model(arch, pretrained=spec.pretrained, **kwargs)
                tokenizer = open_clip.get_tokenizer(arch)
            except Exception as exc:
                why = ("offline (HF_HUB_OFFLINE is set) and not in the download cache"
                       if _offline_requested() else f"download failed: {exc}")
                raise ClipWeightsNotFound(cls._not_found_message(spec, why)) from exc

        model.eval()
        pp = dict(model.visual.preprocess_cfg)
        transform = image_transform_v2(PreprocessCfg(**pp), is_train=False)
        loaded = cls(model=model, tokenizer=tokenizer, transform=transform, spec=spec,
                     model_id=model_id, identity=identity, device=str(device), precision=precision,
                     preprocess_source=choice.source, checkpoint=checkpoint)
        loaded.text_path  # choose (and self-check) the text path now, not mid-job
        return loaded

    @staticmethod
    def _not_found_message(spec: ClipSpec, why: str) -> str:
        folder = _clip_dir(spec.arch)
        where = (f"{folder}/{spec.pretrained or '<any>'}.{{safetensors,pt,bin}}" if folder is not None
                 else "REKOLAB_MODEL_DIR (not set)")
        return (f"no CLIP weights for {spec.arch}/{spec.pretrained}: {why}. Looked for a local file at "
                f"{where}. Pass ClipSpec(checkpoint=<file>), put the file there, or allow "
                f"open_clip to download the tag (unset HF_HUB_OFFLINE, have internet).")

    # -- properties -----------------------------------------------------------------

    @property
    def preprocess_cfg(self) -> dict:
        """The preprocessing in use: size, mean, std, interpolation, resize_mode, ..."""
        return dict(self.model.visual.preprocess_cfg)

    @property
    def embed_dim(self) -> int:
        return self._dim()

    @property
    def family(self) -> str:
        return "siglip" if getattr(self.model, "logit_bias", None) is not None else "clip"

    @property
    def calibration(self) -> Calibration:
        """The :func:`clip_confidence` parameters for this model's family."""
        if self.family == "siglip":
            t = float(self.model.logit_scale.detach().float().exp().reshape(-1)[0])
            b = float(self.model.logit_bias.detach().float().reshape(-1)[0])
            return Calibration(scale=t, offset=-b / t, background=False, family="siglip")
        return CALIBRATIONS["clip"]

    def __repr__(self) -> str:
        return f"ClipModel({self.id}, {self.device}, {self.precision})"

    # -- images ---------------------------------------------------------------------

    def encode_images(self, frames_rgb: Sequence[np.ndarray] | np.ndarray, batch_size: int | None = None
                      ) -> np.ndarray:
        """``(N, D)`` L2-normalised float32 embeddings of RGB uint8 frames.

        ``frames_rgb``: a list of ``HxWx3`` arrays, an ``NxHxWx3`` array or one
        ``HxWx3`` frame."""
        torch = require("torch", "labels")
        from PIL import Image

        if isinstance(frames_rgb, np.ndarray):
            frames = [frames_rgb] if frames_rgb.ndim == 3 else list(frames_rgb)
        else:
            frames = list(frames_rgb)
        batch_size = batch_size or (128 if self.device.startswith("cuda") else 16)
        dtype = next(self.model.parameters()).dtype
        out = []
        for start in range(0, len(frames), batch_size):
            chunk = []
            for frame in frames[start:start + batch_size]:
                arr = np.asarray(frame)
                if arr.ndim != 3 or arr.shape[2] != 3:
                    raise ValueError(f"expected HxWx3 RGB frames, got shape {arr.shape}")
                if arr.dtype != np.uint8:
                    arr = np.clip(arr, 0, 255).astype(np.uint8)
                chunk.append(self.transform(Image.fromarray(arr)))
            x = torch.stack(chunk).to(self.device, dtype=dtype)
            with torch.inference_mode():
                emb = self.model.encode_image(x)
            out.append(emb.float().cpu().numpy())
        if not out:
            return np.zeros((0, self._dim()), np.float32)
        return _l2n(np.concatenate(out))

    # -- text -----------------------------------------------------------------------

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``(T, D)`` L2-normalised float32 embeddings of raw texts (no cache), in
        the order of ``texts``.

        With :attr:`text_path` ``"truncated"`` (open_clip's standard CLIP text tower,
        checked at load) the texts are sorted by token length, batched with texts of
        similar length, and each batch runs the text tower on its tokens up to the
        longest end-of-text position in the batch instead of the whole context (77
        tokens; taxonomy prompts have 8-15). The tower's attention is causal and it
        pools the end-of-text token, so a text's embedding depends only on its tokens
        up to there: the result is the same as open_clip's ``encode_text`` (to float
        rounding), several times faster. ``"full"`` calls ``encode_text`` on the
        whole context, in batches of ``batch_size`` (default 256)."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self._dim()), np.float32)
        if self.text_path == "truncated":
            return _l2n(self._encode_truncated(texts, batch_size or _TRUNCATED_BATCH))
        return _l2n(self._encode_full(texts, batch_size or 256))

    @property
    def text_path(self) -> str:
        """``"truncated"`` when :meth:`encode_texts` runs the text tower on truncated
        tokens (the model qualifies and passed the self-check), else ``"full"``;
        ``text_path_reason`` says why."""
        if self._text_path is None:
            self._text_path, self.text_path_reason = self._choose_text_path()
            log.info("%s: text path %s (%s)", self.id, self._text_path, self.text_path_reason)
        return self._text_path

    def _encode_full(self, texts: list[str], batch_size: int) -> np.ndarray:
        """open_clip's own ``encode_text`` over the whole context."""
        torch = require("torch", "labels")
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start:start + batch_size]).to(self.device)
            with torch.inference_mode():
                emb = self.model.encode_text(tokens)
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out)

    def _encode_truncated(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Un-normalised embeddings by the truncated text tower, length-sorted batches."""
        torch = require("torch", "labels")
        tokens = self.tokenizer(texts)
        lengths = _pool_index(self.model, tokens).numpy() + 1
        order = np.argsort(lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            n_ctx = int(lengths[rows].max())
            batch = tokens[torch.from_numpy(rows), :n_ctx].to(self.device)
            with torch.inference_mode():
                emb = _truncated_encode_text(self.model, batch).float().cpu().numpy()
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), np.float32)
            out[rows] = emb
        assert out is not None
        return out

    def _choose_text_path(self) -> tuple[str, str]:
        """("truncated" | "full", reason): structural checks, then a numeric self-check
        of the truncated tower against open_clip's ``encode_text`` on a few prompts."""
        why_not = _truncation_unsupported(self.model)
        if why_not:
            return "full", why_not
        torch = require("torch", "labels")
        tokens = self.tokenizer(list(_SELF_CHECK_PROMPTS)).to(self.device)
        with torch.inference_mode():
            want = self.model.encode_text(tokens).float().cpu().numpy()
        try:
            got = self._encode_truncated(list(_SELF_CHECK_PROMPTS), 2)  # mixed-length batches
        except Exception as exc:  # an open_clip variant this replica does not cover
            return "full", f"truncated text tower failed its self-check: {type(exc).__name__}: {exc}"
        tol = 1e-4 if self.precision == "fp32" else 1e-2
        diff = float(np.abs(_l2n(got) - _l2n(want)).max()) if got.shape == want.shape else float("inf")
        if not diff < tol:
            return "full", (f"truncated text tower differs from encode_text by {diff:.2e} "
                            f"(limit {tol:g}) on the self-check prompts")
        return "truncated", (f"{type(self.model).__name__} causal text tower, "
                             f"{self.model.text_pool_type} pooling; self-check max diff {diff:.1e}")

    def _dim(self) -> int:
        if self._embed_dim is None:
            self._embed_dim = int(self.encode_texts(["a photo."]).shape[1])
        return self._embed_dim

    def text_cache_dir(self) -> Path:
        from ..store import home

        return home() / "cache" / "clip_text" / _safe_dirname(self.id)

    def text_embeddings(self, label_names: Sequence[str],
                        prompts: Callable[[str], Iterable[str]] | None = None) -> np.ndarray:
        """``(L, D)`` normalised label embeddings: the normalised mean of each label's
        prompt ensemble (``prompts(label)``, default :func:`default_prompts`).

        Cached on disk under ``<rekolab home>/cache/clip_text/<model id>/`` keyed by a
        hash of the model identity (checkpoint sha256 or pretrained tag), precision
        and every prompt text, and in memory: computed once per model."""
        prompts = prompts or default_prompts
        labels = [str(n) for n in label_names]
        texts = []
        for name in labels:
            p = [str(t) for t in prompts(name)]
            if not p:
                raise ValueError(f"no prompts for label {name!r}")
            texts.append(p)
        key = hashlib.sha256(json.dumps(
            {"model": self.identity, "id": self.id, "precision": self.precision, "labels": labels,
             "prompts": texts}, sort_keys=True, ensure_ascii=True).encode()).hexdigest()
        with self._lock:
            cached = self._text_cache.get(key)
        if cached is not None:
            return cached.copy()
        path = self.text_cache_dir() / f"{key[:32]}.npz"
        emb = self._read_cache(path, labels)
        if emb is None:
            emb = self._compute_text(texts)
            self._write_cache(path, labels, emb)
        with self._lock:
            self._text_cache[key] = emb
        return emb.copy()

    def _compute_text(self, texts: list[list[str]]) -> np.ndarray:
        unique = list(dict.fromkeys(t for group in texts for t in group))
        index = {t: i for i, t in enumerate(unique)}
        flat = self.encode_texts(unique)
        return _l2n(np.stack([flat[[index[t] for t in group]].mean(axis=0) for group in texts]))

    @staticmethod
    def _read_cache(path: Path, labels: list[str]) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                emb = np.asarray(data["embeddings"], np.float32)
                cached_labels = [str(x) for x in data["labels"]]
        except Exception:  # a damaged cache file: recompute
            log.warning("ignoring unreadable CLIP text cache %s", path)
            return None
        if cached_labels != labels or emb.ndim != 2 or emb.shape[0] != len(labels):
            return None
        return emb

    @staticmethod
    def _write_cache(path: Path, labels: list[str], emb: np.ndarray) -> None:
        from ..store import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, embeddings=emb.astype(np.float32), labels=np.asarray(labels, dtype=str))
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:  # a read-only home must not break scoring
            log.warning("could not write CLIP text cache %s: %s", path, exc)

    def background_embedding(self, prompts: Sequence[str] = NEUTRAL_PROMPTS) -> np.ndarray:
        """``(D,)`` normalised mean embedding of the neutral prompts (cached)."""
        fixed = list(prompts)
        return self.text_embeddings(["__background__"], lambda _: fixed)[0]

    # -- scoring --------------------------------------------------------------------

    def confidence(self, image_emb: np.ndarray, text_emb: np.ndarray,
                   calibration: Calibration | None = None) -> np.ndarray:
        """``(N, L)`` 0..100 confidences of ``text_emb`` labels in ``image_emb`` frames,
        by :func:`clip_confidence` with this family's :attr:`calibration`."""
        cal = calibration or self.calibration
        img = np.atleast_2d(np.asarray(image_emb, np.float32))
        sims = img @ np.asarray(text_emb, np.float32).T
        bg = img @ self.background_embedding() if cal.background else None
        return clip_confidence(sims, bg, scale=cal.scale, offset=cal.offset)


# -- the truncated text tower --------------------------------------------------------

#: Prompts per batch of the truncated text path (tokens are a few, so batches can be big).
_TRUNCATED_BATCH = 256

#: Self-check prompts: short, typical, long, and one past the context (the tokenizer
#: cuts it to the full 77 tokens, ending in the end-of-text token).
_SELF_CHECK_PROMPTS: tuple[str, ...] = (
    "a photo.",
    "a blurry photo of a golden retriever.",
    "a low resolution photo of the small red double-decker bus in front of a railway station.",
    "a close-up photo of " + " and ".join(["a cat", "a dog", "a bird", "a horse"] * 6) + ".",
)


def _truncation_unsupported(model) -> str:
    """Why ``model``'s text tower cannot run on truncated tokens ("" when it can).

    Only open_clip's ``CLIP`` with its own ``encode_text`` (replicated by
    :func:`_truncated_encode_text`), an open_clip ``Transformer`` text tower with a
    causal additive mask, and pooling at a token found from the token ids
    (``argmax``: the end-of-text token, ``eos``, ``first``) qualifies."""
    try:
        from open_clip.model import CLIP
        from open_clip.transformer import Transformer
    except ImportError as exc:  # pragma: no cover - open_clip without these modules
        return f"open_clip has no CLIP/Transformer classes ({exc})"
    torch = require("torch", "labels")
    kind = type(model).__name__
    if not isinstance(model, CLIP) or type(model).encode_text is not CLIP.encode_text:
        return f"{kind}: encode_text is not open_clip.model.CLIP.encode_text"
    missing = [a for a in ("token_embedding", "positional_embedding", "attn_mask", "transformer",
                           "ln_final", "text_projection", "text_pool_type") if not hasattr(model, a)]
    if missing:
        return f"{kind}: no {', '.join(missing)}"
    transformer = model.transformer
    if not isinstance(transformer, Transformer) or type(transformer).forward is not Transformer.forward:
        return f"{kind}: the text transformer is not open_clip.transformer.Transformer"
    pool = model.text_pool_type
    if pool not in ("argmax", "eos", "first"):
        return f"{kind}: text pooling {pool!r} does not pool a token found from the token ids"
    if pool == "eos" and getattr(model, "text_eos_id", None) is None:
        return f"{kind}: eos pooling without text_eos_id"
    mask = model.attn_mask
    pos = model.positional_embedding
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point() or mask.ndim != 2 \
            or mask.shape[0] != mask.shape[1]:
        return f"{kind}: no additive (n, n) attention mask"
    if not isinstance(pos, torch.Tensor) or pos.ndim != 2 or pos.shape[0] != mask.shape[0]:
        return f"{kind}: positional embedding does not match the attention mask"
    upper = torch.triu(torch.ones(mask.shape, dtype=torch.bool, device=mask.device), diagonal=1)
    if not bool(torch.isneginf(mask[upper]).all()):
        return f"{kind}: the attention mask is not causal"
    return ""


def _pool_index(model, tokens):
    """The position ``text_global_pool`` takes for each row of ``tokens`` (as open_clip)."""
    torch = require("torch", "labels")
    pool = model.text_pool_type
    if pool == "argmax":
        return tokens.argmax(dim=-1)
    if pool == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return torch.zeros(tokens.shape[0], dtype=torch.long)  # "first"


def _truncated_encode_text(model, tokens):
    """open_clip 3.3's ``CLIP.encode_text`` (model.py) on ``tokens[:, :n]``, with the
    positional embedding and the causal mask cut to ``n``; every row's pooled token
    must be among its first ``n`` (the caller cuts at the batch's longest)."""
    torch = require("torch", "labels")
    from open_clip.model import text_global_pool

    n_ctx = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:n_ctx].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:n_ctx, :n_ctx].contiguous())
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        if isinstance(model.text_projection, torch.nn.Linear):
            x = model.text_projection(x)
        else:
            x = x @ model.text_projection
    return x


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
