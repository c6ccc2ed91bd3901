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

Nothing heavy is imported here at module level: ``import rekolab`` stays light.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import threading
import time
import unicodedata
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa

from . import store
from .errors import (InternalServerError, InvalidImageFormatException, InvalidParameterException,
                     ResourceAlreadyExistsException, ResourceNotFoundException)
from .images import decode_image as _decode
from .results.schema import BOUNDING_BOX
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

#: Default minimum ``Confidence`` (0-100) for a face to be named. With the
#: default cosine->Similarity calibration (:func:`rekolab.models.faces.similarity`)
#: this is an embedding cosine of 0.33. Measured with MobileFaceNet on the shared
#: media (docs/celebrities.md): same person >= 0.58 on stills and 0.39-0.60 per
#: recognizable appearance in the Hamilton clip; different people <= 0.20 on
#: stills and <= 0.27 per appearance (<= 0.30 per frame).
DEFAULT_MIN_CONFIDENCE = 50.0
KNOWN_GENDERS = ("Male", "Female", "Nonbinary", "Unlisted")
ID_LENGTH = 8
MAX_URLS = 255  # the service model's Urls max
MAX_FACES_PER_IMAGE = 64  # RecognizeCelebrities: "the 64 largest faces"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
GALLERY_FILE = "gallery.parquet"
FORMAT_VERSION = 1
_META_KEY = b"rekolab.gallery"
_FACE_NAMESPACE = uuid.UUID("6f1b7a52-5c1e-4f0a-9a57-3a1b2c4d5e6f")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_PATTERN = re.compile(r"[0-9A-Za-z]+")

_F = pa.float64()
_GALLERY_SCHEMA = pa.schema([
    ("Id", pa.string()),
    ("Name", pa.string()),
    ("Urls", pa.list_(pa.string())),
    ("KnownGender", pa.string()),
    ("FaceId", pa.string()),
    ("Image", pa.string()),          # relative to the gallery folder: images/<sha256>.<ext>
    ("Source", pa.string()),         # the file name the photo was added from (informational)
    ("BoundingBox", BOUNDING_BOX),
    ("Keypoints", pa.list_(pa.float32())),  # 5 (x, y) pixel points in the stored photo
    ("Confidence", _F),              # detector score x 100 (100 for aligned crops)
    ("Aligned", pa.bool_()),         # a pre-aligned crop, fed to the recognizer as it is
    ("Embedding", pa.list_(pa.float32())),
    ("AddedMs", pa.int64()),
])


# --------------------------------------------------------------------------- ids
def normalize_name(name: str) -> str:
    """The form of a name that identifies a person: NFKC, whitespace collapsed, casefolded."""
    return " ".join(unicodedata.normalize("NFKC", str(name)).split()).casefold()


def celebrity_id(name: str) -> str:
    """The stable Id of a person's name (8 characters of ``[0-9A-Za-z]``)."""
    digest = hashlib.sha256(("rekolab-celebrity:" + normalize_name(name)).encode()).digest()
    value = int.from_bytes(digest[:8], "big") % (62 ** ID_LENGTH)
    out = []
    for _ in range(ID_LENGTH):
        value, r = divmod(value, 62)
        out.append(_BASE62[r])
    return "".join(reversed(out))


def default_gallery_path() -> Path:
    """``REKOLAB_CELEBRITY_GALLERY`` if set, else ``<rekolab home>/celebrities``."""
    value = os.environ.get("REKOLAB_CELEBRITY_GALLERY")
    return Path(value).expanduser() if value else store.home() / "celebrities"


def gallery(path: str | os.PathLike | None = None) -> "Gallery":
    """The celebrity gallery at ``path`` (default: the one in the rekolab home)."""
    return Gallery(path)


# --------------------------------------------------------------------------- face model
@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def face_model_info(pack) -> dict:
    """What makes a gallery's embeddings comparable: the recognizer file (by
    sha256) and its embedding dimension; pack and detector names for information."""
    rec = pack.recognizer
    if rec is None:
        raise InvalidParameterException(
            f"face pack {pack.name!r} has no recognition model; celebrity recognition needs one")
    path = Path(rec.model_file)
    st = path.stat()
    dim = rec.output_shape[-1] if rec.output_shape and isinstance(rec.output_shape[-1], int) else None
    if dim is None:
        dim = int(pack.embed(np.zeros((112, 112, 3), np.uint8), _aligned_kps(112)[None]).shape[1])
    return {
        "FacePack": pack.name,
        "Recognizer": path.name,
        "RecognizerSha256": _file_sha256(str(path), st.st_mtime_ns, st.st_size),
        "Dimension": int(dim),
        "Detector": Path(pack.detector.model_file).name,
    }


def _same_model(a: dict | None, b: dict | None) -> bool:
    return bool(a and b and a.get("RecognizerSha256") == b.get("RecognizerSha256")
                and a.get("Dimension") == b.get("Dimension"))


def _describe_model(m: dict | None) -> str:
    if not m:
        return "no face model"
    sha = str(m.get("RecognizerSha256"))[:12]
    return f"{m.get('FacePack')}/{m.get('Recognizer')} ({m.get('Dimension')}-d, sha256 {sha}…)"


def _aligned_kps(size: int) -> np.ndarray:
    """insightface's ArcFace 5-point template for a ``size`` x ``size`` aligned crop."""
    template = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
    return template * (size / 112.0)


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


# --------------------------------------------------------------------------- matcher
@dataclass(frozen=True)
class GalleryMatcher:
    """A snapshot of a gallery ready for search: reference embeddings grouped by person."""

    people: tuple  # of {"Id", "Name", "Urls", "KnownGender"}
    embeddings: np.ndarray  # (R, D) float32, rows grouped by person
    starts: np.ndarray  # (P,) first row of each person in ``embeddings``
    face_model: dict
    path: str
    sha256: str

    def __repr__(self) -> str:
        return f"GalleryMatcher({len(self.people)} people, {len(self.embeddings)} faces)"

    def cosines(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, P): for each face, the best cosine with each person's reference faces."""
        e = np.asarray(embeddings, np.float32).reshape(-1, self.embeddings.shape[1])
        if len(e) == 0:
            return np.zeros((0, len(self.people)), np.float32)
        return np.maximum.reduceat(e @ self.embeddings.T, self.starts, axis=1)


# --------------------------------------------------------------------------- gallery
_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()
_cache: dict[str, tuple] = {}


def _lock_for(path: Path) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(str(path), threading.RLock())


class Gallery:
    """A celebrity gallery folder (created on the first write).

    Reading methods: :meth:`people` (alias :meth:`list`), :meth:`get`,
    :meth:`find`, :meth:`faces`, :meth:`to_pandas`, ``len(gallery)``,
    ``"Barack Obama" in gallery``. Writing methods: :meth:`add`,
    :meth:`add_folder`, :meth:`update`, :meth:`remove`, :meth:`remove_face`,
    :meth:`clear`, :meth:`import_`, :meth:`reembed`. Sharing: :meth:`export`.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        if isinstance(path, Gallery):
            path = path.path
        self.path = (Path(path).expanduser() if path is not None else default_gallery_path()).resolve()
        self._lock = _lock_for(self.path)

    @property
    def file(self) -> Path:
        return self.path / GALLERY_FILE

    # -- reading -----------------------------------------------------------------------
    def _read(self) -> tuple[list[dict], dict]:
        """(face rows, metadata); cached until the file changes."""
        try:
            st = self.file.stat()
        except FileNotFoundError:
            return [], {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = _cache.get(str(self.file))
        if hit is not None and hit[0] == key:
            return [dict(r) for r in hit[1]], dict(hit[2])
        import pyarrow.parquet as pq

        data = self.file.read_bytes()
        table = pq.read_table(io.BytesIO(data))
        meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
        meta["Sha256"] = hashlib.sha256(data).hexdigest()
        rows = table.to_pylist()
        _cache[str(self.file)] = (key, rows, meta)
        return [dict(r) for r in rows], dict(meta)

    def _write(self, rows: list[dict], face_model: dict | None) -> None:
        import pyarrow.parquet as pq

        rows = sorted(rows, key=lambda r: (normalize_name(r["Name"]), r["Id"], r["AddedMs"], r["FaceId"]))
        meta = {"Format": FORMAT_VERSION, "FaceModel": face_model if rows else None}
        table = pa.Table.from_pylist(rows, schema=_GALLERY_SCHEMA).replace_schema_metadata(
            {_META_KEY: json.dumps(meta, sort_keys=True).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        store.atomic_write_bytes(self.file, sink.getvalue().to_pybytes())
        self._prune_images(rows)

    def _prune_images(self, rows: list[dict]) -> None:
        keep = {r["Image"] for r in rows}
        folder = self.path / "images"
        if folder.is_dir():
            for f in folder.iterdir():
                if f.is_file() and f"images/{f.name}" not in keep and not f.name.startswith("."):
                    f.unlink(missing_ok=True)

    @property
    def face_model(self) -> dict | None:
        """The face model that made this gallery's embeddings (None while empty)."""
        return self._read()[1].get("FaceModel")

    def people(self) -> list[dict]:
        """Every person: ``{Id, Name, Urls, KnownGender, Faces}`` (Faces = number of
        reference faces), sorted by name."""
        out: dict[str, dict] = {}
        for r in self._read()[0]:
            p = out.get(r["Id"])
            if p is None:
                p = out[r["Id"]] = _person(r)
                p["Faces"] = 0
            p["Faces"] += 1
        return list(out.values())

    list = people  # gallery.list(), as in the add / remove / list / export / import

    def get(self, id: str) -> dict | None:
        """The person with this Id (``{Id, Name, Urls, KnownGender, Faces}``), or None."""
        return next((p for p in self.people() if p["Id"] == id), None)

    def find(self, name_or_id: str) -> dict | None:
        """The person with this name (any case/spacing) or Id, or None."""
        key = normalize_name(name_or_id)
        for p in self.people():
            if p["Id"] == name_or_id or normalize_name(p["Name"]) == key:
                return p
        return None

    def faces(self, person: str | None = None) -> list[dict]:
        """Reference faces (``FaceId, Id, Name, Image, Source, BoundingBox,
        Confidence, Aligned``), of one person (name or Id) or of all."""
        pid = self._require(person)["Id"] if person is not None else None
        return [{"FaceId": r["FaceId"], "Id": r["Id"], "Name": r["Name"], "Image": str(self.path / r["Image"]),
                 "Source": r["Source"], "BoundingBox": r["BoundingBox"], "Confidence": r["Confidence"],
                 "Aligned": r["Aligned"]}
                for r in self._read()[0] if pid is None or r["Id"] == pid]

    def to_pandas(self):
        """The people as a DataFrame (one row per person)."""
        import pandas as pd

        return pd.DataFrame(self.people(), columns=["Id", "Name", "Urls", "KnownGender", "Faces"])

    def __len__(self) -> int:
        return len({r["Id"] for r in self._read()[0]})

    def __contains__(self, name_or_id: str) -> bool:
        return self.find(name_or_id) is not None

    def __iter__(self):
        return iter(self.people())

    def __repr__(self) -> str:
        rows, meta = self._read()
        model = meta.get("FaceModel")
        where = f", model={model['FacePack']}/{model['Recognizer']}" if model else ""
        return f"Gallery('{self.path}', people={len({r['Id'] for r in rows})}, faces={len(rows)}{where})"

    def _require(self, name_or_id: str) -> dict:
        person = self.find(name_or_id)
        if person is None:
            raise ResourceNotFoundException(f"{name_or_id!r} is not in the celebrity gallery at {self.path}")
        return person

    # -- search ------------------------------------------------------------------------
    def check_model(self, pack) -> dict:
        """The pack's face model info, after checking it is the one this gallery was
        embedded with (InvalidParameterException otherwise)."""
        current = face_model_info(pack)
        stored = self.face_model
        if stored is not None and not _same_model(stored, current):
            raise InvalidParameterException(
                f"the celebrity gallery at {self.path} was embedded with {_describe_model(stored)}, "
                f"but the loaded face model is {_describe_model(current)}; embeddings of different "
                "models cannot be compared. Re-embed the gallery's stored photos with the current "
                "model: rk.celebrities.gallery(path).reembed()")
        return current

    def matcher(self, pack) -> GalleryMatcher:
        """A search snapshot; refuses an empty gallery or one made by another face model."""
        rows, meta = self._read()
        if not rows:
            raise _empty(self)
        self.check_model(pack)
        order: dict[str, int] = {}
        people: list[dict] = []
        for r in rows:
            if r["Id"] not in order:
                order[r["Id"]] = len(people)
                people.append(_person(r))
        owner = np.array([order[r["Id"]] for r in rows])
        sort = np.argsort(owner, kind="stable")
        emb = np.array([rows[i]["Embedding"] for i in sort], np.float32)
        starts = np.searchsorted(owner[sort], np.arange(len(people)))
        return GalleryMatcher(tuple(people), emb, starts, meta.get("FaceModel"), str(self.path), meta["Sha256"])

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
def _person(row: dict) -> dict:
    return {"Id": row["Id"], "Name": row["Name"], "Urls": list(row["Urls"] or []), "KnownGender": row["KnownGender"]}


def _face_pack():
    from .models.faces import face_pack

    return face_pack()


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


# --------------------------------------------------------------------------- operations
def _gallery_from(params: dict) -> Gallery:
    return Gallery(params.get("CelebrityGallery"))


def _empty(g: Gallery) -> InvalidParameterException:
    return InvalidParameterException(
        f"the celebrity gallery at {g.path} is empty; add people first: "
        "rk.celebrities.gallery().add('Name', images=['photo.jpg'])")


def _pack_on_disk() -> bool:
    """True when the face pack in use is already on this machine (REKOLAB_MODEL_DIR,
    REKOLAB_FACE_PACK, or insightface's own ``~/.insightface/models/<pack>``), so
    loading it downloads nothing."""
    from .models.faces import resolve_pack_dir

    try:
        name, folder = resolve_pack_dir()
    except Exception:
        return False
    return folder is not None or (Path.home() / ".insightface" / "models" / name).is_dir()


def _load_pack(operation: str):
    """The face pack for a request, only from disk: a missing or broken pack is an
    ``InternalServerError`` that says how to install one, never a download or a raw
    exception."""
    hint = ("set REKOLAB_MODEL_DIR to a folder holding insightface/models/<pack>/ "
            "(e.g. ../shared/models), or REKOLAB_FACE_PACK to a pack folder")
    if not _pack_on_disk():
        raise InternalServerError(
            f"no face pack is installed on this machine, and RecognizeCelebrities does not download one: {hint}",
            operation)
    try:
        return _face_pack()
    except Exception as exc:
        raise InternalServerError(
            f"the face pack could not be loaded ({type(exc).__name__}: {exc}); {hint}", operation) from None


def check_start(request):
    """StartCelebrityRecognition checks that need the gallery, on a request that
    ``parse_start`` validated: refuse an empty gallery, and (when the face pack is on
    disk, so nothing is downloaded here) one embedded with another face model.
    Returns the request with the gallery path made absolute."""
    import dataclasses

    params = request.params
    g = _gallery_from(params)
    if len(g) == 0:
        raise _empty(g)
    if _pack_on_disk():
        g.check_model(_face_pack())
    if "CelebrityGallery" in params and params["CelebrityGallery"] != str(g.path):
        params = dict(params, CelebrityGallery=str(g.path))
        request = dataclasses.replace(request, params_json=json.dumps(params, sort_keys=True, separators=(",", ":")))
    return request


def celebrity_info(params: dict) -> dict:
    """GetCelebrityInfo: ``{Urls, Name, KnownGender}`` of a gallery Id."""
    from .requests import validate_request

    validate_request("GetCelebrityInfo", params)
    cid = params["Id"]
    if not cid:
        raise InvalidParameterException("Id must not be empty; give a celebrity Id from RecognizeCelebrities "
                                        "or GetCelebrityRecognition")
    g = _gallery_from(params)
    person = g.get(cid)
    if person is None:
        raise ResourceNotFoundException(f"The celebrity Id {cid} is not in the celebrity gallery at {g.path}")
    out = {"Urls": person["Urls"], "Name": person["Name"]}
    if person["KnownGender"]:
        out["KnownGender"] = {"Type": person["KnownGender"]}
    return out


def recognize_celebrities(params: dict, buckets: dict[str, str]) -> dict:
    """RecognizeCelebrities: ``{CelebrityFaces, UnrecognizedFaces}`` for one image."""
    from .images import load_image, normalize_image_request
    from .requests import validate_request

    op = "RecognizeCelebrities"
    params = normalize_image_request(params, op)
    validate_request(op, params)
    img, _ = load_image(params["Image"], buckets, op)
    gallery = _gallery_from(params)
    if len(gallery) == 0:  # before any model is loaded
        raise _empty(gallery)
    pack = _load_pack(op)
    matcher = gallery.matcher(pack)
    from .analysis.celebrities import recognize_image

    return recognize_image(img, pack, matcher, float(params.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)))
