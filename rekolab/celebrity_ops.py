"""The celebrity operations on a gallery (:mod:`rekolab.celebrity_store`):
RecognizeCelebrities, GetCelebrityInfo, and the gallery checks of
StartCelebrityRecognition. The face pack is only ever loaded from disk here. The
recognition itself is :mod:`rekolab.analysis.celebrities`.
"""
from __future__ import annotations

import json
from pathlib import Path

from .celebrity_store import DEFAULT_MIN_CONFIDENCE, GalleryStore, _empty, _face_pack
from .errors import InternalServerError, InvalidParameterException, ResourceNotFoundException


def _gallery_from(params: dict) -> GalleryStore:
    return GalleryStore(params.get("CelebrityGallery"))



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
