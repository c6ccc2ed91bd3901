"""Reliability (issue #9): no silent data loss, idempotency across processes,
bounded memory, every fault a Rekognition error. One test (or more) per defect."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import rekolab as rk
from rekolab.testing import numbered_video, truncated_video, validate_response

from conftest import MEDIA, REPO, need

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"


@pytest.fixture
def client(models_dir, tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    return rk.client(buckets={"media": str(bucket)})


def bucket_of(client) -> Path:
    return Path(client.buckets["media"])


def s3(name):
    return {"S3Object": {"Bucket": "media", "Name": name}}


def run_job(client, name, **kwargs) -> dict:
    """Start face detection on bucket object ``name``, wait, return the first page."""
    job_id = client.start_face_detection(Video=s3(name), **kwargs)["JobId"]
    client.jobs.wait(job_id, timeout=120)
    page = client.get_face_detection(JobId=job_id)
    validate_response("GetFaceDetection", page)
    return page


# -- 1. truncated videos end FAILED, deterministically, saying how much is missing ----------
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_mdat_fails_every_time_saying_what_is_missing(client, keep):
    need(HAMILTON)
    truncated_video(HAMILTON, bucket_of(client) / "cut.mp4", keep=keep)
    outcomes = set()
    for _ in range(5 if keep == 0.9 else 2):
        page = run_job(client, "cut.mp4", SampleRate=0.5)
        outcomes.add((page["JobStatus"], page.get("StatusMessage")))
        assert "Faces" not in page
    assert len(outcomes) == 1, outcomes
    status, message = outcomes.pop()
    assert status == "FAILED"
    assert "truncated" in message and "275 frames" in message and "missing" in message
    assert "%" in message and "9175 ms" in message


def test_the_complete_remux_still_succeeds(client):
    """The same recipe without the cut is a whole video: the check has no false alarm."""
    need(HAMILTON)
    truncated_video(HAMILTON, bucket_of(client) / "whole.mp4", keep=1.0)
    page = run_job(client, "whole.mp4", SampleRate=0.5)
    assert page["JobStatus"] == "SUCCEEDED", page.get("StatusMessage")


# -- 7. unusable videos are refused at Start in words ---------------------------------------
def _encode(path: Path, width: int, height: int, frames: int = 3, pix_fmt: str = "yuv444p") -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        for i in range(frames):
            img = np.full((height, width, 3), 40 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (16, 16), (640, 8)])
def test_tiny_frames_are_refused_at_start(client, size):
    _encode(bucket_of(client) / "tiny.mp4", *size)
    with pytest.raises(client.exceptions.InvalidParameterException) as e:
        client.start_face_detection(Video=s3("tiny.mp4"))
    message = e.value.response["Error"]["Message"]
    assert f"{size[0]}x{size[1]} pixels" in message and "at least 32x32" in message
    assert "ndarray" not in message and "Check failed" not in message


@pytest.mark.parametrize("width", [33, 48, 72])
def test_narrow_frames_decode(client, width):
    """decord2 mis-shapes some narrow widths; rekolab decodes them upscaled instead."""
    _encode(bucket_of(client) / "narrow.mp4", width, 40, frames=2)
    page = run_job(client, "narrow.mp4")
    assert page["JobStatus"] == "SUCCEEDED", page.get("StatusMessage")
    assert (page["VideoMetadata"]["FrameWidth"], page["VideoMetadata"]["FrameHeight"]) == (width, 40)
