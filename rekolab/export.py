"""``rk.export``: the dataset exports of :mod:`rekolab.export_formats` (parquet, JSON
Lines, COCO, FiftyOne, frames and crops), each taking a job, a job id (reopened as
:class:`rekolab.Job`) or a :class:`~rekolab.widgets.JobView`::

    rk.export.to_coco(job_id, "coco/")       # the same as rk.Job(job_id).to_coco("coco/")

A surface, like :mod:`rekolab.api`: it only turns a job id into a handle; every
format is written by :mod:`rekolab.export_formats`.
"""
from __future__ import annotations

import functools

from . import export_formats as _formats
from .api import Job
from .export_formats import GET_LIST_KEYS

__all__ = ["to_parquet", "to_jsonl", "to_coco", "to_fiftyone", "extract_frames", "GET_LIST_KEYS"]


def _taking_job_ids(export):
    """``export`` with a job id as its first argument read as ``rk.Job(job_id)``."""

    @functools.wraps(export)
    def wrapper(job, *args, **kwargs):
        return export(Job(job) if isinstance(job, str) else job, *args, **kwargs)

    return wrapper


to_parquet = _taking_job_ids(_formats.to_parquet)
to_jsonl = _taking_job_ids(_formats.to_jsonl)
to_coco = _taking_job_ids(_formats.to_coco)
to_fiftyone = _taking_job_ids(_formats.to_fiftyone)
extract_frames = _taking_job_ids(_formats.extract_frames)
