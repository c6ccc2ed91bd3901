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
  otherwise a saliency proxy: the spectral-residual saliency map (Hou & Zhang, CVPR
  2007) of the gray image at 64 x 64, blurred, thresholded at three times its mean,
  upsampled. Background is the rest. Both are left out when the mask is empty or covers
  the whole image.
"""
from __future__ import annotations

import numpy as np

from .colors import dominant_colors

__all__ = ["image_quality", "foreground_mask", "image_properties", "DEFAULT_MAX_DOMINANT_COLORS"]

DEFAULT_MAX_DOMINANT_COLORS = 10
_SHARPNESS_SIDE = 512


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
    import cv2

    h, w = rgb.shape[:2]
    g = cv2.resize(_gray(rgb), (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
    f = np.fft.fft2(g)
    log_amp = np.log(np.abs(f) + 1e-9)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2
    sal = cv2.GaussianBlur(sal, (0, 0), 2.5)
    small = sal > 3.0 * sal.mean()
    return cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


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
