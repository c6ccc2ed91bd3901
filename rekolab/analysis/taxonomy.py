"""The label taxonomy: Rekognition-style label names, their parents, aliases and categories.

Files
-----
``data/labels/taxonomy.csv`` (shipped) has the columns ``name,parents,aliases,categories``.
``parents`` lists the DIRECT parents only; ``parents``, ``aliases`` and ``categories``
are ``|``-separated.  A label's full ancestry (what Rekognition returns as
``Label.Parents``) is computed at load time, nearest first (breadth-first), without
duplicates: ``Car`` -> ``Vehicle`` -> ``Transportation``.

``<rekolab home>/labels/custom.csv`` (same columns) holds the user's persistent labels,
added with :meth:`Taxonomy.add_persistent` and merged by :meth:`Taxonomy.load`.  A job
can add labels for itself only with :meth:`Taxonomy.with_labels` (open vocabulary).

``data/labels/coco80.csv`` (``coco,name``) maps the 80 COCO detector classes, in index
order, to taxonomy names (:meth:`Taxonomy.coco_map`).

Validation
----------
Every name must be non-empty, at most 50 characters and fullmatch :data:`NAME_PATTERN`
(the pattern of Rekognition's ``LabelInclusionFilters``); names are unique
(case-insensitively); every parent must be a label; every category one of
:data:`CATEGORIES`; an alias must not equal another label's name; the parent graph
must have no cycle.  A problem raises :class:`ValueError` naming the row or label,
e.g. ``taxonomy.csv line 7 (Car): unknown parent 'Vehicel'`` or
``cycle in parents: A -> B -> A``.

CLIP prompts
------------
:meth:`Taxonomy.prompts` is the text-prompt ensemble for zero-shot classification:
the label's name and each alias, lower-cased, through each of :data:`PROMPT_TEMPLATES`::

    "a photo of a {}."
    "a photo of the {}."
    "a video frame showing a {}."
    "a blurry photo of a {}."
    "a close-up photo of a {}."

so ``prompts("Car")`` starts ``["a photo of a car.", "a photo of the car.", ...]`` and
goes on with ``"a photo of a automobile."`` and so on for the aliases.  The embeddings
of one label's prompts are averaged into that label's text embedding.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from rekolab.store import atomic_write_bytes, home

__all__ = [
    "CATEGORIES",
    "NAME_PATTERN",
    "MAX_NAME_LENGTH",
    "PROMPT_TEMPLATES",
    "DATA_DIR",
    "TAXONOMY_CSV",
    "COCO_CSV",
    "Label",
    "Taxonomy",
    "user_labels_path",
]

CATEGORIES: frozenset[str] = frozenset({
    "Animals and Pets",
    "Apparel and Accessories",
    "Beauty and Personal Care",
    "Buildings and Architecture",
    "Colors and Visual Composition",
    "Damage Detection",
    "Education",
    "Events and Attractions",
    "Everyday Objects",
    "Expressions and Emotions",
    "Food and Beverage",
    "Furniture and Furnishings",
    "Health and Fitness",
    "Hobbies and Interests",
    "Holidays and Seasonal Events",
    "Home and Indoors",
    "Kitchen and Dining",
    "Leisure and Activities",
    "Medical",
    "Music",
    "Nature and Outdoors",
    "Offices and Workspaces",
    "Party and Celebrations",
    "Patterns and Shapes",
    "Performing Arts",
    "Person Description",
    "Plants and Flowers",
    "Popular Landmarks",
    "Public Safety",
    "Religion",
    "Sports",
    "Symbols and Flags",
    "Technology and Computing",
    "Text and Documents",
    "Tools and Machinery",
    "Transport and Logistics",
    "Travel and Adventure",
    "Vehicles and Automotive",
    "Weapons and Military",
    "Weather",
    "Custom",
})

# Rekognition's LabelInclusionFilters member pattern (kept verbatim: note that
# "'-_" is a character range).
NAME_PATTERN = r"[A-Za-z0-9àâèçñó'-_(). ]*"
MAX_NAME_LENGTH = 50
_NAME_RE = re.compile(NAME_PATTERN)

PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a video frame showing a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
)

def _data_dir() -> Path:
    """``data/labels``: in a checkout it is the repository's top-level ``data/``; an
    installed wheel carries the same files as ``rekolab/data/labels``."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "data" / "labels", here.parents[2] / "data" / "labels"):
        if (candidate / "taxonomy.csv").is_file():
            return candidate
    return here.parents[2] / "data" / "labels"


DATA_DIR = _data_dir()
TAXONOMY_CSV = DATA_DIR / "taxonomy.csv"
COCO_CSV = DATA_DIR / "coco80.csv"
COLUMNS = ("name", "parents", "aliases", "categories")


def user_labels_path() -> Path:
    """Where the user's persistent labels live: ``<home>/labels/custom.csv``."""
    return home() / "labels" / "custom.csv"


@dataclass(frozen=True)
class Label:
    """One taxonomy label.  ``parents`` are ALL ancestors, nearest first."""

    name: str
    parents: tuple[str, ...]
    aliases: tuple[str, ...]
    categories: tuple[str, ...]
    custom: bool = False


@dataclass(frozen=True)
class _Row:
    """A label as written: direct parents only.  ``source`` is file/user/extra."""

    name: str
    parents: tuple[str, ...]
    aliases: tuple[str, ...]
    categories: tuple[str, ...]
    where: str
    source: str = "file"

    @property
    def custom(self) -> bool:
        return self.source != "file"


def _split(field: str | None) -> tuple[str, ...]:
    if not field:
        return ()
    return tuple(_unique(p.strip() for p in field.split("|") if p.strip()))


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _check_name(name: str, where: str) -> None:
    if not name:
        raise ValueError(f"{where}: empty label name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{where} ({name}): name is {len(name)} characters long, "
                         f"more than {MAX_NAME_LENGTH}")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"{where} ({name}): name does not match the pattern {NAME_PATTERN}")


def _read_csv(path: Path, source: str) -> list[_Row]:
    """Parse a taxonomy-format CSV into rows (names checked; links checked later)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"label taxonomy file not found: {path}") from None
    reader = csv.reader(io.StringIO(text))
    header = None
    rows: list[_Row] = []
    for line_no, record in enumerate(reader, start=1):
        if not record or all(not f.strip() for f in record):
            continue
        if header is None:
            header = [h.strip().lower() for h in record]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)} "
                                 f"(expected header {','.join(COLUMNS)})")
            continue
        if len(record) > len(header):
            raise ValueError(f"{path.name} line {line_no}: {len(record)} fields, "
                             f"the header has {len(header)}")
        fields = dict(zip(header, record))
        name = (fields.get("name") or "").strip()
        where = f"{path.name} line {line_no}"
        _check_name(name, where)
        rows.append(_Row(
            name=name,
            parents=_split(fields.get("parents")),
            aliases=_split(fields.get("aliases")),
            categories=_split(fields.get("categories")),
            where=where,
            source=source,
        ))
    if header is None:
        raise ValueError(f"{path.name}: empty file (expected header {','.join(COLUMNS)})")
    return rows


def _row_from_extra(item: Any, where: str) -> _Row:
    """A ``with_labels`` item: a name, or a mapping like Rekognition's Label shape."""
    if isinstance(item, str):
        name = item.strip()
        _check_name(name, where)
        return _Row(name, (), (), ("Custom",), where, "extra")
    if isinstance(item, Mapping):
        known = {"Name", "Parents", "Aliases", "Categories"}
        unknown = set(item) - known
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(known)}")
        name = str(item.get("Name") or "").strip()
        _check_name(name, where)

        def names(key: str) -> tuple[str, ...]:
            value = item.get(key) or ()
            if isinstance(value, str):
                value = [value]
            out = []
            for v in value:
                if isinstance(v, Mapping):  # Rekognition style {"Name": ...}
                    v = v.get("Name")
                if not isinstance(v, str):
                    raise ValueError(f"{where} ({name}): {key} must be names, got {v!r}")
                if v.strip():
                    out.append(v.strip())
            return tuple(_unique(out))

        return _Row(name, names("Parents"), names("Aliases"),
                    names("Categories") or ("Custom",), where, "extra")
    raise ValueError(f"{where}: a label must be a name or a mapping with 'Name', got {item!r}")


def _build(rows: list[_Row]) -> tuple[dict[str, Label], dict[str, tuple[str, ...]]]:
    """Validate rows together; return labels (full ancestry) and direct parents."""
    by_name: dict[str, _Row] = {}
    folded: dict[str, str] = {}
    for row in rows:
        _check_name(row.name, row.where)
        key = row.name.casefold()
        if key in folded:
            first = by_name[folded[key]]
            raise ValueError(f"{row.where} ({row.name}): duplicate name, "
                             f"already defined at {first.where}")
        folded[key] = row.name
        by_name[row.name] = row

    for row in rows:
        for parent in row.parents:
            if parent not in by_name:
                hint = folded.get(parent.casefold())
                extra = f" (did you mean '{hint}'?)" if hint else ""
                raise ValueError(f"{row.where} ({row.name}): unknown parent '{parent}'{extra}")
        for category in row.categories:
            if category not in CATEGORIES:
                raise ValueError(f"{row.where} ({row.name}): unknown category '{category}'")
        for alias in row.aliases:
            other = folded.get(alias.casefold())
            if other is not None and other != row.name:
                raise ValueError(f"{row.where} ({row.name}): alias '{alias}' is the name "
                                 f"of another label ('{other}')")

    # Cycles: iterative depth-first search, reporting the path.
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in by_name:
        if state.get(start):
            continue
        path = [start]
        iters = [iter(by_name[start].parents)]
        state[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            s = state.get(nxt)
            if s == 1:
                loop = path[path.index(nxt):] + [nxt]
                raise ValueError(f"{by_name[nxt].where}: cycle in parents: {' -> '.join(loop)}")
            if s is None:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(by_name[nxt].parents))

    labels: dict[str, Label] = {}
    direct: dict[str, tuple[str, ...]] = {}
    for row in rows:
        seen = {row.name}
        ancestors = []
        queue = deque(row.parents)
        while queue:
            p = queue.popleft()
            if p in seen:
                continue
            seen.add(p)
            ancestors.append(p)
            queue.extend(by_name[p].parents)
        aliases = tuple(a for a in row.aliases if a.casefold() != row.name.casefold())
        labels[row.name] = Label(row.name, tuple(ancestors), aliases, row.categories, row.custom)
        direct[row.name] = row.parents
    return labels, direct


class Taxonomy:
    """A validated label set.  Iterates label names in file order."""

    def __init__(self, rows: Iterable[_Row] = (), *, coco_path: Path | None = None):
        self._rows: list[_Row] = list(rows)
        self._coco_path = coco_path or COCO_CSV
        self._rebuild()

    def _rebuild(self) -> None:
        self._labels, self._direct = _build(self._rows)
        self._folded = {n.casefold(): n for n in self._labels}
        self._alias_of: dict[str, str] = {}
        for label in self._labels.values():
            for alias in label.aliases:
                self._alias_of.setdefault(alias.casefold(), label.name)
        self._children: dict[str, list[str]] = {n: [] for n in self._labels}
        for name, parents in self._direct.items():
            for p in parents:
                self._children[p].append(name)

    # -- loading ---------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | None = None, *, include_user: bool = True) -> "Taxonomy":
        """The shipped taxonomy (or ``path``), plus the user's persistent labels."""
        rows = _read_csv(Path(path) if path is not None else TAXONOMY_CSV, "file")
        if include_user:
            user = user_labels_path()
            if user.exists():
                taken = {r.name.casefold() for r in rows}
                for row in _read_csv(user, "user"):
                    if row.name.casefold() in taken:
                        warnings.warn(f"{user}: persistent label '{row.name}' is now a "
                                      f"built-in label; the built-in one is used", stacklevel=2)
                        continue
                    rows.append(row)
        return cls(rows)

    # -- mapping protocol ----------------------------------------------------------
    def _key(self, name: str) -> str | None:
        if name in self._labels:
            return name
        if isinstance(name, str):
            return self._folded.get(name.casefold())
        return None

    def __getitem__(self, name: str) -> Label:
        key = self._key(name)
        if key is None:
            raise KeyError(name)
        return self._labels[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._labels))

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:
        custom = sum(1 for lab in self._labels.values() if lab.custom)
        return f"<Taxonomy {len(self)} labels ({custom} custom)>"

    @property
    def names(self) -> list[str]:
        return list(self._labels)

    def labels(self) -> list[Label]:
        return list(self._labels.values())

    def get(self, name: str, default: Label | None = None) -> Label | None:
        key = self._key(name)
        return self._labels[key] if key is not None else default

    def resolve(self, text: str) -> str | None:
        """The label name for a name or alias (case-insensitive), or None."""
        key = self._key(text)
        if key is not None:
            return key
        return self._alias_of.get(text.strip().casefold())

    def direct_parents(self, name: str) -> tuple[str, ...]:
        return self._direct[self[name].name]

    def children(self, name: str) -> list[str]:
        """Labels whose direct parents include ``name`` (file order)."""
        return list(self._children[self[name].name])

    def descendants(self, name: str) -> set[str]:
        """All labels that have ``name`` among their ancestors."""
        out: set[str] = set()
        queue = deque(self._children[self[name].name])
        while queue:
            n = queue.popleft()
            if n not in out:
                out.add(n)
                queue.extend(self._children[n])
        return out

    def by_category(self, category: str) -> list[str]:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category '{category}'")
        return [n for n, lab in self._labels.items() if category in lab.categories]

    # -- extending -----------------------------------------------------------------
    def with_labels(self, extra: Iterable[Any]) -> "Taxonomy":
        """A new taxonomy with per-job labels added (this one is unchanged).

        Each item is a name (a new label with no parents and category ``Custom``; a name
        that already exists is kept as it is) or a mapping ``{"Name", "Parents",
        "Aliases", "Categories"}`` validated like a file row.
        """
        if isinstance(extra, (str, Mapping)):
            extra = [extra]
        rows = list(self._rows)
        pending: set[str] = set()
        for i, item in enumerate(extra, start=1):
            row = _row_from_extra(item, f"extra label {i}")
            if isinstance(item, str):
                if row.name in self or row.name.casefold() in pending:
                    continue
                owner = self._alias_of.get(row.name.casefold())
                if owner is not None:
                    raise ValueError(f"extra label {i} ({row.name}): is an alias of "
                                     f"'{owner}'; use '{owner}' instead")
            pending.add(row.name.casefold())
            rows.append(row)
        return Taxonomy(rows, coco_path=self._coco_path)

    def add_persistent(self, name: str, parents: Iterable[str] = (), aliases: Iterable[str] = (),
                       categories: Iterable[str] = ("Custom",)) -> Label:
        """Add (or update) a user label in ``<home>/labels/custom.csv``; returns it.

        The label is validated against this taxonomy's built-in labels and the user's
        other persistent labels before the file is rewritten (atomically).  This
        taxonomy sees the label at once; a later :meth:`load` reads it from disk.
        """
        if isinstance(parents, str):
            parents = [parents]
        if isinstance(aliases, str):
            aliases = [aliases]
        if isinstance(categories, str):
            categories = [categories]
        name = str(name).strip()
        _check_name(name, "persistent label")
        path = user_labels_path()
        existing = _read_csv(path, "user") if path.exists() else []
        base = [r for r in self._rows if r.source == "file"]
        if name.casefold() in {r.name.casefold() for r in base}:
            raise ValueError(f"persistent label ({name}): duplicate name, it is a built-in label")
        new = _Row(name, tuple(_unique(p.strip() for p in parents if p.strip())),
                   tuple(_unique(a.strip() for a in aliases if a.strip())),
                   tuple(_unique(c.strip() for c in categories if c.strip())) or ("Custom",),
                   "persistent label", "user")
        taken = {r.name.casefold() for r in base}
        users = [r for r in existing
                 if r.name.casefold() != name.casefold() and r.name.casefold() not in taken]
        users.append(new)
        built, _ = _build(base + users)  # raises before anything is written

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in users:
            writer.writerow([r.name, "|".join(r.parents), "|".join(r.aliases),
                             "|".join(r.categories)])
        atomic_write_bytes(path, buf.getvalue().encode("utf-8"))

        kept = [r for r in self._rows if r.name.casefold() != name.casefold()]
        kept.append(new)
        self._rows = kept
        self._rebuild()
        return self._labels[name]

    # -- models --------------------------------------------------------------------
    def coco_map(self) -> dict[str, str]:
        """COCO class name -> taxonomy label name, in COCO index order."""
        out: dict[str, str] = {}
        with open(self._coco_path, newline="", encoding="utf-8-sig") as f:
            for line_no, rec in enumerate(csv.DictReader(f), start=2):
                coco = (rec.get("coco") or "").strip()
                name = (rec.get("name") or "").strip()
                if not coco or not name:
                    raise ValueError(f"{self._coco_path.name} line {line_no}: empty field")
                if name not in self._labels:
                    raise ValueError(f"{self._coco_path.name} line {line_no} ({coco}): "
                                     f"'{name}' is not a taxonomy label")
                out[coco] = name
        return out

    def prompts(self, name: str) -> list[str]:
        """CLIP prompt ensemble: the name and each alias through :data:`PROMPT_TEMPLATES`."""
        label = self[name]
        texts = _unique(t.lower() for t in (label.name, *label.aliases))
        return [template.format(text) for text in texts for template in PROMPT_TEMPLATES]
