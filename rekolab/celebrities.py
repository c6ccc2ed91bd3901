"""Celebrity galleries: the people rekolab's celebrity recognition knows.

Rekognition recognizes celebrities against a private gallery nobody can
download. rekolab's gallery is the user's own: named people with Rekognition's
metadata (``Id``, ``Name``, ``Urls``, ``KnownGender``) and one or more reference
faces each, built from photos in a notebook and shared as one file::

    import rekolab as rk
    gallery = rk.celebrities.gallery()                  # <rekolab home>/celebrities
    gallery.add("Barack Obama", images=["obama.jpg", "obama2.jpg"],
                urls=["www.wikidata.org/wiki/Q76"], known_gender="Male")
    gallery.add_folder("people/")                       # one sub-folder per person
    gallery.recognize("still.jpg")                      # a RecognizeCelebrities response
    gallery.export("people.zip")                        # a colleague: .import_("people.zip")

**Ids** are derived from the name, so the same person has the same Id in every
gallery, after every export and import: ``Id = base62(first 8 bytes of
sha256("rekolab-celebrity:" + normalised name)) mod 62**8``, 8 characters of
``[0-9A-Za-z]`` (Rekognition's ``RekognitionUniqueId`` pattern). The name is
normalised with Unicode NFKC, surrounding and repeated whitespace collapsed and
``casefold()``, so "Barack Obama" and "barack  obama" are one person. Two names
with the same Id (a hash collision) are refused; ``id=`` gives one of them an
explicit Id instead.

**Storage.** A gallery is a folder: ``gallery.parquet`` (one row per reference
face: person metadata, face box, 5 keypoints, detector confidence, embedding)
and ``images/<sha256>.<ext>``, a copy of every reference photo, so the gallery
can be re-embedded with another face model. Every write replaces
``gallery.parquet`` atomically (readers see the old or the new gallery); two
processes writing the same gallery at once is last-writer-wins.

**Face model.** The gallery records the face model that made its embeddings
(pack, recognizer file, its sha256 and dimension) and refuses to be searched or
extended with another one (``InvalidParameterException``); :meth:`Gallery.reembed`
re-embeds every stored photo with the current model.

The store (ids, the parquet file, face-model identity, search snapshots) is
:mod:`rekolab.celebrity_store`; the operations (RecognizeCelebrities,
GetCelebrityInfo) are :mod:`rekolab.celebrity_ops`, re-exported here.

Nothing heavy is imported here at module level: ``import rekolab`` stays light.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import unicodedata
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa

from . import store
from .celebrity_ops import celebrity_info, check_start, recognize_celebrities  # noqa: F401 (re-exported)
from .celebrity_store import (DEFAULT_MIN_CONFIDENCE, FORMAT_VERSION, GALLERY_FILE, ID_LENGTH,  # noqa: F401
                              MAX_FACES_PER_IMAGE, GalleryMatcher, celebrity_id, default_gallery_path,
                              face_model_info, normalize_name)
from .celebrity_store import (_GALLERY_SCHEMA, _ID_PATTERN, _META_KEY, GalleryStore, _aligned_kps,
                              _describe_model, _face_pack, _person, _same_model)
from .errors import (InvalidImageFormatException, InvalidParameterException,
                     ResourceAlreadyExistsException, ResourceNotFoundException)
from .images import decode_image as _decode
from .images import image_kind as _image_kind

__all__ = [
    "Gallery",
    "GalleryMatcher",
    "gallery",
    "default_gallery_path",
    "celebrity_id",
    "normalize_name",
    "face_model_info",
    "DEFAULT_MIN_CONFIDENCE",
    "KNOWN_GENDERS",
]

KNOWN_GENDERS = ("Male", "Female", "Nonbinary", "Unlisted")
MAX_URLS = 255  # the service model's Urls max
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_FACE_NAMESPACE = uuid.UUID("6f1b7a52-5c1e-4f0a-9a57-3a1b2c4d5e6f")


def gallery(path: str | os.PathLike | None = None) -> "Gallery":
    """The celebrity gallery at ``path`` (default: the one in the rekolab home)."""
    return Gallery(path)


# --------------------------------------------------------------------------- images
# Decoding and the Image member (Bytes / S3Object) are rekolab/images.py, shared with
# the collections: _decode = images.decode_image, _image_kind = images.image_kind.
def _cv2():
    from .models import require

    return require("cv2", "video")


def _load_image(image: Any) -> tuple[bytes, str]:
    """(bytes, display name) from a path or encoded bytes."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "<bytes>"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise InvalidParameterException(f"image not found: {path} (give the path of a photo)")
        return path.read_bytes(), str(path)
    raise InvalidParameterException(
        f"an image must be a file path or encoded image bytes, not {type(image).__name__}")


# --------------------------------------------------------------------------- gallery
class Gallery(GalleryStore):
    """A celebrity gallery folder (created on the first write).

    Reading methods: :meth:`people` (alias :meth:`list`), :meth:`get`,
    :meth:`find`, :meth:`faces`, :meth:`to_pandas`, ``len(gallery)``,
    ``"Barack Obama" in gallery``. Writing methods: :meth:`add`,
    :meth:`add_folder`, :meth:`update`, :meth:`remove`, :meth:`remove_face`,
    :meth:`clear`, :meth:`import_`, :meth:`reembed`. Sharing: :meth:`export`.
    """

    def recognize(self, image, *, min_confidence: float | None = None) -> dict:
        """RecognizeCelebrities on one photo (a path or bytes) against this gallery."""
        data, _ = _load_image(image)
        params: dict = {"Image": {"Bytes": data}, "CelebrityGallery": str(self.path)}
        if min_confidence is not None:
            params["MinConfidence"] = min_confidence
        return recognize_celebrities(params, {})

    # -- writing -----------------------------------------------------------------------
    def add(self, name: str, images: Sequence | str | os.PathLike | bytes = (), *,
            urls: Iterable[str] | None = None, known_gender: str | None = None, id: str | None = None,
            face: int | str | None = None, aligned: bool = False, pack=None) -> dict:
        """Add a person, or more reference faces (and metadata) to a known person.

        ``images``: photo paths (or encoded bytes), each showing the person's face.
        A photo with no face, or with several faces, is refused
        (``InvalidParameterException``) unless ``face`` chooses one: ``"largest"``,
        or an index into the faces ordered largest first. ``aligned=True`` takes
        square, pre-aligned face crops (e.g. 112x112 ArcFace crops) as they are.
        ``urls``, ``known_gender`` (Male, Female, Nonbinary, Unlisted) replace the
        person's metadata when given. ``id`` overrides the name-derived Id (only for
        a new person). Returns the person's ``{Id, Name, Urls, KnownGender, Faces}``.
        """
        if isinstance(images, (str, os.PathLike, bytes, bytearray)):
            images = [images]
        images = list(images)
        name = _check_name(name)
        urls = _check_urls(urls)
        known_gender = _check_gender(known_gender)
        with self._lock:
            rows, meta = self._read()
            person = self._resolve_person(rows, name, id)
            if not images and not any(r["Id"] == person["Id"] for r in rows):
                raise InvalidParameterException(
                    f"give at least one photo of {name!r}: gallery.add({name!r}, images=['photo.jpg'])")
            pack = pack or _face_pack()
            model = self._model_for_write(meta, pack)
            new = [self._reference(pack, image, person, face, aligned) for image in images]
            rows = self._merge(rows, new, person, urls, known_gender)
            self._write(rows, model)
        return self.get(person["Id"])

    def add_folder(self, folder: str | os.PathLike, *, face: int | str | None = None,
                   skip_invalid: bool = False, pack=None) -> list[dict]:
        """Add one person per sub-folder of ``folder``.

        The sub-folder's name is the person's name (``_`` reads as a space), and
        every image in it (``.jpg .jpeg .png .bmp .webp .tif .tiff``) is a reference
        photo. An optional ``person.json`` in the sub-folder gives ``Name``,
        ``Urls``, ``KnownGender`` and ``Id``. All or nothing: a bad photo refuses the
        whole folder, naming every bad file, unless ``skip_invalid=True`` (bad photos
        are then skipped with a warning). Returns the people added or extended."""
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise InvalidParameterException(f"folder not found: {root} (give a folder with one sub-folder per person)")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subdirs:
            raise InvalidParameterException(
                f"{root} has no sub-folders; put each person's photos in a sub-folder named after them")
        pack = pack or _face_pack()
        with self._lock:
            rows, meta = self._read()
            model = self._model_for_write(meta, pack)
            problems, skipped, touched = [], [], []
            for sub in subdirs:
                info = _read_person_json(sub)
                name = _check_name(info.get("Name") or sub.name.replace("_", " "))
                urls = _check_urls(info.get("Urls"))
                gender = _check_gender(info.get("KnownGender"))
                photos = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                if not photos:
                    problems.append(f"{sub}: no photos ({', '.join(IMAGE_SUFFIXES)})")
                    continue
                try:
                    person = self._resolve_person(rows, name, info.get("Id"))
                except Exception as exc:  # collisions: reported with the rest
                    problems.append(f"{sub}: {getattr(exc, 'message', exc)}")
                    continue
                new = []
                for photo in photos:
                    try:
                        new.append(self._reference(pack, photo, person, face, False))
                    except (InvalidParameterException, InvalidImageFormatException) as exc:
                        (skipped if skip_invalid else problems).append(f"{photo}: {exc.message}")
                if new:
                    rows = self._merge(rows, new, person, urls, gender)
                    touched.append(person["Id"])
            if problems:
                raise InvalidParameterException(
                    f"add_folder({str(root)!r}) refused, nothing was added:\n  " + "\n  ".join(problems))
            if skipped:
                warnings.warn("add_folder skipped photos:\n  " + "\n  ".join(skipped), stacklevel=2)
            self._write(rows, model)
        return [self.get(i) for i in dict.fromkeys(touched)]

    def update(self, person: str, *, urls: Iterable[str] | None = None,
               known_gender: str | None = None) -> dict:
        """Replace a person's Urls and/or KnownGender (``"Unlisted"`` etc.)."""
        urls = _check_urls(urls)
        known_gender = _check_gender(known_gender)
        with self._lock:
            pid = self._require(person)["Id"]
            rows, meta = self._read()
            for r in rows:
                if r["Id"] == pid:
                    if urls is not None:
                        r["Urls"] = urls
                    if known_gender is not None:
                        r["KnownGender"] = known_gender
            self._write(rows, meta.get("FaceModel"))
        return self.get(pid)

    def remove(self, person: str) -> dict:
        """Remove a person (by name or Id) and their reference faces and photos."""
        with self._lock:
            found = self._require(person)
            rows, meta = self._read()
            self._write([r for r in rows if r["Id"] != found["Id"]], meta.get("FaceModel"))
        return found

    def remove_face(self, face_id: str) -> dict:
        """Remove one reference face; a person left with none is removed too."""
        with self._lock:
            rows, meta = self._read()
            gone = [r for r in rows if r["FaceId"] == face_id]
            if not gone:
                raise ResourceNotFoundException(f"face {face_id!r} is not in the celebrity gallery at {self.path}")
            self._write([r for r in rows if r["FaceId"] != face_id], meta.get("FaceModel"))
        return _person(gone[0])

    def clear(self) -> None:
        """Remove every person."""
        with self._lock:
            self._write([], None)

    def reembed(self, pack=None) -> "Gallery":
        """Re-embed every stored photo with the current face model (the migration
        path after a model change). Each face is found again by the new detector
        (the detection that overlaps the stored box most, IoU >= 0.3); aligned
        crops are re-embedded as they are."""
        pack = pack or _face_pack()
        with self._lock:
            rows, _ = self._read()
            model = face_model_info(pack)
            self._write(self._reembed_rows(rows, pack), model)
        return self

    def _reembed_rows(self, rows: list[dict], pack) -> list[dict]:
        from .analysis.tracking import iou_matrix

        problems = []
        for r in rows:
            img = _decode((self.path / r["Image"]).read_bytes(), r["Image"])
            if r["Aligned"]:
                crop, kps = _aligned_input(img, pack)
                r["Embedding"] = _embed(pack, crop, kps)[0].tolist()
                continue
            h, w = img.shape[:2]
            b = r["BoundingBox"]
            stored = np.array([[b["Left"] * w, b["Top"] * h,
                                (b["Left"] + b["Width"]) * w, (b["Top"] + b["Height"]) * h]])
            boxes, scores, kps = pack.detect(img)
            iou = iou_matrix(stored, boxes)[0] if len(boxes) else np.zeros(0)
            if len(iou) == 0 or iou.max() < 0.3:
                problems.append(
                    f"{r['Name']}: {r['Source']} (face {r['FaceId']}) - the new detector finds no face there")
                continue
            j = int(np.argmax(iou))
            r["Embedding"] = _embed(pack, img, kps[j:j + 1])[0].tolist()
            r["Keypoints"] = kps[j].reshape(-1).tolist()
            r["Confidence"] = float(scores[j]) * 100.0
        if problems:
            raise InvalidParameterException(
                "re-embedding failed, the gallery is unchanged; remove these faces "
                "(gallery.remove_face(FaceId)) and retry:\n  " + "\n  ".join(problems))
        return rows

    # -- sharing -----------------------------------------------------------------------
    def export(self, path: str | os.PathLike) -> Path:
        """Write the whole gallery (``gallery.parquet`` + the photos) to one ``.zip``
        file that :meth:`import_` reads on another machine."""
        path = Path(path).expanduser()
        with self._lock:
            rows, _ = self._read()
            if not rows:
                raise InvalidParameterException(f"the celebrity gallery at {self.path} is empty; nothing to export")
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
                z.writestr(GALLERY_FILE, self.file.read_bytes())
                for image in sorted({r["Image"] for r in rows}):
                    z.writestr(image, (self.path / image).read_bytes())
        store.atomic_write_bytes(path.resolve(), buf.getvalue())
        return path

    def import_(self, path: str | os.PathLike, *, reembed: bool = False, pack=None) -> list[dict]:
        """Merge a gallery file written by :meth:`export` into this gallery.

        People are matched by Id (derived from the name, so stable across
        galleries); their reference faces are added (duplicates skipped) and the
        imported Urls/KnownGender win. A file embedded with another face model is
        refused unless this gallery is empty or ``reembed=True`` (every face is
        then re-embedded with the current model). Returns the imported people."""
        path = Path(path).expanduser()
        incoming, their_model, images = _read_export(path)
        with self._lock:
            rows, meta = self._read()
            ours = meta.get("FaceModel") if rows else None
            model = their_model
            if ours is not None and not _same_model(ours, their_model):
                if not reembed:
                    raise InvalidParameterException(
                        f"{path} was embedded with {_describe_model(their_model)}, this gallery with "
                        f"{_describe_model(ours)}; pass reembed=True to re-embed every face with the "
                        "current model")
                model = ours
            by_id = {r["Id"]: normalize_name(r["Name"]) for r in rows}
            by_name = {normalize_name(r["Name"]): r["Id"] for r in rows}
            for r in incoming:
                key = normalize_name(r["Name"])
                if by_id.get(r["Id"], key) != key or by_name.get(key, r["Id"]) != r["Id"]:
                    raise ResourceAlreadyExistsException(
                        f"cannot import {r['Name']!r} (Id {r['Id']}): this gallery has "
                        f"{'Id ' + r['Id'] if r['Id'] in by_id else repr(r['Name'])} for another person")
            for image, data in images.items():
                target = self.path / image
                if not target.exists():
                    store.atomic_write_bytes(target, data)
            ids = {r["Id"] for r in incoming}
            meta_of = {r["Id"]: r for r in incoming}
            have = {r["FaceId"] for r in rows}
            merged = [dict(r, Urls=meta_of[r["Id"]]["Urls"], KnownGender=meta_of[r["Id"]]["KnownGender"])
                      if r["Id"] in ids else r for r in rows]
            merged += [r for r in incoming if r["FaceId"] not in have]
            if reembed or (ours is not None and not _same_model(ours, their_model)):
                pack = pack or _face_pack()
                merged = self._reembed_rows(merged, pack)
                model = face_model_info(pack)
            self._write(merged, model)
        return [self.get(i) for i in dict.fromkeys(r["Id"] for r in incoming)]

    # -- helpers -----------------------------------------------------------------------
    def _resolve_person(self, rows: list[dict], name: str, id: str | None) -> dict:
        key = normalize_name(name)
        existing = next((r for r in rows if normalize_name(r["Name"]) == key), None)
        if id is not None:
            if not isinstance(id, str) or not _ID_PATTERN.fullmatch(id) or len(id) > 64:
                raise InvalidParameterException(f"id {id!r} must be 1-64 characters of [0-9A-Za-z]")
        if existing is not None:
            if id is not None and id != existing["Id"]:
                raise InvalidParameterException(
                    f"{existing['Name']!r} is already in the gallery with Id {existing['Id']}; "
                    "remove them first to change the Id")
            return {"Id": existing["Id"], "Name": existing["Name"]}
        pid = id or celebrity_id(name)
        clash = next((r for r in rows if r["Id"] == pid), None)
        if clash is not None:
            raise ResourceAlreadyExistsException(
                f"the Id {pid} of {name!r} already belongs to {clash['Name']!r}; "
                f"pass id='...' to give {name!r} another Id")
        return {"Id": pid, "Name": name}

    def _model_for_write(self, meta: dict, pack) -> dict:
        current = face_model_info(pack)
        stored = meta.get("FaceModel")
        if stored is not None and not _same_model(stored, current):
            raise InvalidParameterException(
                f"the celebrity gallery at {self.path} was embedded with {_describe_model(stored)}, "
                f"but the loaded face model is {_describe_model(current)}; run gallery.reembed() "
                "before adding faces")
        return current

    def _reference(self, pack, image, person: dict, face, aligned: bool) -> dict:
        data, source = _load_image(image)
        img = _decode(data, source)
        h, w = img.shape[:2]
        if aligned:
            crop, kps = _aligned_input(img, pack)
            box, score = [0.0, 0.0, float(w), float(h)], 1.0
            emb = _embed(pack, crop, kps)
            kps_out = kps.reshape(-1) * (w / crop.shape[1])
        else:
            boxes, scores, kps = pack.detect(img)
            j = _choose_face(boxes, face, source)
            box, score = boxes[j].tolist(), float(scores[j])
            emb = _embed(pack, img, kps[j:j + 1])
            kps_out = kps[j].reshape(-1)
        sha = hashlib.sha256(data).hexdigest()
        suffix = _image_kind(data) or (Path(source).suffix.lower().lstrip(".") if source != "<bytes>" else "") or "img"
        rel = f"images/{sha}.{suffix}"
        target = self.path / rel
        if not target.exists():
            store.atomic_write_bytes(target, data)
        x1, y1, x2, y2 = box
        face_id = str(uuid.uuid5(_FACE_NAMESPACE, f"{sha}:{aligned}:{round(x1)}:{round(y1)}:{round(x2)}:{round(y2)}"))
        return {
            "Id": person["Id"], "Name": person["Name"], "Urls": [], "KnownGender": None,
            "FaceId": face_id, "Image": rel, "Source": Path(source).name if source != "<bytes>" else source,
            "BoundingBox": {"Width": (x2 - x1) / w, "Height": (y2 - y1) / h, "Left": x1 / w, "Top": y1 / h},
            "Keypoints": [float(v) for v in kps_out], "Confidence": score * 100.0, "Aligned": bool(aligned),
            "Embedding": [float(v) for v in emb[0]], "AddedMs": int(time.time() * 1000),
        }

    @staticmethod
    def _merge(rows: list[dict], new: list[dict], person: dict, urls, gender) -> list[dict]:
        current = next((r for r in rows if r["Id"] == person["Id"]), None)
        urls = urls if urls is not None else (current["Urls"] if current else [])
        gender = gender if gender is not None else (current["KnownGender"] if current else None)
        owner = {r["FaceId"]: r["Name"] for r in rows}
        out = [dict(r, Urls=urls, KnownGender=gender) if r["Id"] == person["Id"] else r for r in rows]
        for n in new:
            if n["FaceId"] in owner:
                if owner[n["FaceId"]] != person["Name"]:
                    raise InvalidParameterException(
                        f"{n['Source']}: this face is already a reference face of {owner[n['FaceId']]!r}")
                continue  # the same photo twice: nothing to add
            owner[n["FaceId"]] = person["Name"]
            out.append(dict(n, Urls=urls, KnownGender=gender))
        return out



# --------------------------------------------------------------------------- helpers
def _embed(pack, img, kps) -> np.ndarray:
    return pack.embed(np.ascontiguousarray(img), np.asarray(kps, np.float32).reshape(-1, 5, 2))


def _aligned_input(img, pack) -> tuple[np.ndarray, np.ndarray]:
    """(crop resized to the recognizer's input, template keypoints) for an aligned crop."""
    h, w = img.shape[:2]
    if abs(h - w) > 1:
        raise InvalidParameterException(
            f"an aligned face crop must be square (like insightface's 112x112 crops), not {w}x{h}")
    size = int(pack.recognizer.input_size[0])
    crop = img if (h, w) == (size, size) else _cv2().resize(img, (size, size), interpolation=_cv2().INTER_AREA)
    return crop, _aligned_kps(size)


def _choose_face(boxes: np.ndarray, face, source: str) -> int:
    """Index (into ``boxes``) of the reference face in a photo."""
    n = len(boxes)
    if n == 0:
        raise InvalidParameterException(
            f"{source}: no face found; use a photo where the person's face is clearly visible "
            "(or aligned=True for a pre-aligned square face crop)")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-area, kind="stable")
    if face is None:
        if n == 1:
            return int(order[0])
        listing = "; ".join(f"{i}: box x={boxes[j, 0]:.0f} y={boxes[j, 1]:.0f} "
                            f"w={boxes[j, 2] - boxes[j, 0]:.0f} h={boxes[j, 3] - boxes[j, 1]:.0f}"
                            for i, j in enumerate(order))
        raise InvalidParameterException(
            f"{source}: {n} faces found, but a reference photo must show one person; pass "
            f"face='largest' or face=<index> to choose one (largest first: {listing})")
    if face == "largest":
        return int(order[0])
    if isinstance(face, (int, np.integer)) and not isinstance(face, bool) and 0 <= face < n:
        return int(order[face])
    raise InvalidParameterException(
        f"{source}: face={face!r} must be 'largest' or an index from 0 to {n - 1} (largest face first)")


def _check_name(name) -> str:
    if not isinstance(name, str) or not " ".join(name.split()):
        raise InvalidParameterException(f"a person's name must be a non-empty string, not {name!r}")
    return " ".join(unicodedata.normalize("NFKC", name).split())


def _check_urls(urls) -> list[str] | None:
    if urls is None:
        return None
    if isinstance(urls, str):
        urls = [urls]
    urls = list(urls)
    if len(urls) > MAX_URLS or not all(isinstance(u, str) and u.strip() for u in urls):
        raise InvalidParameterException(f"urls must be a list of at most {MAX_URLS} non-empty strings")
    return [u.strip() for u in urls]


def _check_gender(value) -> str | None:
    if value is None:
        return None
    for g in KNOWN_GENDERS:
        if isinstance(value, str) and value.strip().casefold() == g.casefold():
            return g
    raise InvalidParameterException(f"known_gender {value!r} must be one of {', '.join(KNOWN_GENDERS)}")


def _read_person_json(folder: Path) -> dict:
    f = folder / "person.json"
    if not f.is_file():
        return {}
    try:
        info = json.loads(f.read_text())
    except ValueError as exc:
        raise InvalidParameterException(f"{f} is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise InvalidParameterException(f"{f} must hold a JSON object {{Name, Urls, KnownGender, Id}}")
    return info


def _read_export(path: Path) -> tuple[list[dict], dict, dict[str, bytes]]:
    """Rows, face model and photos of an exported gallery file, all checked."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InvalidParameterException(f"gallery file not found: {path}")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if GALLERY_FILE not in names:
                raise ValueError(f"it has no {GALLERY_FILE}")
            data = z.read(GALLERY_FILE)
            images = {}
            for n in names:
                if n == GALLERY_FILE or n.endswith("/"):
                    continue
                if not re.fullmatch(r"images/[0-9a-f]{64}\.[a-z0-9]{1,5}", n):
                    raise ValueError(f"unexpected member {n!r}")
                images[n] = z.read(n)
        table = pq.read_table(io.BytesIO(data))
        meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
        rows = table.select(_GALLERY_SCHEMA.names).cast(_GALLERY_SCHEMA).to_pylist()
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, pa.ArrowException) as exc:
        raise InvalidParameterException(
            f"{path} is not a rekolab celebrity gallery file (written by gallery.export()): {exc}") from None
    for r in rows:
        blob = images.get(r["Image"])
        if blob is None or hashlib.sha256(blob).hexdigest() != Path(r["Image"]).stem:
            raise InvalidParameterException(f"{path}: the photo {r['Image']} of {r['Name']!r} is missing or damaged")
        if not _ID_PATTERN.fullmatch(r["Id"] or ""):
            raise InvalidParameterException(f"{path}: Id {r['Id']!r} of {r['Name']!r} is not [0-9A-Za-z]+")
    if rows and not meta.get("FaceModel"):
        raise InvalidParameterException(f"{path}: the file does not say which face model made its embeddings")
    return rows, meta.get("FaceModel"), images

