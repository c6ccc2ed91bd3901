"""Dominant colours of pixels, named as Rekognition names them.

One module for every ``DominantColors`` list rekolab returns: DetectLabels'
``ImageProperties`` (whole image, Foreground, Background), its ``Instances[]`` and the
video label job's ``Instances[]``.

Method (:func:`dominant_colors`):

1. the pixels are subsampled (nearest neighbour: no blended colours are made) to at most
   128 x 128 and converted to CIELAB (OpenCV, D65), where Euclidean distance approximates perceived difference;
2. k-means (``cv2.kmeans``, k-means++ seeding, fixed RNG seed, so results repeat) groups
   them into up to 12 clusters (an instance's box: up to 6, at most 48 x 48 pixels);
3. clusters whose centres are less than 10 Delta E apart (barely distinguishable) are
   merged, closest first, so one colour split by k-means counts once;
4. each cluster centre is snapped to the nearest of the 138 distinct CSS3 colours (CIE76
   distance in CIELAB); clusters that snap to the same CSS colour are merged;
5. ``PixelPercent`` is the share of the pixels in each CSS colour, largest first;
   ``Red/Green/Blue/HexCode`` are the CSS colour's own values (``"#2f4f4f"``), as
   Rekognition's responses show, ``CSSColor`` its name and ``SimplifiedColor`` one of
   :data:`SIMPLIFIED_COLORS` (by :func:`simplified_color`).

Where CSS3 has two spellings of a colour, the one Rekognition's responses show is used
(``darkslategrey``, ``dimgrey``, ``gray``), else the first alphabetically (``aqua``,
``fuchsia``, ``darkgray``, ...).
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["CSS_COLORS", "SIMPLIFIED_COLORS", "dominant_colors", "nearest_css_color", "simplified_color",
           "rgb_to_lab", "box_colors", "MAX_CLUSTERS", "INSTANCE_COLORS"]

#: name -> hex, the CSS3 extended colour keywords (one name per distinct colour).
_CSS_TABLE = """
aliceblue:f0f8ff antiquewhite:faebd7 aqua:00ffff aquamarine:7fffd4 azure:f0ffff beige:f5f5dc
bisque:ffe4c4 black:000000 blanchedalmond:ffebcd blue:0000ff blueviolet:8a2be2 brown:a52a2a
burlywood:deb887 cadetblue:5f9ea0 chartreuse:7fff00 chocolate:d2691e coral:ff7f50
cornflowerblue:6495ed cornsilk:fff8dc crimson:dc143c darkblue:00008b darkcyan:008b8b
darkgoldenrod:b8860b darkgray:a9a9a9 darkgreen:006400 darkkhaki:bdb76b darkmagenta:8b008b
darkolivegreen:556b2f darkorange:ff8c00 darkorchid:9932cc darkred:8b0000 darksalmon:e9967a
darkseagreen:8fbc8f darkslateblue:483d8b darkslategrey:2f4f4f darkturquoise:00ced1
darkviolet:9400d3 deeppink:ff1493 deepskyblue:00bfff dimgrey:696969 dodgerblue:1e90ff
firebrick:b22222 floralwhite:fffaf0 forestgreen:228b22 fuchsia:ff00ff gainsboro:dcdcdc
ghostwhite:f8f8ff gold:ffd700 goldenrod:daa520 gray:808080 green:008000 greenyellow:adff2f
honeydew:f0fff0 hotpink:ff69b4 indianred:cd5c5c indigo:4b0082 ivory:fffff0 khaki:f0e68c
lavender:e6e6fa lavenderblush:fff0f5 lawngreen:7cfc00 lemonchiffon:fffacd lightblue:add8e6
lightcoral:f08080 lightcyan:e0ffff lightgoldenrodyellow:fafad2 lightgray:d3d3d3
lightgreen:90ee90 lightpink:ffb6c1 lightsalmon:ffa07a lightseagreen:20b2aa lightskyblue:87cefa
lightslategray:778899 lightsteelblue:b0c4de lightyellow:ffffe0 lime:00ff00 limegreen:32cd32
linen:faf0e6 maroon:800000 mediumaquamarine:66cdaa mediumblue:0000cd mediumorchid:ba55d3
mediumpurple:9370db mediumseagreen:3cb371 mediumslateblue:7b68ee mediumspringgreen:00fa9a
mediumturquoise:48d1cc mediumvioletred:c71585 midnightblue:191970 mintcream:f5fffa
mistyrose:ffe4e1 moccasin:ffe4b5 navajowhite:ffdead navy:000080 oldlace:fdf5e6 olive:808000
olivedrab:6b8e23 orange:ffa500 orangered:ff4500 orchid:da70d6 palegoldenrod:eee8aa
palegreen:98fb98 paleturquoise:afeeee palevioletred:db7093 papayawhip:ffefd5 peachpuff:ffdab9
peru:cd853f pink:ffc0cb plum:dda0dd powderblue:b0e0e6 purple:800080 red:ff0000 rosybrown:bc8f8f
royalblue:4169e1 saddlebrown:8b4513 salmon:fa8072 sandybrown:f4a460 seagreen:2e8b57
seashell:fff5ee sienna:a0522d silver:c0c0c0 skyblue:87ceeb slateblue:6a5acd slategray:708090
snow:fffafa springgreen:00ff7f steelblue:4682b4 tan:d2b48c teal:008080 thistle:d8bfd8
tomato:ff6347 turquoise:40e0d0 violet:ee82ee wheat:f5deb3 white:ffffff whitesmoke:f5f5f5
yellow:ffff00 yellowgreen:9acd32
"""
CSS_COLORS: dict[str, str] = dict(item.split(":") for item in _CSS_TABLE.split())

#: The simplified colour names Rekognition uses.
SIMPLIFIED_COLORS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple",
                     "pink", "brown")
MAX_CLUSTERS = 12
#: Colours given per detected instance (video label jobs and DetectLabels' Instances).
INSTANCE_COLORS = 3
_MAX_SIDE = 128
_INSTANCE_SIDE = 48
#: Cluster centres closer than this (CIE76 Delta E) are one colour.
MERGE_DELTA_E = 10.0


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> float32 CIELAB (L 0..100)."""
    import cv2

    arr = np.asarray(rgb, dtype=np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(arr, cv2.COLOR_RGB2LAB).reshape(np.shape(rgb)[:-1] + (3,))


@functools.lru_cache(maxsize=1)
def _palette() -> tuple[list[str], np.ndarray, np.ndarray]:
    names = list(CSS_COLORS)
    rgb = np.array([[int(CSS_COLORS[n][i:i + 2], 16) for i in (0, 2, 4)] for n in names], dtype=np.uint8)
    return names, rgb, rgb_to_lab(rgb)


def nearest_css_color(lab: np.ndarray) -> np.ndarray:
    """Index into ``list(CSS_COLORS)`` of the nearest CSS colour of each (N, 3) Lab row."""
    _, _, pal = _palette()
    d = ((np.asarray(lab, np.float32)[:, None, :] - pal[None, :, :]) ** 2).sum(-1)
    return d.argmin(1)


def simplified_color(rgb) -> str:
    """One of :data:`SIMPLIFIED_COLORS` for an RGB triple, by hue, saturation and
    lightness (HLS): low saturation or extreme lightness is black / grey / white; else
    the hue's family, with dark oranges/yellows as brown and light reds/magentas as pink."""
    import colorsys

    r, g, b = (float(v) / 255.0 for v in rgb)
    h, l, s = colorsys.rgb_to_hls(r, g, b)
    hue = h * 360.0
    chroma = max(r, g, b) - min(r, g, b)
    if l < 0.12 or (chroma < 0.08 and l < 0.25):
        return "black"
    if chroma < 0.14 or s < 0.12:
        return "white" if l > 0.85 else "grey"
    if l > 0.94:
        return "white"
    if hue < 15 or hue >= 345:
        if l > 0.7:
            return "pink"
        return "brown" if l < 0.3 and s < 0.6 else "red"
    if hue < 45:
        return "brown" if l < 0.45 or (s < 0.45 and l < 0.7) else ("pink" if l > 0.8 else "orange")
    if hue < 70:
        if l < 0.35:
            return "green" if hue >= 55 else "brown"
        return "brown" if s < 0.35 and l < 0.75 else "yellow"
    if hue < 165:
        return "green"
    if hue < 260:
        return "blue"
    if hue < 290:
        return "purple"
    return "pink" if l > 0.6 else "purple"


def _color(index: int, share: float) -> dict:
    names, rgb, _ = _palette()
    r, g, b = (int(v) for v in rgb[index])
    return {"Red": r, "Blue": b, "Green": g, "HexCode": "#" + CSS_COLORS[names[index]],
            "CSSColor": names[index], "SimplifiedColor": simplified_color((r, g, b)),
            "PixelPercent": float(100.0 * share)}


def _resample(rgb: np.ndarray, mask: np.ndarray | None, max_side: int) -> tuple[np.ndarray, np.ndarray | None]:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_NEAREST)
        if mask is not None:
            mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return rgb, mask


def dominant_colors(rgb: np.ndarray, max_colors: int = 10, mask: np.ndarray | None = None,
                    clusters: int = MAX_CLUSTERS, max_side: int = _MAX_SIDE) -> list[dict]:
    """Rekognition ``DominantColor`` dicts of an (H, W, 3) uint8 RGB image, largest share
    first, at most ``max_colors``; ``mask`` (H, W) bool selects the pixels counted
    (Foreground / Background). PixelPercent is the share of the selected pixels."""
    import cv2

    if max_colors <= 0:
        return []
    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3])
    rgb, mask = _resample(rgb, mask, max_side)
    pixels = rgb.reshape(-1, 3) if mask is None else rgb[mask]
    if len(pixels) == 0:
        return []
    lab = rgb_to_lab(pixels).reshape(-1, 3).astype(np.float32)
    packed = (pixels[:, 0].astype(np.int32) << 16) | (pixels[:, 1].astype(np.int32) << 8) | pixels[:, 2]
    k = int(min(clusters, len(np.unique(packed))))
    if k <= 1:
        labels = np.zeros(len(lab), np.int32)
        centers = lab.mean(0, keepdims=True)
    else:
        cv2.setRNGSeed(12345)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, labels, centers = cv2.kmeans(lab, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
        labels = labels.ravel()
    counts = np.bincount(labels, minlength=len(centers)).astype(np.float64)
    centers, counts = _merge_close(np.asarray(centers, np.float64), counts)
    css = nearest_css_color(centers)
    share: dict[int, float] = {}
    for c, n in zip(css.tolist(), counts.tolist()):
        if n:
            share[c] = share.get(c, 0.0) + n
    total = float(counts.sum())
    ranked = sorted(share.items(), key=lambda t: (-t[1], t[0]))[:max_colors]
    return [_color(c, n / total) for c, n in ranked]


def _merge_close(centers: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge the two closest cluster centres (count-weighted mean) while they are less than
    :data:`MERGE_DELTA_E` apart: k-means splits one colour into several clusters, whose
    centres would otherwise snap to neighbouring CSS colours."""
    centers, counts = centers[counts > 0], counts[counts > 0]
    while len(centers) > 1:
        d = np.sqrt(((centers[:, None, :] - centers[None, :, :]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        if d[i, j] >= MERGE_DELTA_E:
            break
        w = counts[i] + counts[j]
        centers[i] = (centers[i] * counts[i] + centers[j] * counts[j]) / w
        counts[i] = w
        centers, counts = np.delete(centers, j, 0), np.delete(counts, j)
    return centers, counts


def box_colors(rgb: np.ndarray, box: dict, max_colors: int = INSTANCE_COLORS) -> list[dict]:
    """``DominantColors`` of the pixels inside a ratio ``BoundingBox`` of an RGB image
    (an Instance's colours); [] for a box with no pixels."""
    h, w = rgb.shape[:2]
    x0 = int(np.clip(np.floor(box["Left"] * w), 0, w))
    y0 = int(np.clip(np.floor(box["Top"] * h), 0, h))
    x1 = int(np.clip(np.ceil((box["Left"] + box["Width"]) * w), 0, w))
    y1 = int(np.clip(np.ceil((box["Top"] + box["Height"]) * h), 0, h))
    if x1 <= x0 or y1 <= y0:
        return []
    return dominant_colors(rgb[y0:y1, x0:x1], max_colors, clusters=6, max_side=_INSTANCE_SIDE)
