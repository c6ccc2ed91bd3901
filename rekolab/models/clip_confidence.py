"""CLIP confidence: cosine similarities mapped to a 0..100 Rekognition-like confidence,
independently per label (:func:`clip_confidence`; the formula, its defaults and what is
and is not verified are in its docstring), with one :class:`Calibration` per model family."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Calibration", "CALIBRATIONS", "clip_confidence"]


@dataclass(frozen=True)
class Calibration:
    """Parameters of :func:`clip_confidence` for one model family.

    ``confidence = 100 * sigmoid(scale * (sim - background - offset))``;
    ``background`` says whether the neutral-prompt similarity is subtracted."""

    scale: float
    offset: float
    background: bool = True
    family: str = "clip"


#: Defaults per model family. SigLIP models get theirs from their own learned
#: ``logit_scale``/``logit_bias`` at load time (see :meth:`ClipModel.calibration`).
CALIBRATIONS: dict[str, Calibration] = {
    "clip": Calibration(scale=100.0, offset=0.02, background=True, family="clip"),
}


def clip_confidence(similarities: np.ndarray, background: np.ndarray | float | None = None, *,
                    scale: float = CALIBRATIONS["clip"].scale,
                    offset: float = CALIBRATIONS["clip"].offset) -> np.ndarray:
    """Map image-text cosine similarities to a 0..100 confidence, per label.

    ``similarities`` is ``(L,)`` for one frame or ``(N, L)`` for N frames;
    ``background`` is the frame's similarity to the neutral prompts
    (:data:`NEUTRAL_PROMPTS`), a scalar or ``(N,)``; ``None`` means 0. Returns
    float32 of the same shape as ``similarities``::

        margin     = similarity - background
        confidence = 100 / (1 + exp(-scale * (margin - offset)))

    Each label is scored on its own: this is **not** a softmax over the label set, so
    several labels of one frame can pass ``MinConfidence=50`` together, adding or
    removing labels never changes another label's score, and a frame that matches
    none of them (every label at or below the neutral prompts) scores low for all
    (at most ``100*sigmoid(-scale*offset)``, 12% with the defaults, when a label
    ties the background).

    **Why this form.** ``sigmoid(s*(a-b))`` is exactly CLIP's own softmax over a pair
    of prompts {label, neutral}, at temperature ``s``: the question asked per label is
    "is this frame better described by the label than by 'a photo.'?". Comparing
    with a background of the *same* frame removes the per-image offset of CLIP
    cosines (every caption, even a nonsense string, scores about 0.2 on any image),
    which a fixed threshold on the raw cosine cannot.

    **Defaults (CLIP ViT-B-32 family): scale 100, offset 0.02.**

    - ``scale = 100``: trained OpenAI and LAION CLIPs end at ``logit_scale = ln 100``
      (open_clip clamps it there in training), so 100 is the temperature the model
      was trained to compare similarities at.
    - ``offset = 0.02``: a label needs a cosine margin of 0.02 over the neutral
      prompts for 50; +0.03 gives 73, +0.04 gives 88, +0.05 gives 95, 0 gives 12,
      -0.02 gives 2. Evidence for ViT-B/32 similarity ranges:

      * LAION-400M kept image/alt-text pairs with ViT-B/32 cosine >= 0.3 ("lower
        values like 0.28 or 0.29 also seemed okay"), LAION-5B used 0.28: true
        captions sit around 0.28-0.35.
      * openai/CLIP issue #405 (ViT-B/32, "An image depicting a {}"): a vehicle
        image scored 0.25 with "vehicle", 0.22 with "motor", 0.19 with "Computer".
      * haltakov/natural-language-youtube-search issue #7 (ViT-B/32): the best frame
        for "car" scored 0.2665, and for the nonsense query "sdfsdflksdfj" still
        0.2155, i.e. a caption that says nothing scores ~0.21 and a true one-word
        label beats it by ~0.05 (95 here).
      * CLIPScore (Hessel et al., 2021) rescales cosines by w=2.5 because they
        rarely exceed 0.4.

      So a true label beats the neutral prompts by roughly 0.03-0.08 (73-99) and an
      absent one scores at or below them (<= 12).

    SigLIP-family models are trained with exactly this per-pair sigmoid loss; for them
    :meth:`ClipModel.calibration` uses the model's own ``exp(logit_scale)`` as scale and
    ``-logit_bias/exp(logit_scale)`` as offset, with no background.

    **Not verified here:** no real CLIP checkpoint could be obtained in this
    environment, so the numbers above were not measured on the test media; the
    background uses the mean embedding of an ensemble of neutral prompts (not a
    single prompt as in the evidence), and prompt ensembles shift both sides. Tune
    ``scale``/``offset`` on real data before relying on absolute confidences; the
    ordering of labels does not depend on them.
    """
    sims = np.asarray(similarities, dtype=np.float64)
    if background is not None:
        bg = np.asarray(background, dtype=np.float64)
        if bg.ndim == 1 and sims.ndim == 2:
            bg = bg[:, None]
        sims = sims - bg
    z = float(scale) * (sims - float(offset))
    conf = 50.0 * (1.0 + np.tanh(0.5 * z))  # = 100 * sigmoid(z), without overflow
    return np.clip(conf, 0.0, 100.0).astype(np.float32)
