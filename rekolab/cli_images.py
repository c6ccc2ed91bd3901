"""The image commands of ``rekolab`` (wired into :mod:`rekolab.cli`)::

    rekolab detect-faces PHOTO|FOLDER [--attributes ALL | EMOTIONS SMILE ...] [-o faces.parquet|faces.jsonl]
    rekolab detect-labels PHOTO|FOLDER [--min-confidence 55] [--max-labels 20] [--properties]
                          [--include Dog Car] [--exclude Person] [-o labels.parquet|labels.jsonl]
    rekolab compare-faces SOURCE TARGET|FOLDER [--threshold 80] [--quality-filter NONE] [-o ...]

A FOLDER runs the operation on each JPEG/PNG in it (sorted by name). ``-o`` writes one
table for all images (``.parquet``: the notebook verb's DataFrame; ``.jsonl``: one
``{"Image": ..., <the Rekognition response>}`` per line). Exit code 1 when an image was
refused (its error code and message are printed), else 0.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("detect-faces", "detect-labels", "compare-faces")
_SUFFIXES = (".jpg", ".jpeg", ".png")


def add_parsers(sub) -> None:
    p = sub.add_parser("detect-faces", help="detect faces in photos (DetectFaces)")
    p.add_argument("image", help="a JPEG/PNG file or a folder of them")
    p.add_argument("--attributes", nargs="+", default=["DEFAULT"],
                   help="DEFAULT, ALL, or attribute names (AGE_RANGE EMOTIONS SMILE ...)")
    _common(p)
    p = sub.add_parser("detect-labels", help="detect labels and image properties in photos (DetectLabels)")
    p.add_argument("image", help="a JPEG/PNG file or a folder of them")
    p.add_argument("--min-confidence", type=float, default=None, help="0-100 (default 55)")
    p.add_argument("--max-labels", type=int, default=None, help="at most this many labels per image")
    p.add_argument("--properties", action="store_true", help="also IMAGE_PROPERTIES (quality, colours)")
    p.add_argument("--include", nargs="+", default=None, help="LabelInclusionFilters")
    p.add_argument("--exclude", nargs="+", default=None, help="LabelExclusionFilters")
    _common(p)
    p = sub.add_parser("compare-faces", help="compare a face with the faces of other photos (CompareFaces)")
    p.add_argument("source", help="the photo whose largest face is compared")
    p.add_argument("image", help="a target JPEG/PNG file or a folder of them")
    p.add_argument("--threshold", type=float, default=None, help="SimilarityThreshold (default 80)")
    p.add_argument("--quality-filter", choices=["NONE", "AUTO", "LOW", "MEDIUM", "HIGH"], default=None)
    _common(p)


def _common(p) -> None:
    p.add_argument("-o", "--output", type=Path, help="write FILE.parquet or FILE.jsonl")


def _images(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
    return [target]


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def run(args) -> int:
    import rekolab as rk

    target = Path(args.image).expanduser()
    if not target.exists():
        _err(f"{target}: no such file or folder")
        return 1
    images = _images(target)
    if not images:
        _err(f"no JPEG/PNG files in {target}")
        return 1
    client = rk.client()
    call, show, table = _OPS[args.command]
    responses, failed = [], 0
    for path in images:
        try:
            r = call(client, args, path)
        except rk.ClientError as e:
            _err(f"{path}: {e.response['Error']['Code']}: {e.response['Error']['Message']}")
            failed += 1
            continue
        responses.append((str(path), r))
        print(f"{path}: {show(r)}")
    if args.output is not None and responses:
        out = args.output
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() in (".jsonl", ".json"):
            with open(out, "w") as f:
                for name, r in responses:
                    f.write(json.dumps({"Image": name, **r}, default=str) + "\n")
        else:
            import pyarrow.parquet as pq

            pq.write_table(table(responses), out)
        print(f"wrote {out}")
    if len(images) > 1:
        print(f"{len(images) - failed} of {len(images)} images done" + (f", {failed} refused" if failed else ""))
    return 1 if failed else 0


def _bytes(path: Path) -> dict:
    return {"Bytes": path.read_bytes()}


def _faces(client, args, path):
    return client.detect_faces(Image=_bytes(path), Attributes=list(args.attributes))


def _show_faces(r) -> str:
    parts = []
    for f in r["FaceDetails"]:
        b = f["BoundingBox"]
        s = f"[{b['Left']:.2f},{b['Top']:.2f} {b['Width']:.2f}x{b['Height']:.2f} {f['Confidence']:.0f}%"
        if "AgeRange" in f:
            s += f" age {f['AgeRange']['Low']}-{f['AgeRange']['High']}"
        if "Gender" in f:
            s += f" {f['Gender']['Value']}"
        if f.get("Emotions"):
            s += f" {f['Emotions'][0]['Type']}"
        parts.append(s + "]")
    return f"{len(r['FaceDetails'])} faces " + " ".join(parts)


def _labels(client, args, path):
    params = {"Image": _bytes(path)}
    if args.min_confidence is not None:
        params["MinConfidence"] = args.min_confidence
    if args.max_labels is not None:
        params["MaxLabels"] = args.max_labels
    if args.properties:
        params["Features"] = ["GENERAL_LABELS", "IMAGE_PROPERTIES"]
    general = {}
    if args.include:
        general["LabelInclusionFilters"] = list(args.include)
    if args.exclude:
        general["LabelExclusionFilters"] = list(args.exclude)
    if general:
        params["Settings"] = {"GeneralLabels": general}
    return client.detect_labels(**params)


def _show_labels(r) -> str:
    labels = ", ".join(f"{lab['Name']} {lab['Confidence']:.0f}" + (f" ({len(lab['Instances'])} boxes)"
                                                                 if lab["Instances"] else "")
                       for lab in r.get("Labels", []))
    out = f"{len(r.get('Labels', []))} labels: {labels}"
    props = r.get("ImageProperties")
    if props:
        q = props["Quality"]
        colors = ", ".join(f"{c['CSSColor']} {c['PixelPercent']:.0f}%" for c in props["DominantColors"][:5])
        out += (f"\n  quality: brightness {q['Brightness']:.0f}, sharpness {q['Sharpness']:.0f}, "
                f"contrast {q['Contrast']:.0f}; colours: {colors}")
    return out


def _compare(client, args, path):
    params = {"SourceImage": _bytes(Path(args.source).expanduser()), "TargetImage": _bytes(path)}
    if args.threshold is not None:
        params["SimilarityThreshold"] = args.threshold
    if args.quality_filter is not None:
        params["QualityFilter"] = args.quality_filter
    return client.compare_faces(**params)


def _show_compare(r) -> str:
    sims = ", ".join(f"{m['Similarity']:.1f}" for m in r["FaceMatches"])
    return f"{len(r['FaceMatches'])} matches ({sims or '-'}), {len(r['UnmatchedFaces'])} unmatched faces"


def _table(kind):
    def build(responses):
        from .results import images

        return getattr(images, f"{kind}_table")(responses)
    return build


_OPS = {"detect-faces": (_faces, _show_faces, _table("faces")),
        "detect-labels": (_labels, _show_labels, _table("labels")),
        "compare-faces": (_compare, _show_compare, _table("compare"))}
