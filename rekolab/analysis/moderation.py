"""StartContentModeration and DetectModerationLabels: frames -> moderation labels of
Rekognition's v7 taxonomy, one code path for videos and stills.

Two signals, each for the part of the taxonomy it can see (docs/moderation.md):

* **NudeNet** (:mod:`rekolab.models.nudenet`, always when installed) finds exposed
  body parts; ``data/moderation/nudenet.csv`` maps its classes onto the nudity
  branch's level-3 labels (``MALE_GENITALIA_EXPOSED`` -> Exposed Male Genitalia, ...).
  A label's confidence is its best box's score x 100; its boxes are the row's
  ``Instances``. Classes with no Rekognition counterpart (covered parts, faces,
  feet, belly, armpits) are not reported.
* **CLIP** (open_clip zero-shot, :func:`rekolab.analysis.labels.load_clip`: only when a
  CLIP model is configured here (``ClipModel``, ``REKOLAB_CLIP_*``,
  ``REKOLAB_MODEL_DIR/clip/<arch>/``, an earlier download); it is downloaded only when
  the request names it (``ClipModel`` or ``Models=["CLIP"]``)) scores the labels of the other
  top-level categories that have prompts in ``data/moderation/taxonomy.csv``
  (Violence, Visually Disturbing, Drugs & Tobacco, Alcohol, Rude Gestures, Gambling,
  Hate Symbols), and ContentTypes (Animated, Illustrated) from
  ``data/moderation/content_types.csv``. Without CLIP these are not produced, and
  ``job.models["Categories"]`` says so, category by category.

Per frame, a parent's confidence is raised to its children's (Rekognition returns
the level-1 and level-2 labels above a level-3 label), and a label is reported when
its confidence reaches ``MinConfidence`` (default 50; under 5 acts as 5).

Request extensions: ``SampleRate``, ``Models`` (``["NUDENET", "CLIP"]``: which to run;
a named model is required), ``ClipModel`` (as label detection's).
"""
from __future__ import annotations

import csv
import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import InvalidParameterException
from ..results.moderation import MODERATION_SCHEMA, moderation_label
from ..video import FrameBatch
from .labels import CONFIDENCE_FLOOR, load_clip, propagate
from .taxonomy import DATA_DIR

__all__ = ["ContentModerationAnalyzer", "ModerationTaxonomy", "ModerationModelsUnavailable",
           "DEFAULT_MIN_CONFIDENCE", "MODEL_NAMES", "TAXONOMY_VERSION", "check_extension", "check_start",
           "detect_moderation_labels", "moderation_taxonomy"]

DEFAULT_MIN_CONFIDENCE = 50.0
MODEL_NAMES = ("NUDENET", "CLIP")
TAXONOMY_VERSION = "7.0"
VERSION = "rekolab-moderation/1"
MODERATION_DIR = DATA_DIR.parent / "moderation"
PROMPT_TEMPLATES = ("a photo of {}.", "a video frame showing {}.")


class ModerationModelsUnavailable(RuntimeError):
    """No moderation model (or one the request named) could be loaded."""


# -- the taxonomy -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModerationTaxonomy:
    """``data/moderation/``: the v7 labels (name, parent, level, CLIP prompts), the
    NudeNet class map and the ContentTypes prompts."""

    names: tuple[str, ...]
    parents: tuple[str, ...]
    levels: tuple[int, ...]
    prompts: tuple[tuple[str, ...], ...]
    nudenet: dict[str, str | None]
    content_types: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def load(cls, folder: Path = MODERATION_DIR) -> "ModerationTaxonomy":
        with open(folder / "taxonomy.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        names = tuple(r["name"] for r in rows)
        index = set(names)
        for r in rows:
            if r["parent"] and r["parent"] not in index:
                raise ValueError(f"moderation taxonomy: {r['name']!r} has unknown parent {r['parent']!r}")
        with open(folder / "nudenet.csv", newline="", encoding="utf-8") as f:
            nudenet = {r["nudenet_class"]: (r["label"] or None) for r in csv.DictReader(f)}
        bad = [v for v in nudenet.values() if v and v not in index]
        if bad:
            raise ValueError(f"moderation taxonomy: nudenet.csv maps to unknown labels {bad}")
        with open(folder / "content_types.csv", newline="", encoding="utf-8") as f:
            content = tuple((r["name"], tuple(p for p in r["prompts"].split("|") if p))
                            for r in csv.DictReader(f))
        return cls(names=names, parents=tuple(r["parent"] for r in rows),
                   levels=tuple(int(r["level"]) for r in rows),
                   prompts=tuple(tuple(p for p in r["prompts"].split("|") if p) for r in rows),
                   nudenet=nudenet, content_types=content)

    def __len__(self) -> int:
        return len(self.names)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def top_level(self, name: str) -> str:
        while self.parents[self.index[name]]:
            name = self.parents[self.index[name]]
        return name

    @property
    def categories(self) -> list[str]:
        return [n for n, lvl in zip(self.names, self.levels) if lvl == 1]

    @functools.cached_property
    def propagation(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(child, parent) index arrays, level 3 -> 2 first, then 2 -> 1."""
        out = []
        for level in (3, 2):
            pairs = [(i, self.index[p]) for i, (p, lvl) in enumerate(zip(self.parents, self.levels))
                     if lvl == level and p]
            if pairs:
                arr = np.asarray(pairs, np.int64)
                out.append((arr[:, 0], arr[:, 1]))
        return out

    def label_prompts(self, name: str) -> list[str]:
        return [t.format(p) for p in self.prompts[self.index[name]] for t in PROMPT_TEMPLATES]


@functools.lru_cache(maxsize=1)
def moderation_taxonomy() -> ModerationTaxonomy:
    return ModerationTaxonomy.load()


# -- request checks -------------------------------------------------------------------------


def check_extension(name: str, value: Any) -> str | None:
    """Check one StartContentModeration / DetectModerationLabels extension."""
    if name == "Models":
        if (not isinstance(value, (list, tuple)) or not value or len(set(value)) != len(value)
                or any(v not in MODEL_NAMES for v in value)):
            return f"Models {value!r} is not valid: give a non-empty list of 'NUDENET' and/or 'CLIP', each once"
        return None
    if name == "ClipModel":
        from .labels import check_extension as label_check

        return label_check("ClipModel", value)
    return f"unknown content moderation extension {name}"


def check_start(params: dict) -> None:
    """Checks of a StartContentModeration request that need the disk (at Start, so a
    bad request raises at once instead of failing the job)."""
    checkpoint = (params.get("ClipModel") or {}).get("Checkpoint")
    if checkpoint and not Path(checkpoint).expanduser().is_file():
        raise InvalidParameterException(
            f"ClipModel.Checkpoint: no file at {checkpoint}; give an open_clip checkpoint "
            "(.pt/.pth/.bin/.safetensors)", "StartContentModeration")


# -- the analyzer ---------------------------------------------------------------------------


_LOCK = threading.Lock()


class ContentModerationAnalyzer:
    """FrameBatch -> moderation rows (:data:`~rekolab.results.moderation.MODERATION_SCHEMA`).

    Also the core of DetectModerationLabels (:meth:`frame_labels`)."""

    schema = MODERATION_SCHEMA

    def __init__(self, params: dict, *, nudenet=None, clip=None):
        self.min_confidence = float(params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE))
        self.threshold = max(self.min_confidence, CONFIDENCE_FLOOR)
        self.tax = moderation_taxonomy()
        named = set(params.get("Models") or ())
        wanted = named or set(MODEL_NAMES)
        if "ClipModel" in params:
            wanted.add("CLIP")
        required = {"NUDENET": "NUDENET" in named, "CLIP": "CLIP" in named or "ClipModel" in params}
        self._models: dict[str, dict] = {}

        self.nudenet = nudenet
        if self.nudenet is None and "NUDENET" in wanted:
            try:
                from ..models.nudenet import NudeNetDetector

                self.nudenet = NudeNetDetector()
            except (ImportError, FileNotFoundError) as exc:
                self._models["NudeNet"] = {"Ran": False, "Reason": str(exc)}
        if self.nudenet is not None:
            self._models["NudeNet"] = {"Ran": True, "Model": self.nudenet.name, "Path": str(self.nudenet.path),
                                       "License": "AGPL-3.0 (see docs/moderation.md)"}
        elif "NudeNet" not in self._models:
            self._models["NudeNet"] = {"Ran": False, "Reason": "not in Models"}

        self.clip = clip
        if self.clip is None and "CLIP" in wanted:
            # CLIP when one is configured (a local file, REKOLAB_CLIP_*, an earlier download);
            # a fresh download only when the request asks for CLIP by name
            self.clip, info = load_clip(params, download=required["CLIP"])
        elif self.clip is not None:
            info = {"Ran": True, "Model": self.clip.id}
        else:
            info = {"Ran": False, "Reason": "not in Models"}
        self._models["Clip"] = info
        for name, key, model in (("NUDENET", "NudeNet", self.nudenet), ("CLIP", "Clip", self.clip)):
            if required[name] and model is None:
                raise ModerationModelsUnavailable(
                    f"{name} was requested but cannot run: {self._models[key]['Reason']}")
        if self.nudenet is None and self.clip is None:
            raise ModerationModelsUnavailable(
                "content moderation needs NudeNet or CLIP, and neither can run here. NudeNet: "
                f"{self._models['NudeNet']['Reason']}. CLIP: {self._models['Clip']['Reason']}.")

        # NudeNet class id -> label index (-1: not reported)
        from ..models.nudenet import NUDENET_CLASSES

        self.class_to_label = np.array([self.tax.index.get(self.tax.nudenet.get(c) or "", -1)
                                        for c in NUDENET_CLASSES], np.int64)
        self.clip_labels = np.array([i for i, p in enumerate(self.tax.prompts) if p], np.int64)
        self.text_emb = self.content_emb = None
        if self.clip is not None:
            names = [self.tax.names[i] for i in self.clip_labels]
            self.text_emb = self.clip.text_embeddings(names, self.tax.label_prompts)
            content = dict(self.tax.content_types)
            self.content_emb = self.clip.text_embeddings(
                list(content), lambda n: [t.format(p) for p in content[n] for t in PROMPT_TEMPLATES])
        self._sample = 0

    # -- what ran --------------------------------------------------------------------------
    def category_sources(self) -> dict[str, dict]:
        """Per top-level category: which model produced it, or why it is not produced."""
        nudenet_cats = {self.tax.top_level(v) for v in self.tax.nudenet.values() if v}
        clip_cats = {self.tax.top_level(self.tax.names[i]) for i in self.clip_labels}
        out = {}
        for cat in self.tax.categories:
            sources, reasons = [], []
            if cat in nudenet_cats:
                (sources if self.nudenet is not None else reasons).append(
                    "NUDENET" if self.nudenet is not None else f"NudeNet did not run: {self._models['NudeNet']['Reason']}")
            if cat in clip_cats:
                (sources if self.clip is not None else reasons).append(
                    "CLIP" if self.clip is not None else f"CLIP did not run: {self._models['Clip']['Reason']}")
            if not (cat in nudenet_cats or cat in clip_cats):
                reasons.append("no model here has a signal for it")
            entry: dict[str, Any] = {"Ran": bool(sources), "Models": sources}
            if reasons:
                entry["Reason"] = "; ".join(reasons)
            out[cat] = entry
        return out

    @property
    def version(self) -> str:
        parts = [VERSION, f"taxonomy={TAXONOMY_VERSION}"]
        if self.nudenet is not None:
            parts.append(f"nudenet={self.nudenet.name}")
        if self.clip is not None:
            parts.append(f"clip={self._models['Clip']['Model']}")
        return " ".join(parts)

    def models(self) -> dict:
        return {
            "ModerationModelVersion": self.version,
            "ModelsRun": [n for n, k in (("NUDENET", "NudeNet"), ("CLIP", "Clip")) if self._models[k]["Ran"]],
            **self._models,
            "Categories": self.category_sources(),
            "ContentTypes": ("CLIP zero-shot: " + ", ".join(n for n, _ in self.tax.content_types)
                             if self.clip is not None else "not produced (needs CLIP)"),
            "MinConfidence": self.min_confidence,
            "Threshold": self.threshold,
        }

    # -- scoring ---------------------------------------------------------------------------
    def score(self, frames_rgb) -> tuple:
        """``(total, own, instances, content, nude, clip)`` for N RGB frames: ``(N, L)``
        confidences after and before parent propagation, per frame ``{label index:
        Instances}``, ``(N, C)`` ContentTypes confidences (None without CLIP), and each
        model's own ``(N, L)`` confidences."""
        n, L = len(frames_rgb), len(self.tax)
        nude = np.zeros((n, L), np.float32)
        instances: list[dict[int, list[dict]]] = [{} for _ in range(n)]
        if self.nudenet is not None:
            dets = self.nudenet.detect_batch(frames_rgb, rgb=True)  # swapped to BGR in its blob, no copy
            for k, (frame, det) in enumerate(zip(frames_rgb, dets)):
                self._add_nudenet(k, frame.shape[:2], det, nude, instances)
        clip = np.zeros((n, L), np.float32)
        content = None
        if self.clip is not None:
            emb = self.clip.encode_images(frames_rgb)
            clip[:, self.clip_labels] = self.clip.confidence(emb, self.text_emb)
            content = self.clip.confidence(emb, self.content_emb)
        own = np.maximum(nude, clip)
        return propagate(own, self.tax.propagation), own, instances, content, nude, clip

    def _add_nudenet(self, k, hw, det, conf, instances) -> None:
        h, w = hw
        for box, score, cls in zip(det.boxes_xyxy, det.scores, det.class_ids):
            label = int(self.class_to_label[cls])
            c = float(np.float32(score * 100.0))
            if label < 0 or c < self.threshold:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            instances[k].setdefault(label, []).append({
                "BoundingBox": {"Width": (x2 - x1) / w, "Height": (y2 - y1) / h, "Left": x1 / w, "Top": y1 / h},
                "Confidence": c})
            conf[k, label] = max(conf[k, label], c)

    def frame_rows(self, frames_rgb) -> list[tuple[list[dict], list[dict]]]:
        """Per frame, ``(ContentTypes, rows)``: the rows (without Timestamp, FrameNumber,
        SampleIndex) sorted by name."""
        total, own, instances, content, nude, clip = self.score(frames_rgb)
        m = self.threshold
        order = sorted(range(len(self.tax)), key=lambda i: self.tax.names[i])
        ct_names = [n for n, _ in self.tax.content_types]
        out = []
        for k in range(len(frames_rgb)):
            types = [] if content is None else [
                {"Confidence": float(c), "Name": name} for name, c in zip(ct_names, content[k]) if c >= m]
            rows = []
            for i in order:
                if total[k, i] < m:
                    continue
                source = [s for s, v in (("NUDENET", nude[k, i]), ("CLIP", clip[k, i])) if v >= m]
                if total[k, i] > own[k, i]:
                    source.append("CHILD")
                rows.append({"Name": self.tax.names[i], "ParentName": self.tax.parents[i],
                             "TaxonomyLevel": self.tax.levels[i], "Confidence": float(total[k, i]),
                             "ContentTypes": types, "Instances": instances[k].get(i, []), "Source": source})
            out.append((types, rows))
        return out

    def __call__(self, batch: FrameBatch) -> pa.RecordBatch:
        rows = []
        for k, (_, frame_rows) in enumerate(self.frame_rows(batch.frames)):
            for row in frame_rows:
                row.update(Timestamp=int(batch.timestamps_ms[k]), FrameNumber=int(batch.indices[k]),
                           SampleIndex=self._sample + k)
                rows.append(row)
        self._sample += len(batch)
        return pa.RecordBatch.from_pylist(rows, schema=self.schema)


# -- DetectModerationLabels -----------------------------------------------------------------

_IMAGE_ANALYZERS: dict[str, ContentModerationAnalyzer] = {}


def detect_moderation_labels(image_bgr: np.ndarray, params: dict) -> dict:
    """DetectModerationLabels on one decoded image (BGR): ``{ModerationLabels,
    ModerationModelVersion, ContentTypes}``, labels sorted by Confidence (highest
    first). The models are loaded once per configuration and process."""
    import json

    config = {k: params[k] for k in ("Models", "ClipModel") if k in params}
    key = json.dumps(config, sort_keys=True)
    with _LOCK:
        analyzer = _IMAGE_ANALYZERS.get(key)
    if analyzer is None:
        try:
            analyzer = ContentModerationAnalyzer(config)
        except ModerationModelsUnavailable as exc:
            raise InvalidParameterException(str(exc), "DetectModerationLabels") from None
        with _LOCK:
            _IMAGE_ANALYZERS[key] = analyzer
    minimum = float(params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE))
    analyzer_min = max(minimum, CONFIDENCE_FLOOR)
    saved = analyzer.threshold
    with _LOCK:  # one threshold per call on a shared analyzer
        analyzer.threshold = analyzer_min
        try:
            types, rows = analyzer.frame_rows([np.ascontiguousarray(image_bgr[:, :, ::-1])])[0]
        finally:
            analyzer.threshold = saved
    rows.sort(key=lambda r: (-r["Confidence"], r["Name"]))
    out = {"ModerationLabels": [moderation_label(r) for r in rows],
           "ModerationModelVersion": analyzer.version}
    if analyzer.clip is not None:  # ContentTypes has a signal only with CLIP
        out["ContentTypes"] = types
    return out
