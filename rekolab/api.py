"""Notebook verbs: thin calls on the default :class:`~rekolab.client.Client` that
return :class:`Job` handles.

    import rekolab as rk
    job = rk.start_face_detection("clip.mp4", face_attributes="ALL")
    job.wait()             # progress bar; or `await job` in a cell
    df = job.to_pandas()   # pd.ArrowDtype columns, one row per face per sampled frame
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pyarrow as pa

from .api_images import compare_faces, detect_faces, detect_labels, detect_moderation_labels, detect_text
from .api_params import _params, _text_filters, image_param, video_param
from .client import Client, default_client

__all__ = ["Job", "start_face_detection", "start_celebrity_recognition", "video_param", "Collection", "image_param", "start_face_search"]


def table_to_pandas(table: pa.Table, flat: bool = False, keep_empty: bool = False):
    """An Arrow results table as a DataFrame with ``pd.ArrowDtype`` columns (see
    :meth:`Job.to_pandas`)."""
    import pandas as pd

    from .results.schema import DEFAULT_FACE_KEYS, FACE_DETAIL_FIELDS

    # Face attributes a model may not produce (Eyeglasses, Beard, ...); other null
    # columns (e.g. a label's ClipConfidence when CLIP did not score it) keep their meaning.
    optional = {name for name, _ in FACE_DETAIL_FIELDS} - set(DEFAULT_FACE_KEYS)
    if not keep_empty and table.num_rows:
        table = table.select([i for i, (f, col) in enumerate(zip(table.schema, table.columns))
                              if f.name not in optional or col.null_count < table.num_rows])
    if flat:
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table = table.flatten()  # names children "Parent.Child"
    return table.to_pandas(types_mapper=pd.ArrowDtype)


class Job:
    """A handle on a stored-video job; ``rk.Job(job_id)`` reopens one from any
    process (results live under the rekolab home)."""

    def __init__(self, job_id: str, client: Client | None = None):
        self.id = job_id
        self._client = client or default_client()
        self._client.jobs.record(job_id)  # ResourceNotFoundException for an unknown id

    # -- state -----------------------------------------------------------------------
    @property
    def _record(self):
        return self._client.jobs.record(self.id)

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def status_message(self) -> str | None:
        return self._record.status_message

    @property
    def operation(self) -> str:
        return self._record.operation

    @property
    def request(self) -> dict:
        return self._record.request

    @property
    def video_metadata(self) -> dict | None:
        return self._record.video_metadata

    @property
    def models(self) -> dict:
        """Which models and methods produced the results."""
        return self._record.models

    def __repr__(self) -> str:
        r = self._record
        extra = f", rows={r.rows}" if r.rows is not None else ""
        if r.status == "IN_PROGRESS":
            done, total = self._client.jobs.progress(self.id)
            extra = f", frames={done}/{total}" if total else ""
        elif r.status == "FAILED":
            extra = f", message={r.status_message!r}"
        return f"Job({self.id[:12]}…, {r.operation}, {r.status}{extra})"

    # -- waiting ---------------------------------------------------------------------
    def _progress_bar(self, total: int):
        """A tqdm.auto bar over the job's ``total`` sampled frames (known before the bar
        is made: a notebook bar needs it at creation) and its listener; (None, None)
        without a total (a job not running in this process)."""
        if not total:
            return None, None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="frame", desc=self.operation.removeprefix("Start"), leave=False)

        def on_progress(done: int, _total: int):
            bar.update(done - bar.n)
        return bar, on_progress

    def wait(self, timeout: float | None = None, progress: bool = True) -> "Job":
        """Block until the job ends (or ``timeout`` seconds); shows a tqdm progress bar
        (``tqdm.auto``: a widget in notebooks, text in a terminal)."""
        start = time.monotonic()
        bar, on_progress = (self._progress_bar(self._client.jobs.planned_total(self.id, timeout))
                            if progress else (None, None))
        if timeout is not None:
            timeout = max(0.0, timeout - (time.monotonic() - start))
        try:
            self._client.jobs.wait(self.id, timeout, on_progress)
        finally:
            if bar is not None:
                bar.close()
        return self

    def __await__(self):
        """``await job`` in a notebook cell: the same progress bar, without blocking
        the kernel's event loop."""
        return self._wait_async().__await__()

    async def _wait_async(self) -> "Job":
        # The bar is made here, in the kernel's thread, so a notebook shows it in this cell.
        bar, on_progress = self._progress_bar(await asyncio.to_thread(self._client.jobs.planned_total, self.id))
        try:
            await asyncio.to_thread(self._client.jobs.wait, self.id, None, on_progress)
        finally:
            if bar is not None:
                bar.close()
        return self

    # -- results ---------------------------------------------------------------------
    def to_arrow(self) -> pa.Table:
        """The job's results (waits for the job first). Raises if the job FAILED."""
        record = self._client.jobs.wait(self.id)
        if record.status != "SUCCEEDED":
            raise RuntimeError(f"job {self.id} {record.status}: {record.status_message}")
        return self._client.jobs.table(self.id)

    def to_pandas(self, flat: bool = False, keep_empty: bool = False):
        """A DataFrame with ``pd.ArrowDtype`` columns.

        ``flat=True`` spreads nested structs into one column per member
        (``BoundingBox.Left``, ``Pose.Yaw``, ``AgeRange.Low``; lists such as
        Landmarks stay one column), which reads better in a notebook. Face attribute
        columns that are null on every row (attributes no installed model produced,
        e.g. Eyeglasses or Beard) are left out unless ``keep_empty=True``."""
        return table_to_pandas(self.to_arrow(), flat=flat, keep_empty=keep_empty)

    def _repr_html_(self) -> str:
        """A summary card in notebooks: status, video, rows and what is in them."""
        import html

        r = self._record
        video = (r.request.get("Video") or {})
        name = video.get("Path") or (video.get("S3Object") or {}).get("Name") or ""
        meta = r.video_metadata or {}
        rows = [("operation", r.operation), ("status", r.status + (f": {r.status_message}" if r.status_message else "")),
                ("video", f"{os.path.basename(str(name))} · {meta.get('FrameWidth')}×{meta.get('FrameHeight')} · "
                          f"{(meta.get('DurationMillis') or 0) / 1000:.1f} s"),
                ("job id", self.id)]
        if r.status == "IN_PROGRESS":
            done, total = self._client.jobs.progress(self.id)
            rows.append(("progress", f"{done}/{total} frames"))
        if r.status == "SUCCEEDED":
            rows.append(("results", f"{r.rows} rows from {r.sampled_frames} sampled frames"))
        body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table class='rekolab-job'>{body}</table>"

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write the results to ``path``; the request and VideoMetadata travel in the
        schema metadata (key ``rekolab``)."""
        import pyarrow.parquet as pq

        path = Path(path)
        pq.write_table(self.to_arrow(), path)
        return path

    # -- notebook views and dataset exports (rekolab.widgets, rekolab.export_formats) --
    def view(self):
        """A :class:`rekolab.widgets.JobView`: the results as flat detections (one
        row per box: Timestamp, Lane, Category, Confidence, box) and binned lanes.

        Built once per handle (the results of a SUCCEEDED job never change), so
        plot(), timeline() and the exports share its face tracks, lanes and open
        video; a job that has not SUCCEEDED raises and caches nothing."""
        view = getattr(self, "_view", None)
        if view is None:
            from .widgets.detections import JobView

            view = self._view = JobView.from_job(self)
        return view

    def timeline(self, **kwargs):
        """An ipywidgets timeline: one lane per face track / label / celebrity /
        matched person, a minimum-confidence slider, a lane filter and a frame
        viewer with boxes and names. Keywords: ``min_confidence``, ``lanes``,
        ``max_lanes`` (30), ``max_bins`` (2000). Face tracks are computed at view
        time (see docs/notebooks.md)."""
        from .models import require

        require("ipywidgets", "notebook")
        from .widgets.timeline import Timeline

        return Timeline(self.view(), **kwargs)

    def player(self, **kwargs):
        """An anywidget video player: the video in the browser with this job's boxes
        and names drawn on the frames they came from, frame steps, keyboard
        shortcuts, clickable lanes and a per-track gallery (see
        :mod:`rekolab.widgets.player`). Keywords: ``min_confidence``, ``lanes``,
        ``url`` (serve the video yourself), ``max_bytes``, ``proxy``, ``gallery``."""
        from .models import require

        require("anywidget", "notebook")
        from .widgets.player import Player

        return Player(self.view(), **kwargs)

    def plot(self, *, min_confidence: float = 0.0, lanes: list[str] | None = None, text: str = "",
             max_lanes: int = 30, width_in: float = 10.0, dpi: int = 100):
        """The same timeline as a matplotlib ``Figure`` (for reports and static docs):
        one horizontal lane per face track / label / celebrity / person, time in
        seconds on x."""
        from .widgets.lanes import plot_timeline

        return plot_timeline(self.view().lanes(), min_confidence=min_confidence, lane_names=lanes,
                             text=text, max_lanes=max_lanes, width_in=width_in, dpi=dpi)

    def to_jsonl(self, path: str | os.PathLike, **get_options) -> Path:
        """The exact Get* items, one JSON object per line (see :mod:`rekolab.export`)."""
        from .export_formats import to_jsonl

        return to_jsonl(self, path, **get_options)

    def to_coco(self, out_dir: str | os.PathLike, **kwargs) -> Path:
        """COCO detection JSON + frame images in ``out_dir``; returns the JSON path."""
        from .export_formats import to_coco

        return to_coco(self.view(), out_dir, **kwargs)

    def to_fiftyone(self, out_dir: str | os.PathLike, **kwargs) -> Path:
        """A FiftyOneImageDetectionDataset folder (data/ + labels.json)."""
        from .export_formats import to_fiftyone

        return to_fiftyone(self.view(), out_dir, **kwargs)

    def extract_frames(self, out_dir: str | os.PathLike, **kwargs) -> Path:
        """The sampled frames (or ``crops=True``: one crop per box) as JPEGs with a
        manifest.csv; returns the manifest path."""
        from .export_formats import extract_frames

        return extract_frames(self.view(), out_dir, **kwargs)


def start_face_detection(video, face_attributes: str | None = None, *, sample_rate: float | None = None,
                         client_request_token: str | None = None, job_tag: str | None = None,
                         notification_channel: dict | None = None, client: Client | None = None) -> Job:
    """Start face detection on a video and return its :class:`Job` at once.

    ``video``: a local path, an ``s3://`` URL, or ``{"S3Object": {...}}``;
    ``face_attributes``: ``"DEFAULT"`` or ``"ALL"``; ``sample_rate``: frames analysed
    per second of video (default 5)."""
    client = client or default_client()
    r = client.start_face_detection(**_params(
        Video=video_param(video), FaceAttributes=face_attributes, SampleRate=sample_rate,
        ClientRequestToken=client_request_token, JobTag=job_tag, NotificationChannel=notification_channel))
    return Job(r["JobId"], client)


# -- face collections and face search --------------------------------------------------
def start_face_search(video, collection_id: str, face_match_threshold: float | None = None, *,
                      sample_rate: float | None = None, client_request_token: str | None = None,
                      job_tag: str | None = None, notification_channel: dict | None = None,
                      client: Client | None = None) -> Job:
    """Search a video's faces in a collection; returns the :class:`Job` at once.

        job = rk.start_face_search("clip.mp4", collection_id="cast")
        df = job.to_pandas()   # one row per face per sampled frame: Index, FaceMatches, ...

    ``face_match_threshold``: minimum Similarity of a match (default 80);
    ``sample_rate``: frames analysed per second of video (default 5)."""
    client = client or default_client()
    r = client.start_face_search(**_params(
        Video=video_param(video), CollectionId=collection_id, FaceMatchThreshold=face_match_threshold,
        SampleRate=sample_rate, ClientRequestToken=client_request_token, JobTag=job_tag,
        NotificationChannel=notification_channel))
    return Job(r["JobId"], client)


class Collection:
    """A face collection (stored under the rekolab home; any process can reopen it).

        cast = rk.Collection.create("cast")          # rk.Collection("cast") reopens it
        cast.index("lin.png", external_image_id="lin-manuel-miranda")
        cast.search("still.jpg")["FaceMatches"]      # SearchFacesByImage
        cast.faces()                                 # DataFrame, one row per stored face
        job = cast.start_face_search("clip.mp4")     # a Job, as rk.start_face_search

    Each method is one boto3-shaped call on the client and returns its response."""

    def __init__(self, collection_id: str, client: Client | None = None):
        self.id = collection_id
        self._client = client or default_client()
        self.describe()  # ResourceNotFoundException for an unknown id

    @classmethod
    def create(cls, collection_id: str, tags: dict | None = None, *, exist_ok: bool = False,
               client: Client | None = None) -> "Collection":
        """Create the collection (``exist_ok=True``: or open it if it exists)."""
        client = client or default_client()
        try:
            client.create_collection(**_params(CollectionId=collection_id, Tags=tags))
        except client.exceptions.ResourceAlreadyExistsException:
            if not exist_ok:
                raise
        return cls(collection_id, client)

    @staticmethod
    def ids(client: Client | None = None) -> list[str]:
        """Every collection id (all ListCollections pages)."""
        client = client or default_client()
        out, token = [], None
        while True:
            page = client.list_collections(**_params(NextToken=token))
            out += page["CollectionIds"]
            token = page.get("NextToken")
            if not token:
                return out

    def describe(self) -> dict:
        return self._client.describe_collection(CollectionId=self.id)

    @property
    def face_model_version(self) -> str:
        return self.describe()["FaceModelVersion"]

    def __len__(self) -> int:
        return self.describe()["FaceCount"]

    def __repr__(self) -> str:
        d = self.describe()
        return f"Collection({self.id!r}, faces={d['FaceCount']}, FaceModelVersion={d['FaceModelVersion']!r})"

    def index(self, image, external_image_id: str | None = None, *, max_faces: int | None = None,
              quality_filter: str | None = None, detection_attributes: list[str] | None = None) -> dict:
        """IndexFaces: ``image`` is a path, bytes, an ``s3://`` URL or an Image dict."""
        return self._client.index_faces(**_params(
            CollectionId=self.id, Image=image_param(image), ExternalImageId=external_image_id,
            MaxFaces=max_faces, QualityFilter=quality_filter, DetectionAttributes=detection_attributes))

    def search(self, image, face_match_threshold: float | None = None, *, max_faces: int | None = None,
               quality_filter: str | None = None) -> dict:
        """SearchFacesByImage: the image's largest face against this collection."""
        return self._client.search_faces_by_image(**_params(
            CollectionId=self.id, Image=image_param(image), FaceMatchThreshold=face_match_threshold,
            MaxFaces=max_faces, QualityFilter=quality_filter))

    def search_face(self, face_id: str, face_match_threshold: float | None = None, *,
                    max_faces: int | None = None) -> dict:
        """SearchFaces: a stored face against the rest of this collection."""
        return self._client.search_faces(**_params(
            CollectionId=self.id, FaceId=face_id, FaceMatchThreshold=face_match_threshold, MaxFaces=max_faces))

    def faces(self):
        """Every stored face (all ListFaces pages) as a DataFrame with ``pd.ArrowDtype``
        columns: FaceId, BoundingBox, ImageId, ExternalImageId, Confidence,
        IndexFacesModelVersion."""
        import pandas as pd

        from .collections import FACE_LIST_SCHEMA

        rows, token = [], None
        while True:
            page = self._client.list_faces(**_params(CollectionId=self.id, NextToken=token, MaxResults=4096))
            rows += page["Faces"]
            token = page.get("NextToken")
            if not token:
                break
        return pa.Table.from_pylist(rows, schema=FACE_LIST_SCHEMA).to_pandas(types_mapper=pd.ArrowDtype)

    def delete_faces(self, face_ids: list[str]) -> dict:
        return self._client.delete_faces(CollectionId=self.id, FaceIds=list(face_ids))

    def delete(self) -> dict:
        """DeleteCollection: the collection and its faces are gone for good."""
        return self._client.delete_collection(CollectionId=self.id)

    def start_face_search(self, video, face_match_threshold: float | None = None, **kwargs) -> Job:
        """StartFaceSearch against this collection (see :func:`start_face_search`)."""
        return start_face_search(video, self.id, face_match_threshold, client=self._client, **kwargs)


def start_celebrity_recognition(video, *, gallery=None, min_confidence: float | None = None,
                                sample_rate: float | None = None, client_request_token: str | None = None,
                                job_tag: str | None = None, notification_channel: dict | None = None,
                                client: Client | None = None) -> Job:
    """Start celebrity recognition on a video against a celebrity gallery and return
    its :class:`Job` at once.

    ``gallery``: a :class:`rekolab.celebrities.Gallery` or its folder (default: the
    gallery in the rekolab home, ``rk.celebrities.gallery()``); ``min_confidence``:
    the Confidence (0-100) an appearance needs to be named (default 50);
    ``sample_rate``: frames analysed per second of video (default 5).

        job = rk.start_celebrity_recognition("clip.mp4")
        job.to_pandas()   # Timestamp, Id, Name, Confidence, BoundingBox, ...
    """
    client = client or default_client()
    path = getattr(gallery, "path", gallery)
    r = client.start_celebrity_recognition(**_params(
        Video=video_param(video), CelebrityGallery=None if path is None else os.fspath(path),
        MinConfidence=min_confidence, SampleRate=sample_rate, ClientRequestToken=client_request_token,
        JobTag=job_tag, NotificationChannel=notification_channel))
    return Job(r["JobId"], client)


# -- stream processors (rekolab/streaming/, rekolab/api_streaming.py) -------------------
from .api_streaming import StreamProcessor, create_stream_processor  # noqa: E402
from .streaming import StreamSession  # noqa: E402

__all__ += ["StreamProcessor", "StreamSession", "create_stream_processor"]


# -- label detection (rekolab/analysis/labels.py) ---------------------------------------
def start_label_detection(video, min_confidence: float | None = None, settings: dict | None = None,
                          features: list[str] | None = None, extra_labels: list[str] | None = None, *,
                          sample_rate: float | None = None, client_request_token: str | None = None,
                          job_tag: str | None = None, notification_channel: dict | None = None,
                          models: list[str] | None = None, clip_model: dict | None = None,
                          detector_model: str | os.PathLike | None = None,
                          client: Client | None = None) -> Job:
    """Start label detection on a video and return its :class:`Job` at once.

    ``min_confidence``: 0-100 (default 50), for labels and for instance boxes;
    ``settings``: ``{"GeneralLabels": {"LabelInclusionFilters": [...], ...}}`` as in
    Rekognition; ``features``: ``["GENERAL_LABELS"]`` (the default);
    ``extra_labels``: label names added to the taxonomy for this job (open vocabulary,
    scored by CLIP; category ``Custom``); ``models``: ``["CLIP"]``, ``["DETECTOR"]`` or both
    (default: every model that can run here); ``clip_model``: ``{"Arch", "Pretrained",
    "Checkpoint"}`` (default ViT-B-32 / laion2b_s34b_b79k); ``detector_model``: a YOLOX
    ``.onnx`` export (default ``REKOLAB_MODEL_DIR/coco_detection/yolox_nano.onnx``).

        job = rk.start_label_detection("clip.mp4", min_confidence=60,
                settings={"GeneralLabels": {"LabelCategoryExclusionFilters": ["Text and Documents"]}},
                extra_labels=["forklift", "hard hat"])
        job.to_pandas()   # Timestamp, Name, Confidence, Parents, Aliases, Categories, Instances, ...
        job.models        # which models ran, and why another did not
    """
    client = client or default_client()
    r = client.start_label_detection(**_params(
        Video=video_param(video), MinConfidence=min_confidence, Settings=settings, Features=features,
        ExtraLabels=None if extra_labels is None else list(extra_labels), SampleRate=sample_rate,
        ClientRequestToken=client_request_token, JobTag=job_tag, NotificationChannel=notification_channel,
        Models=None if models is None else list(models), ClipModel=clip_model,
        DetectorModel=None if detector_model is None else {"Path": os.fspath(detector_model)}))
    return Job(r["JobId"], client)


__all__ += ["start_label_detection"]


# -- content moderation (rekolab/analysis/moderation.py) --------------------------------
def start_content_moderation(video, min_confidence: float | None = None, *, sample_rate: float | None = None,
                             client_request_token: str | None = None, job_tag: str | None = None,
                             notification_channel: dict | None = None, models: list[str] | None = None,
                             clip_model: dict | None = None, client: Client | None = None) -> Job:
    """Start content moderation on a video and return its :class:`Job` at once.

    ``min_confidence``: 0-100 (default 50); ``models``: ``["NUDENET"]``, ``["CLIP"]`` or
    both (default: every model that can run here); ``clip_model``: ``{"Arch",
    "Pretrained", "Checkpoint"}`` as for label detection.

        job = rk.start_content_moderation("clip.mp4")
        job.to_pandas()              # Timestamp, Name, ParentName, TaxonomyLevel, Confidence, ...
        job.models["Categories"]     # which categories ran, and why the others did not
    """
    client = client or default_client()
    r = client.start_content_moderation(**_params(
        Video=video_param(video), MinConfidence=min_confidence, SampleRate=sample_rate,
        ClientRequestToken=client_request_token, JobTag=job_tag, NotificationChannel=notification_channel,
        Models=None if models is None else list(models), ClipModel=clip_model))
    return Job(r["JobId"], client)


# -- image operations (rekolab/image_ops.py, rekolab/api_images.py) ---------------------
__all__ += ["detect_faces", "detect_labels", "compare_faces"]


# -- segment detection (rekolab/analysis/segments.py) -----------------------------------
def start_segment_detection(video, segment_types: list[str] | tuple[str, ...] = ("TECHNICAL_CUE", "SHOT"),
                            filters: dict | None = None, *, shot_min_confidence: float | None = None,
                            cue_min_confidence: float | None = None, black_max_pixel_threshold: float | None = None,
                            black_min_coverage_percentage: float | None = None,
                            client_request_token: str | None = None, job_tag: str | None = None,
                            notification_channel: dict | None = None, client: Client | None = None) -> Job:
    """Start segment detection (shots and technical cues, every frame) and return
    its :class:`Job` at once.

        job = rk.start_segment_detection("episode.mp4")
        job.to_pandas()   # Type, Start/End/Duration ms, SMPTE timecodes, frames, ShotSegment, ...

    ``filters``: Rekognition's ``Filters`` dict; or the keywords ``shot_min_confidence``,
    ``cue_min_confidence`` (50-100, default 50), ``black_max_pixel_threshold`` (0-1,
    default 0.2), ``black_min_coverage_percentage`` (0-100, default 99)."""
    client = client or default_client()
    filters = dict(filters or {})
    if shot_min_confidence is not None:
        filters.setdefault("ShotFilter", {})["MinSegmentConfidence"] = shot_min_confidence
    cue = {}
    if cue_min_confidence is not None:
        cue["MinSegmentConfidence"] = cue_min_confidence
    black = _params(MaxPixelThreshold=black_max_pixel_threshold, MinCoveragePercentage=black_min_coverage_percentage)
    if black:
        cue["BlackFrame"] = black
    if cue:
        filters["TechnicalCueFilter"] = {**filters.get("TechnicalCueFilter", {}), **cue}
    r = client.start_segment_detection(**_params(
        Video=video_param(video), SegmentTypes=list(segment_types), Filters=filters or None,
        ClientRequestToken=client_request_token, JobTag=job_tag, NotificationChannel=notification_channel))
    return Job(r["JobId"], client)


# -- text detection (rekolab/analysis/text.py) ------------------------------------------

def start_text_detection(video, min_confidence: float | None = None, *, filters: dict | None = None,
                         min_bounding_box_height: float | None = None, min_bounding_box_width: float | None = None,
                         regions_of_interest: list[dict] | None = None, sample_rate: float | None = None,
                         client_request_token: str | None = None, job_tag: str | None = None,
                         notification_channel: dict | None = None, client: Client | None = None) -> Job:
    """Start text detection (PP-OCRv4 lines and words on the sampled frames) and
    return its :class:`Job` at once.

        job = rk.start_text_detection("clip.mp4", min_confidence=90,
                                      regions_of_interest=[{"BoundingBox": {"Left": 0, "Top": 0.8,
                                                                            "Width": 1, "Height": 0.2}}])
        job.to_pandas()   # Timestamp, DetectedText, Type, Id, ParentId, Confidence, Geometry

    ``min_confidence`` (default 80), ``min_bounding_box_height`` / ``_width`` (ratios)
    make the WordFilter; ``regions_of_interest``: up to 10 ``{"BoundingBox"}`` or
    ``{"Polygon"}`` regions; ``sample_rate``: frames analysed per second (default 5)."""
    client = client or default_client()
    r = client.start_text_detection(**_params(
        Video=video_param(video), Filters=_text_filters(filters, min_confidence, min_bounding_box_height,
                                                        min_bounding_box_width, regions_of_interest),
        SampleRate=sample_rate, ClientRequestToken=client_request_token, JobTag=job_tag,
        NotificationChannel=notification_channel))
    return Job(r["JobId"], client)


__all__ += ["start_segment_detection", "start_text_detection", "detect_text"]
__all__ += ["start_content_moderation", "detect_moderation_labels"]


# -- person tracking (rekolab/analysis/persons.py) ---------------------------------------
def start_person_tracking(video, *, sample_rate: float | None = None, client_request_token: str | None = None,
                          job_tag: str | None = None, notification_channel: dict | None = None,
                          client: Client | None = None) -> Job:
    """Start person tracking on a video and return its :class:`Job` at once.

        job = rk.start_person_tracking("clip.mp4", sample_rate=5)
        job.to_pandas()   # Timestamp, Index, BoundingBox, Face, ...
    """
    client = client or default_client()
    r = client.start_person_tracking(**_params(
        Video=video_param(video), SampleRate=sample_rate, ClientRequestToken=client_request_token,
        JobTag=job_tag, NotificationChannel=notification_channel))
    return Job(r["JobId"], client)


__all__ += ["start_person_tracking"]
# -- dataset runs (rekolab.datasets) ---------------------------------------------------


def analyze(inputs, operations=("faces",), out="rekolab-run", **kwargs):
    """Analyse a dataset of videos into one partitioned parquet dataset; returns a
    :class:`rekolab.datasets.DatasetRun` at once (see :func:`rekolab.datasets.analyze`).

        run = rk.analyze("clips/**/*.mp4", ["faces", "labels"], out="runs/exp1", workers=2)
        df = run.wait().to_pandas("faces")   # one table with a `video` column
    """
    from .datasets import analyze as run_dataset

    return run_dataset(inputs, operations, out, **kwargs)
__all__ += ["analyze"]
