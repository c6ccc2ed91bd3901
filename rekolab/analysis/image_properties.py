"""DetectLabels' ``ImageProperties``: Quality, DominantColors, Foreground and Background.

* **Quality** of a region (OpenCV gray, 0..255):
  ``Brightness = 100 * mean(gray) / 255``;
  ``Sharpness = 100 * (1 - exp(-var(Laplacian) / 300))`` of the gray image resized to
  at most 512 px on its long side (the formula face ``Quality.Sharpness`` uses, so the
  two scales agree); ``Contrast = 100 * min(1, std(gray) / 127.5)`` (RMS contrast: a
  half-black, half-white image is 100). Foreground and Background carry Brightness and
  Sharpness only, as Rekognition's responses do.
* **DominantColors**: :func:`rekolab.analysis.colors.dominant_colors`.
* **Foreground / Background**: the foreground mask is the union of the label detector's
  instance boxes (YOLOX, at or above the request's MinConfidence) when it found any;
  otherwise a saliency proxy with a boundary prior (the image's border is background):
  at <= 128 px, each pixel's CIELAB distance to the nearest of 3 k-means colours of the
  border (5 % of the short side), thresholded by Otsu and at 15 Delta E, upsampled.
  Background is the rest. Both are left out when the mask is empty or covers
  the whole image.
"""
from __future__ import annotations

import numpy as np

from .colors import dominant_colors

__all__ = ["image_quality", "foreground_mask", "image_properties", "DEFAULT_MAX_DOMINANT_COLORS"]

DEFAULT_MAX_DOMINANT_COLORS = 10
_SHARPNESS_SIDE = 512
_BORDER_CLUSTERS = 3
_SALIENT_DELTA_E = 15.0


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def image_quality(rgb: np.ndarray, mask: np.ndarray | None = None, contrast: bool = True) -> dict:
    """``{Brightness, Sharpness[, Contrast]}`` of an RGB image (of ``mask``'s pixels)."""
    import cv2

    gray = _gray(rgb)
    h, w = gray.shape
    scale = min(1.0, _SHARPNESS_SIDE / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else gray
    lap = cv2.Laplacian(small.astype(np.float64), cv2.CV_64F)
    values = gray if mask is None else gray[mask]
    if mask is not None:
        small_mask = cv2.resize(mask.astype(np.uint8), small.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        lap = lap[small_mask]
    out = {"Brightness": float(100.0 * values.mean() / 255.0) if values.size else 0.0,
           "Sharpness": float(100.0 * (1.0 - np.exp(-lap.var() / 300.0))) if lap.size else 0.0}
    if contrast:
        out["Contrast"] = float(100.0 * min(1.0, values.std() / 127.5)) if values.size else 0.0
    return out


def _saliency_mask(rgb: np.ndarray) -> np.ndarray:
    """Boundary-prior saliency: pixels whose colour is far (CIELAB) from every colour of
    the image's border are foreground."""
    import cv2

    from .colors import rgb_to_lab

    h, w = rgb.shape[:2]
    scale = min(1.0, 128 / max(h, w))
    small = cv2.resize(np.ascontiguousarray(rgb), (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    lab = rgb_to_lab(small).astype(np.float32)
    sh, sw = lab.shape[:2]
    b = max(1, round(0.05 * min(sh, sw)))
    border = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3),
                             lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])
    k = int(min(_BORDER_CLUSTERS, len(np.unique(border.round(1), axis=0))))
    if k > 1:
        cv2.setRNGSeed(12345)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, _, centers = cv2.kmeans(border, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    else:
        centers = border.mean(0, keepdims=True)
    dist = np.sqrt(((lab[:, :, None, :] - centers[None, None]) ** 2).sum(-1)).min(-1)
    dist = cv2.GaussianBlur(dist, (0, 0), 1.0)
    scaled = np.clip(dist * (255.0 / max(float(dist.max()), 1e-6)), 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    small_mask = (scaled > otsu) & (dist > _SALIENT_DELTA_E)
    return cv2.resize(small_mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def foreground_mask(rgb: np.ndarray, boxes: list[dict]) -> tuple[np.ndarray, str]:
    """(H, W) bool foreground and the method used (``"instances"`` or ``"saliency"``)."""
    h, w = rgb.shape[:2]
    if boxes:
        mask = np.zeros((h, w), bool)
        for b in boxes:
            x0, y0 = max(0, int(b["Left"] * w)), max(0, int(b["Top"] * h))
            x1 = min(w, int(np.ceil((b["Left"] + b["Width"]) * w)))
            y1 = min(h, int(np.ceil((b["Top"] + b["Height"]) * h)))
            mask[y0:y1, x0:x1] = True
        return mask, "instances"
    return _saliency_mask(rgb), "saliency"


def image_properties(rgb: np.ndarray, boxes: list[dict], max_colors: int = DEFAULT_MAX_DOMINANT_COLORS) -> dict:
    """The ``ImageProperties`` member of a DetectLabels response."""
    out = {"Quality": image_quality(rgb), "DominantColors": dominant_colors(rgb, max_colors)}
    mask, _ = foreground_mask(rgb, boxes)
    if mask.any() and not mask.all():
        out["Foreground"] = {"Quality": image_quality(rgb, mask, contrast=False),
                             "DominantColors": dominant_colors(rgb, max_colors, mask)}
        out["Background"] = {"Quality": image_quality(rgb, ~mask, contrast=False),
                             "DominantColors": dominant_colors(rgb, max_colors, ~mask)}
    return out
