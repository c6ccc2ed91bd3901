"""The on-disk store of celebrity galleries (see :mod:`rekolab.celebrities` for the
layout and the rules): person Ids, the ``gallery.parquet`` schema, the face-model
identity that makes embeddings comparable, reading (and atomically rewriting) a
gallery folder, and :class:`GalleryMatcher` search snapshots.

:mod:`rekolab.celebrities` builds the notebook's :class:`~rekolab.celebrities.Gallery`
(adding, removing, re-embedding, import/export) on :class:`GalleryStore`;
:mod:`rekolab.celebrity_ops` (the operations) and :mod:`rekolab.analysis.celebrities`
(the recognition) read galleries through it, so neither imports the other's module.

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
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import store
from .errors import InvalidParameterException, ResourceNotFoundException
from .results.schema import BOUNDING_BOX

#: Default minimum ``Confidence`` (0-100) for a face to be named. With the
#: default cosine->Similarity calibration (:func:`rekolab.models.faces.similarity`)
#: this is an embedding cosine of 0.33. Measured with MobileFaceNet on the shared
#: media (docs/celebrities.md): same person >= 0.58 on stills and 0.39-0.60 per
#: recognizable appearance in the Hamilton clip; different people <= 0.20 on
#: stills and <= 0.27 per appearance (<= 0.30 per frame).
DEFAULT_MIN_CONFIDENCE = 50.0
ID_LENGTH = 8
MAX_FACES_PER_IMAGE = 64  # RecognizeCelebrities: "the 64 largest faces"
GALLERY_FILE = "gallery.parquet"
FORMAT_VERSION = 1
_META_KEY = b"rekolab.gallery"
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


class GalleryStore:
    """A celebrity gallery folder as stored (created on the first write): reading
    (:meth:`people`, :meth:`get`, :meth:`find`, :meth:`faces`, ``len``, ``in``), the
    face-model check and :meth:`matcher` search snapshots. The notebook's
    :class:`rekolab.celebrities.Gallery` adds the writing methods."""

    def __init__(self, path: str | os.PathLike | None = None):
        if isinstance(path, GalleryStore):
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


# --------------------------------------------------------------------------- helpers
def _person(row: dict) -> dict:
    return {"Id": row["Id"], "Name": row["Name"], "Urls": list(row["Urls"] or []), "KnownGender": row["KnownGender"]}


def _face_pack():
    from .models.faces import face_pack

    return face_pack()


def _empty(g: GalleryStore) -> InvalidParameterException:
    return InvalidParameterException(
        f"the celebrity gallery at {g.path} is empty; add people first: "
        "rk.celebrities.gallery().add('Name', images=['photo.jpg'])")

