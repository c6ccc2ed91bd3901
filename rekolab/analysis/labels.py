"""StartLabelDetection: sampled frames -> one Arrow row per (frame, label).

Two models, each optional, on the same sampled frames:

* **CLIP** (open_clip, :mod:`rekolab.models.clip`) scores every label of the taxonomy
  (``data/labels/taxonomy.csv``, 1624 labels, plus the user's persistent labels and the
  job's ``ExtraLabels``) zero-shot: frames are batch-encoded (GPU and fp16 when torch
  sees a GPU), each label's text embedding is the mean of its prompt ensemble
  (:meth:`Taxonomy.prompts`), computed once per model and cached on disk, and
  :func:`~rekolab.models.clip.clip_confidence` turns similarities into 0..100, label by
  label (not a softmax).
* **YOLOX** (:mod:`rekolab.models.yolox`) finds boxes for the 80 COCO classes, mapped to
  taxonomy names by ``data/labels/coco80.csv`` (``person`` -> ``Person``); those boxes are
  the labels' ``Instances``.

Per frame and label (the rules docs/labels.md explains)::

    detector   = max confidence of the label's boxes that reach MinConfidence (100 x score)
    own        = max(CLIP confidence, detector)      # a label found by either model
    Confidence = max(own, Confidence of every descendant)   # parent >= its children
    reported when Confidence >= MinConfidence and the label passes the filters

Filters apply after parent propagation: an excluded child still raises its parent.
A label passes when it is named in ``LabelInclusionFilters`` or has a category in
``LabelCategoryInclusionFilters`` (either; no inclusion filter = every label), and is
neither in ``LabelExclusionFilters`` nor in a category of ``LabelCategoryExclusionFilters``
(exclusion wins). Filter names match label names or aliases, case-insensitively.

**Which models run** (recorded in ``job.models``): by default each model that can be
loaded without waiting on a network that is not there (see :func:`load_clip`); a job
fails only when neither can. Naming a model (``Models``, ``ClipModel``,
``DetectorModel``) makes it required: the job fails if that model cannot be loaded.

rekolab extensions of the StartLabelDetection request (validated by
:func:`check_extension` and :func:`check_start`): ``ExtraLabels`` (open vocabulary),
``Models``, ``ClipModel {Arch, Pretrained, Checkpoint}``, ``DetectorModel {Path}``,
``SampleRate``.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa

from .. import models as _models
from ..errors import InvalidParameterException
from ..results.labels import LABELS_SCHEMA
from ..video import FrameBatch
from .colors import box_colors
from .taxonomy import CATEGORIES, MAX_NAME_LENGTH, NAME_PATTERN, Taxonomy, TAXONOMY_CSV, user_labels_path

__all__ = [
    "LabelDetectionAnalyzer",
    "LabelModelsUnavailable",
    "LabelSet",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_CLIP_ARCH",
    "DEFAULT_CLIP_PRETRAINED",
    "CONFIDENCE_FLOOR",
    "MODEL_NAMES",
    "base_taxonomy",
    "check_extension",
    "check_start",
    "clip_spec",
    "load_clip",
    "load_detector",
    "offline_requested",
    "propagate",
]

log = logging.getLogger("rekolab.labels")

DEFAULT_MIN_CONFIDENCE = 50.0
#: The default CLIP: open_clip's ViT-B-32 trained on LAION-2B (laion2b_s34b_b79k).
DEFAULT_CLIP_ARCH = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
#: Nothing under this confidence is reported, labels or boxes: a MinConfidence below
#: it acts as this (so MinConfidence=0 does not return every label of the taxonomy
#: and every anchor of the detector for every frame).
CONFIDENCE_FLOOR = 5.0
MODEL_NAMES = ("CLIP", "DETECTOR")
#: Seconds to wait for a TCP connection to the weights' host before a download.
HUB_PROBE_TIMEOUT_S = 3.0
VERSION = "rekolab-labels/1"
_TRUE = ("1", "true", "yes", "on")


class LabelModelsUnavailable(RuntimeError):
    """No label model (or a model the request named) could be loaded."""


# -- request checks ---------------------------------------------------------------------

_NAME_RE = re.compile(NAME_PATTERN)


def _name_problem(value: Any, where: str) -> str | None:
    if not isinstance(value, str):
        return f"{where} must be a string, not {type(value).__name__}"
    name = value.strip()
    if not name:
        return f"{where} is empty; give a label name"
    if len(name) > MAX_NAME_LENGTH:
        return f"{where} {value!r} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
    if not _NAME_RE.fullmatch(name):
        return f"{where} {value!r} does not match the pattern {NAME_PATTERN}"
    return None


def _path_str(value: Any, where: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{where} must be a non-empty string (a file path)"
    return None


def check_extension(name: str, value: Any) -> str | None:
    """Check one StartLabelDetection extension parameter; the problem, or ``None``."""
    if name == "ExtraLabels":
        if not isinstance(value, (list, tuple)):
            return "ExtraLabels must be a list of label names, e.g. ['forklift', 'hard hat']"
        if len(value) > 100:
            return f"ExtraLabels has {len(value)} items; at most 100 are allowed"
        for i, item in enumerate(value):
            problem = _name_problem(item, f"ExtraLabels[{i}]")
            if problem:
                return problem
        return None
    if name == "Models":
        if not isinstance(value, (list, tuple)) or not value:
            return "Models must be a non-empty list drawn from 'CLIP' and 'DETECTOR'"
        bad = [v for v in value if v not in MODEL_NAMES]
        if bad or len(set(value)) != len(value):
            return (f"Models {list(value)!r} is not valid: give each of 'CLIP' and 'DETECTOR' "
                    "at most once")
        return None
    if name == "ClipModel":
        if not isinstance(value, dict):
            return "ClipModel must be a dict with any of Arch, Pretrained, Checkpoint"
        unknown = sorted(set(value) - {"Arch", "Pretrained", "Checkpoint"})
        if unknown:
            return f"ClipModel has unknown key(s) {unknown}; allowed: Arch, Pretrained, Checkpoint"
        for key in ("Arch", "Checkpoint"):
            if key in value:
                problem = _path_str(value[key], f"ClipModel.{key}")
                if problem:
                    return problem.replace(" (a file path)", "") if key == "Arch" else problem
        if "Pretrained" in value and value["Pretrained"] is not None and (
                not isinstance(value["Pretrained"], str) or not value["Pretrained"].strip()):
            return "ClipModel.Pretrained must be an open_clip pretrained tag (a string) or None"
        return None
    if name == "DetectorModel":
        if not isinstance(value, dict) or set(value) != {"Path"}:
            return "DetectorModel must be {'Path': '<a YOLOX .onnx export>'}"
        return _path_str(value["Path"], "DetectorModel.Path")
    return f"unknown StartLabelDetection extension {name}"


def _suggest(value: str, choices) -> str:
    close = difflib.get_close_matches(value, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _resolve_label(tax: Taxonomy, value: str, where: str) -> str:
    name = tax.resolve(value.strip())
    if name is None:
        raise InvalidParameterException(
            f"{where}: {value!r} is not a label of the taxonomy{_suggest(value.strip(), tax.names)}. "
            "Use a label name or alias from data/labels/taxonomy.csv, or add it with ExtraLabels")
    return name


_CATEGORY_BY_KEY = {c.casefold(): c for c in CATEGORIES}


def _resolve_category(value: str, where: str) -> str:
    name = _CATEGORY_BY_KEY.get(value.strip().casefold())
    if name is None:
        raise InvalidParameterException(
            f"{where}: {value!r} is not a label category{_suggest(value.strip(), sorted(CATEGORIES))}. "
            f"Categories: {', '.join(sorted(CATEGORIES))}")
    return name


@dataclass(frozen=True)
class Filters:
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    include_categories: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()

    @property
    def has_inclusion(self) -> bool:
        return bool(self.include or self.include_categories)


def parse_filters(params: dict, tax: Taxonomy) -> Filters:
    """The request's GeneralLabels filters, resolved to taxonomy names (empty
    strings, which the service model allows, are ignored)."""
    general = ((params.get("Settings") or {}).get("GeneralLabels")) or {}

    def labels(key):
        return frozenset(_resolve_label(tax, v, f"Settings.GeneralLabels.{key}[{i}]")
                         for i, v in enumerate(general.get(key) or []) if v.strip())

    def categories(key):
        return frozenset(_resolve_category(v, f"Settings.GeneralLabels.{key}[{i}]")
                         for i, v in enumerate(general.get(key) or []) if v.strip())

    return Filters(labels("LabelInclusionFilters"), labels("LabelExclusionFilters"),
                   categories("LabelCategoryInclusionFilters"), categories("LabelCategoryExclusionFilters"))


def job_taxonomy(params: dict) -> tuple[Taxonomy, list[str]]:
    """The job's taxonomy (shipped + persistent + ExtraLabels) and the names the
    ExtraLabels added. Raises InvalidParameterException for a bad extra label."""
    base = base_taxonomy()
    extra = [e.strip() for e in params.get("ExtraLabels") or []]
    if not extra:
        return base, []
    try:
        tax = base.with_labels(extra)
    except ValueError as exc:
        raise InvalidParameterException(f"ExtraLabels: {exc}") from None
    added = [n for n in tax.names if n not in base]
    return tax, added


def check_start(params: dict) -> None:
    """Checks of a StartLabelDetection request that need the taxonomy or the disk
    (run at Start, so a bad request raises at once instead of failing the job)."""
    tax, _ = job_taxonomy(params)
    parse_filters(params, tax)
    checkpoint = (params.get("ClipModel") or {}).get("Checkpoint")
    if checkpoint and not Path(checkpoint).expanduser().is_file():
        raise InvalidParameterException(
            f"ClipModel.Checkpoint: no file at {checkpoint}; give an open_clip checkpoint "
            "(.pt/.pth/.bin/.safetensors)")
    detector = (params.get("DetectorModel") or {}).get("Path")
    if detector and not Path(detector).expanduser().is_file():
        raise InvalidParameterException(
            f"DetectorModel.Path: no file at {detector}; give a YOLOX .onnx export")
    if any(e.strip() for e in params.get("ExtraLabels") or []):
        problem = clip_unavailable(params)
        if problem:
            raise InvalidParameterException(
                f"ExtraLabels need CLIP (only CLIP scores an open-vocabulary label), and {problem}. "
                "Provide a CLIP checkpoint: ClipModel={'Checkpoint': '/path/to/open_clip_model.safetensors'} "
                "(notebook: clip_model=...), or REKOLAB_CLIP_CHECKPOINT, or put it in "
                f"REKOLAB_MODEL_DIR/clip/{clip_spec(params).arch}/; or start without ExtraLabels")


def clip_unavailable(params: dict) -> str | None:
    """Why this request's CLIP cannot run, found without loading it (None: it can, or
    a download will be tried in the job, which then FAILS if it does not work)."""
    import importlib.util

    if "Models" in params and "CLIP" not in (params.get("Models") or []):
        return "Models leaves CLIP out"
    missing = [m for m in ("torch", "open_clip") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} is not installed (pip install 'rekolab[labels]')"
    from ..models.clip import resolve_checkpoint

    spec = clip_spec(params)
    if resolve_checkpoint(spec) is not None:
        return None
    if not spec.pretrained:
        return f"there is no weights file for {spec.arch} and no pretrained tag to download"
    from open_clip.pretrained import is_pretrained_cfg

    if is_pretrained_cfg(spec.arch, spec.pretrained) and \
            _cached_download(spec, [None, str(_home() / "cache" / "open_clip")]) is not None:
        return None
    if offline_requested():
        return (f"no CLIP weights are here ({spec.arch}/{spec.pretrained} is in no local folder or download "
                "cache) and downloads are off (REKOLAB_OFFLINE/HF_HUB_OFFLINE)")
    return None


def _home():
    from ..store import home

    return home()


# -- the taxonomy, loaded once per process ------------------------------------------------

_TAX_LOCK = threading.Lock()
_TAX_CACHE: dict[tuple, Taxonomy] = {}


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def base_taxonomy() -> Taxonomy:
    """The shipped taxonomy plus the user's persistent labels (cached until either
    file changes)."""
    user = user_labels_path()
    key = (str(TAXONOMY_CSV), _stamp(TAXONOMY_CSV), str(user), _stamp(user))
    with _TAX_LOCK:
        tax = _TAX_CACHE.get(key)
        if tax is None:
            tax = Taxonomy.load()
            _TAX_CACHE.clear()
            _TAX_CACHE[key] = tax
    return tax


# -- the labels a job scores ---------------------------------------------------------------


@dataclass
class LabelSet:
    """The labels a job scores (the filters' labels and all their descendants; every
    label without an inclusion filter), in a fixed index order, with what rows need.

    ``names[i]``; ``allowed[i]``: passes the filters; ``levels``: (child, parent) index
    arrays grouped so that each group's children are final before it runs."""

    names: list[str]
    base_names: list[str]
    extra_names: list[str]
    allowed: np.ndarray
    levels: list[tuple[np.ndarray, np.ndarray]]
    parents: list[list[dict]]
    aliases: list[list[dict]]
    categories: list[list[dict]]
    name_order: np.ndarray  # label indices sorted by name
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, tax: Taxonomy, extra: list[str], filters: Filters) -> "LabelSet":
        extra_set = set(extra)
        if filters.has_inclusion:
            roots = set(filters.include)
            if filters.include_categories:
                roots.update(n for n, lab in ((n, tax[n]) for n in tax.names)
                             if filters.include_categories & set(lab.categories))
            scored = set(roots)
            for r in roots:
                scored |= tax.descendants(r)
        else:
            scored = set(tax.names)
        base_names = [n for n in tax.names if n in scored and n not in extra_set]
        extra_names = [n for n in tax.names if n in scored and n in extra_set]
        names = base_names + extra_names
        index = {n: i for i, n in enumerate(names)}

        labels = [tax[n] for n in names]
        allowed = np.array([
            (not filters.has_inclusion or n in filters.include
             or bool(filters.include_categories & set(lab.categories)))
            and n not in filters.exclude
            and not (filters.exclude_categories & set(lab.categories))
            for n, lab in zip(names, labels)], dtype=bool)

        # Heights in the scored subgraph: a leaf is 0, a parent 1 + its highest child.
        children: dict[int, list[int]] = {i: [] for i in range(len(names))}
        edges = []
        for i, n in enumerate(names):
            for p in tax.direct_parents(n):
                j = index.get(p)
                if j is not None:
                    children[j].append(i)
                    edges.append((i, j))
        height = [-1] * len(names)
        for start in range(len(names)):
            if height[start] >= 0:
                continue
            stack = [(start, iter(children[start]))]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    height[node] = 1 + max((height[c] for c in children[node]), default=-1)
                elif height[nxt] < 0:
                    stack.append((nxt, iter(children[nxt])))
        levels = []
        by_height: dict[int, list[tuple[int, int]]] = {}
        for c, p in edges:
            by_height.setdefault(height[c], []).append((c, p))
        for h in sorted(by_height):
            pairs = np.asarray(by_height[h], dtype=np.int64)
            levels.append((pairs[:, 0], pairs[:, 1]))

        def named(values):
            return [{"Name": v} for v in values]

        return cls(
            names=names, base_names=base_names, extra_names=extra_names, allowed=allowed,
            levels=levels, parents=[named(lab.parents) for lab in labels],
            aliases=[named(lab.aliases) for lab in labels],
            categories=[named(lab.categories) for lab in labels],
            name_order=np.asarray(sorted(range(len(names)), key=lambda i: names[i]), dtype=np.int64),
            index=index)

    def __len__(self) -> int:
        return len(self.names)


def propagate(confidence: np.ndarray, levels: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``(N, L)`` confidences with every parent raised to at least its children's
    (transitively: at least every descendant's)."""
    out = np.array(confidence, dtype=np.float32, copy=True)
    t = out.T  # (L, N) view: rows are labels
    for child, parent in levels:
        np.maximum.at(t, parent, t[child])
    return out


# -- models -----------------------------------------------------------------------------------


def offline_requested() -> bool:
    """``REKOLAB_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: never try a download."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("REKOLAB_OFFLINE", "HF_HUB_OFFLINE"))


def clip_spec(params: dict):
    """The :class:`~rekolab.models.clip.ClipSpec` of a request: ``ClipModel`` members,
    else ``REKOLAB_CLIP_ARCH`` / ``REKOLAB_CLIP_PRETRAINED`` / ``REKOLAB_CLIP_CHECKPOINT``,
    else ViT-B-32 / laion2b_s34b_b79k."""
    from ..models.clip import ClipSpec

    opts = params.get("ClipModel") or {}
    arch = opts.get("Arch") or os.environ.get("REKOLAB_CLIP_ARCH") or DEFAULT_CLIP_ARCH
    if "Pretrained" in opts:
        pretrained = opts["Pretrained"] or None
    elif os.environ.get("REKOLAB_CLIP_PRETRAINED"):
        pretrained = os.environ["REKOLAB_CLIP_PRETRAINED"]
    else:
        pretrained = DEFAULT_CLIP_PRETRAINED if arch == DEFAULT_CLIP_ARCH else None
    checkpoint = opts.get("Checkpoint") or os.environ.get("REKOLAB_CLIP_CHECKPOINT") or None
    return ClipSpec(arch=arch, pretrained=pretrained, checkpoint=checkpoint)


_CLIP_LOCK = threading.Lock()
_CLIP_MODELS: dict[tuple, Any] = {}
_models.on_release(_CLIP_MODELS.clear)  # torch modules: released before exit


def _load_file(spec, path: Path):
    """Load (once per process) the CLIP in a local weights file."""
    from ..models.clip import ClipModel, ClipSpec

    st = path.stat()
    key = (spec.arch, spec.pretrained, str(path.resolve()), st.st_size, st.st_mtime_ns,
           os.environ.get("REKOLAB_DEVICE", ""))
    with _CLIP_LOCK:
        model = _CLIP_MODELS.get(key)
        if model is None:
            model = ClipModel.load(ClipSpec(arch=spec.arch, pretrained=spec.pretrained, checkpoint=path))
            _CLIP_MODELS[key] = model
    return model


def _host_reachable(url: str) -> str | None:
    """``None`` when a TCP connection to the URL's host opens within the probe
    timeout (or a proxy is configured: then the hub client's own timeouts apply);
    else why not."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    host = urlparse(url).hostname or url
    try:
        socket.create_connection((host, 443), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"{host} is not reachable ({exc})"
    return None


def _cached_download(spec, cache_dirs: list[str | None]) -> Path | None:
    """The tag's weights file when a previous download left it in one of the caches
    (checked with the hub offline: no network)."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    from ..models.clip import hub_offline

    pcfg = get_pretrained_cfg(spec.arch, spec.pretrained)
    for cache_dir in cache_dirs:
        if pcfg.get("hf_hub"):
            try:
                with hub_offline():
                    found = download_pretrained(pcfg, cache_dir=cache_dir)
            except Exception:
                found = None
        elif pcfg.get("url"):
            root = cache_dir or os.path.expanduser("~/.cache/clip")
            candidate = Path(root) / os.path.basename(pcfg["url"])
            found = str(candidate) if candidate.is_file() else None
        else:
            found = None
        if found and Path(found).is_file():
            return Path(found)
    return None


def load_clip(params: dict, *, download: bool = True):
    """``(ClipModel or None, info)``: the job's CLIP, by this policy:

    1. a local weights file: ``ClipModel.Checkpoint``, ``REKOLAB_CLIP_CHECKPOINT``, or
       ``REKOLAB_MODEL_DIR/clip/<arch>/<pretrained>.{safetensors,pt,pth,bin}`` (or the only
       checkpoint in that folder). A local file that does not load is an error;
    2. the pretrained tag's weights left by an earlier download, in open_clip's
       default cache or ``<rekolab home>/cache/open_clip`` (looked up with the hub offline);
    3. unless offline (``REKOLAB_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``): open_clip's own
       download into ``<rekolab home>/cache/open_clip``, tried only after a TCP connection
       to the weights' host opened within 3 s, so a machine without internet skips CLIP
       at once instead of waiting on retries.

    ``download=False`` skips step 3 (content moderation uses CLIP only when one is
    configured). When CLIP cannot be had, ``info`` says why (``{"Ran": False, "Reason": ...}``)."""
    from ..models import require
    from ..store import home

    spec = clip_spec(params)
    try:
        require("torch", "labels")
        open_clip = require("open_clip", "labels")
    except ImportError as exc:
        return None, {"Ran": False, "Reason": str(exc)}
    from ..models.clip import resolve_checkpoint

    if open_clip.get_model_config(spec.arch) is None:
        raise LabelModelsUnavailable(f"ClipModel.Arch {spec.arch!r} is not an open_clip architecture; "
                                     "see open_clip.list_models()")
    local = resolve_checkpoint(spec)  # ClipWeightsNotFound for a named file that is gone
    how = "local file"
    if local is None:
        from open_clip.pretrained import is_pretrained_cfg, list_pretrained_tags_by_model

        if not spec.pretrained:
            return None, {"Ran": False, "Reason": (
                f"no weights file for {spec.arch} (no ClipModel.Checkpoint, REKOLAB_CLIP_CHECKPOINT or "
                f"REKOLAB_MODEL_DIR/clip/{spec.arch}/) and no pretrained tag to download")}
        if not is_pretrained_cfg(spec.arch, spec.pretrained):
            raise LabelModelsUnavailable(
                f"{spec.pretrained!r} is not an open_clip pretrained tag of {spec.arch}; known tags: "
                f"{list_pretrained_tags_by_model(spec.arch)}")
        own_cache = str(home() / "cache" / "open_clip")
        local = _cached_download(spec, [None, own_cache])
        how = "download cache"
        if local is None:
            where = (f"no file in REKOLAB_MODEL_DIR/clip/{spec.arch}/, ClipModel.Checkpoint or "
                     f"REKOLAB_CLIP_CHECKPOINT, and {spec.arch}/{spec.pretrained} is not in a download cache")
            if not download:
                return None, {"Ran": False, "Reason": f"{where}; no download tried (no CLIP configured)"}
            if offline_requested():
                return None, {"Ran": False, "Reason": f"{where}; offline (REKOLAB_OFFLINE/HF_HUB_OFFLINE), "
                                                      "so no download was tried"}
            from open_clip.pretrained import download_pretrained, get_pretrained_cfg

            pcfg = get_pretrained_cfg(spec.arch, spec.pretrained)
            url = (f"https://huggingface.co/{pcfg['hf_hub']}" if pcfg.get("hf_hub") else pcfg.get("url", ""))
            problem = _host_reachable(url)
            if problem:
                return None, {"Ran": False, "Reason": f"{where}; download skipped: {problem}"}
            log.info("downloading CLIP %s/%s into %s", spec.arch, spec.pretrained, own_cache)
            try:
                local = Path(download_pretrained(pcfg, cache_dir=own_cache))
            except Exception as exc:
                return None, {"Ran": False, "Reason": f"{where}; the download failed: {exc}"}
            how = "downloaded"
    model = _load_file(spec, Path(local))
    cal = model.calibration
    return model, {
        "Ran": True, "Model": model.id, "Arch": spec.arch, "Pretrained": spec.pretrained,
        "Checkpoint": str(local), "WeightsFrom": how, "Device": model.device,
        "Precision": model.precision, "Preprocess": model.preprocess_source,
        "Calibration": {"Family": cal.family, "Scale": cal.scale, "Offset": cal.offset,
                        "Background": cal.background},
    }


def load_detector(params: dict, threshold: float):
    """``(YoloxDetector or None, info)``: ``DetectorModel.Path``, else ``REKOLAB_YOLOX_MODEL``,
    else ``REKOLAB_MODEL_DIR/coco_detection/yolox_nano.onnx``."""
    from ..models import model_dir
    from ..models.yolox import DEFAULT_RELATIVE, YoloxDetector

    path = (params.get("DetectorModel") or {}).get("Path") or os.environ.get("REKOLAB_YOLOX_MODEL") or None
    found = YoloxDetector.resolve(path)  # FileNotFoundError for a named file that is gone
    if found is None:
        root = model_dir()
        return None, {"Ran": False, "Reason": (
            f"no YOLOX model: {DEFAULT_RELATIVE} is not under REKOLAB_MODEL_DIR "
            f"({root if root is not None else 'not set'}); set DetectorModel.Path or REKOLAB_YOLOX_MODEL")}
    try:
        detector = YoloxDetector(found, score_threshold=threshold / 100.0)
    except ImportError as exc:
        return None, {"Ran": False, "Reason": str(exc)}
    h, w = detector.input_size
    return detector, {"Ran": True, "Model": detector.name, "Path": str(detector.path),
                      "InputSize": [w, h], "Classes": detector.num_classes,
                      "ScoreThreshold": detector.score_threshold, "NmsIoU": detector.nms_iou}


# -- the analyzer -------------------------------------------------------------------------------


class LabelDetectionAnalyzer:
    """FrameBatch -> label rows (:data:`~rekolab.results.labels.LABELS_SCHEMA`)."""

    schema = LABELS_SCHEMA

    def __init__(self, params: dict):
        self.min_confidence = float(params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE))
        self.threshold = max(self.min_confidence, CONFIDENCE_FLOOR)
        self.taxonomy, extra = job_taxonomy(params)
        self.filters = parse_filters(params, self.taxonomy)
        self.labels = LabelSet.build(self.taxonomy, extra, self.filters)
        named = set(params.get("Models") or ())
        extra_wanted = any(e.strip() for e in params.get("ExtraLabels") or [])
        required = {"CLIP": "CLIP" in named or "ClipModel" in params or extra_wanted,
                    "DETECTOR": "DETECTOR" in named or "DetectorModel" in params}
        wanted = named or set(MODEL_NAMES)
        if "ClipModel" in params:
            wanted.add("CLIP")
        if "DetectorModel" in params:
            wanted.add("DETECTOR")

        self.clip = self.detector = None
        self.text_emb = None
        self._models: dict[str, Any] = {}
        if "CLIP" in wanted:
            self.clip, info = load_clip(params)
        else:
            info = {"Ran": False, "Reason": "not in Models"}
        self._models["Clip"] = info
        if "DETECTOR" in wanted:
            self.detector, info = load_detector(params, self.threshold)
        else:
            info = {"Ran": False, "Reason": "not in Models"}
        self._models["Detector"] = info
        for name, key, model in (("CLIP", "Clip", self.clip), ("DETECTOR", "Detector", self.detector)):
            if required[name] and model is None:
                raise LabelModelsUnavailable(f"{name} was requested but cannot run: {self._models[key]['Reason']}")
        if self.clip is None and self.detector is None:
            raise LabelModelsUnavailable(
                "label detection needs CLIP or the YOLOX detector, and neither can run here. "
                f"CLIP: {self._models['Clip']['Reason']}. Detector: {self._models['Detector']['Reason']}.")

        if self.clip is not None:
            parts = []
            prompts = self.taxonomy.prompts
            if self.labels.base_names:
                parts.append(self.clip.text_embeddings(self.labels.base_names, prompts))
            if self.labels.extra_names:
                parts.append(self.clip.text_embeddings(self.labels.extra_names, prompts))
            self.text_emb = np.concatenate(parts) if parts else None
            self._models["Clip"]["Labels"] = len(self.labels)
        self.class_to_label = self._map_classes()
        self._sample = 0
        # Sampled frames per batch asked of the decoder. YOLOX alone on onnxruntime got
        # batches of 4 until 2026-12-02 (its one-frame calls did not need more); with its
        # frames run side by side (models/frame_threads.py) 16 is faster: a Hamilton-clip
        # job at 5 samples/s ran at 8.0 / 8.3 / 8.5 video-s/s with batches of 4 / 8 / 16.
        from ..models.backend import frame_batch_size

        self.batch_size = frame_batch_size()

    def _map_classes(self) -> np.ndarray:
        """Detector class id -> label index (-1: not a scored label)."""
        if self.detector is None:
            return np.zeros(0, np.int64)
        coco = self.taxonomy.coco_map()
        out = np.full(len(self.detector.labels), -1, np.int64)
        unmapped = []
        for i, cls in enumerate(self.detector.labels):
            name = coco.get(cls) or self.taxonomy.resolve(cls)
            if name is None:
                unmapped.append(cls)
            else:
                out[i] = self.labels.index.get(name, -1)
        self._models["Detector"]["UnmappedClasses"] = unmapped
        return out

    def models(self) -> dict:
        """What ran (stored with the job): each model, or why it did not run."""
        ran = [name for name, key in (("CLIP", "Clip"), ("DETECTOR", "Detector")) if self._models[key]["Ran"]]
        parts = [VERSION]
        if self.clip is not None:
            parts.append(f"clip={self._models['Clip']['Model']}")
        if self.detector is not None:
            parts.append(f"detector={self._models['Detector']['Model']}")
        return {
            "LabelModelVersion": " ".join(parts),
            "ModelsRun": ran,
            **self._models,
            "Taxonomy": {"Labels": len(self.taxonomy), "ExtraLabels": self.labels.extra_names,
                         "Scored": len(self.labels), "Reportable": int(self.labels.allowed.sum())},
            "MinConfidence": self.min_confidence,
            "Threshold": self.threshold,
            "ConfidenceRule": "label = max(CLIP, best box); parent = max(own, descendants)",
        }

    # -- scoring ---------------------------------------------------------------------------

    def clip_confidence(self, frames_rgb) -> np.ndarray:
        """``(N, L)`` CLIP confidences of the scored labels."""
        emb = self.clip.encode_images(frames_rgb)
        return self.clip.confidence(emb, self.text_emb)

    def detect(self, frames_rgb) -> tuple[np.ndarray, list[dict[int, list[dict]]]]:
        """``(N, L)`` detector confidences and per-frame ``{label index: Instances}``
        (boxes at or above MinConfidence, best first, each with the DominantColors of
        its pixels: :func:`rekolab.analysis.colors.box_colors`)."""
        n, L = len(frames_rgb), len(self.labels)
        conf = np.zeros((n, L), np.float32)
        instances: list[dict[int, list[dict]]] = [{} for _ in range(n)]
        for k, (frame, dets) in enumerate(zip(frames_rgb, self.detector.detect_batch(frames_rgb, rgb=True))):
            h, w = frame.shape[:2]
            for box, score, cls in zip(dets.boxes_xyxy, dets.scores, dets.class_ids):
                label = int(self.class_to_label[cls]) if cls < len(self.class_to_label) else -1
                c = float(np.float32(score * 100.0))
                if label < 0 or c < self.threshold:
                    continue
                x1, y1, x2, y2 = (float(v) for v in box)
                ratio_box = {"Width": (x2 - x1) / w, "Height": (y2 - y1) / h, "Left": x1 / w, "Top": y1 / h}
                instances[k].setdefault(label, []).append({
                    "BoundingBox": ratio_box, "Confidence": c,
                    "DominantColors": box_colors(frames_rgb[k], ratio_box)})
                conf[k, label] = max(conf[k, label], c)
        return conf, instances

    def rows(self, timestamps, frame_numbers, samples, clip_conf, det_conf, instances) -> list[dict]:
        """Combine both models' ``(N, L)`` confidences into rows (see the module docstring)."""
        n, L = len(timestamps), len(self.labels)
        zero = np.zeros((n, L), np.float32)
        c = zero if clip_conf is None else np.asarray(clip_conf, np.float32)
        d = zero if det_conf is None else np.asarray(det_conf, np.float32)
        own = np.maximum(c, d)
        total = propagate(own, self.labels.levels)
        m = self.threshold
        keep = (total >= m) & self.labels.allowed[None, :]
        out = []
        for k in range(n):
            hits = self.labels.name_order[keep[k, self.labels.name_order]]
            for i in hits:
                i = int(i)
                source = []
                if clip_conf is not None and c[k, i] >= m:
                    source.append("CLIP")
                if d[k, i] >= m and d[k, i] > 0:
                    source.append("DETECTOR")
                if total[k, i] > own[k, i]:
                    source.append("CHILD")
                out.append({
                    "Timestamp": int(timestamps[k]), "FrameNumber": int(frame_numbers[k]),
                    "SampleIndex": int(samples[k]), "Name": self.labels.names[i],
                    "Confidence": float(total[k, i]), "Parents": self.labels.parents[i],
                    "Aliases": self.labels.aliases[i], "Categories": self.labels.categories[i],
                    "Instances": (instances[k].get(i, []) if instances is not None else []),
                    "Source": source,
                    "ClipConfidence": None if clip_conf is None else float(c[k, i]),
                })
        return out

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        n = len(batch)
        samples = np.arange(self._sample, self._sample + n)
        self._sample += n
        clip_conf = self.clip_confidence(batch.frames) if self.clip is not None else None
        det_conf, instances = self.detect(batch.frames) if self.detector is not None else (None, None)
        rows = self.rows(batch.timestamps_ms, batch.indices, samples, clip_conf, det_conf, instances)
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)
