"""The bad-input corpus: each malformed or bad request gets the error code a real
Rekognition client would see, and nothing crashes, hangs or is written outside
the rekolab home."""
from __future__ import annotations

import os
import wave
from pathlib import Path

import pytest

import rekolab as rk
from rekolab.errors import ParamValidationError
from rekolab.testing import numbered_video

from conftest import MEDIA


@pytest.fixture
def bucket(tmp_path) -> Path:
    root = tmp_path / "bucket"
    root.mkdir()
    numbered_video(root / "ok.mp4", frames=10)
    return root


@pytest.fixture
def client(bucket):
    return rk.client(buckets={"media": str(bucket)})


def s3(name, bucket="media", **extra):
    return {"S3Object": {"Bucket": bucket, "Name": name, **extra}}


def code_of(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


# -- malformed calls: botocore's own ParamValidationError ----------------------------
@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "Missing required parameter in input: \"Video\""),
    ({"Video": s3("ok.mp4"), "Colour": "red"}, "Unknown parameter in input: \"Colour\""),
    ({"Video": s3("ok.mp4"), "FaceAttributes": 7}, "Invalid type for parameter FaceAttributes"),
    ({"Video": s3("ok.mp4"), "ClientRequestToken": ""}, "Invalid length for parameter ClientRequestToken"),
    ({"Video": s3("ok.mp4", bucket="ab")}, "Invalid length for parameter Video.S3Object.Bucket"),
    ({"Video": s3("ok.mp4"), "NotificationChannel": {"SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:t"}},
     "Missing required parameter in NotificationChannel: \"RoleArn\""),
    ({"Video": {"Path": 5}}, "Video.Path"),
])
def test_malformed_calls_raise_param_validation_error(client, kwargs, fragment):
    with pytest.raises(ParamValidationError) as e:
        client.start_face_detection(**kwargs)
    assert fragment in str(e.value)


# -- bad values: InvalidParameterException with a message that says what to fix -------
@pytest.mark.parametrize("kwargs, fragment", [
    ({"FaceAttributes": "SOME"}, "FaceAttributes is 'SOME'; it must be one of DEFAULT, ALL"),
    ({"JobTag": "has space"}, "JobTag 'has space' does not match"),
    ({"ClientRequestToken": "t" * 65}, "ClientRequestToken is 65 characters long; at most 64"),
    ({"ClientRequestToken": "bad/token"}, "ClientRequestToken 'bad/token' does not match"),
    ({"NotificationChannel": {"SNSTopicArn": "not-an-arn", "RoleArn": "arn:aws:iam::123456789012:role/r"}},
     "NotificationChannel.SNSTopicArn 'not-an-arn' does not match"),
    ({"SampleRate": 0}, "SampleRate must be a number of frames per second in (0, 120]"),
    ({"SampleRate": "fast"}, "SampleRate must be"),
    ({"SampleRate": float("nan")}, "SampleRate must be"),
])
def test_bad_values_raise_invalid_parameter(client, kwargs, fragment):
    with pytest.raises(client.exceptions.InvalidParameterException) as e:
        client.start_face_detection(Video=s3("ok.mp4"), **kwargs)
    assert fragment in e.value.response["Error"]["Message"]


def test_version_on_a_local_bucket_is_refused(client):
    with pytest.raises(client.exceptions.InvalidParameterException, match="Version"):
        client.start_face_detection(Video=s3("ok.mp4", Version="3"))


def test_empty_video_member_is_refused(client):
    with pytest.raises(client.exceptions.InvalidParameterException, match="S3Object"):
        client.start_face_detection(Video={})


# -- video objects that cannot be read: InvalidS3ObjectException ----------------------
def test_object_names_never_leave_the_bucket_root(client, bucket, tmp_path):
    outside = tmp_path / "secret.mp4"
    numbered_video(outside, frames=3)
    os.symlink(outside, bucket / "link.mp4")
    (bucket / "sub").mkdir()
    for name in ["../secret.mp4", "sub/../../secret.mp4", "/etc/passwd", str(outside), "link.mp4"]:
        with pytest.raises(client.exceptions.InvalidS3ObjectException) as e:
            client.start_face_detection(Video=s3(name))
        assert "bucket" in e.value.response["Error"]["Message"]


def test_symlink_inside_the_root_is_fine(client, bucket):
    os.symlink(bucket / "ok.mp4", bucket / "alias.mp4")
    from rekolab.video import resolve_video
    assert resolve_video(s3("alias.mp4"), client.buckets).path == (bucket / "ok.mp4").resolve()


def test_missing_object_and_unknown_bucket(client):
    with pytest.raises(client.exceptions.InvalidS3ObjectException, match="not found"):
        client.start_face_detection(Video=s3("nope.mp4"))
    with pytest.raises(client.exceptions.InvalidS3ObjectException, match="not a configured local bucket"):
        client.start_face_detection(Video=s3("ok.mp4", bucket="elsewhere"))


def test_unreadable_object(client, bucket, monkeypatch):
    # CI runs as root, which reads any file whatever its mode, so the permission
    # answer is simulated at the one place rekolab asks it.
    import rekolab.video.source as source
    monkeypatch.setattr(source.os, "access", lambda path, mode: False)
    with pytest.raises(client.exceptions.InvalidS3ObjectException, match="not readable"):
        client.start_face_detection(Video=s3("ok.mp4"))


# -- files that are not usable videos: InvalidParameterException at Start -------------
def _wav(path: Path):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000)


@pytest.mark.parametrize("name, make, fragment", [
    ("empty.mp4", lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    ("text.mp4", lambda p: p.write_bytes(b"hello world\n" * 100), "not a readable video file"),
    ("random.mov", lambda p: p.write_bytes(os.urandom(20000)), "not a readable video file"),
    ("sound.wav", _wav, "has no video stream"),
    ("moov_lost.mp4", lambda p: p.write_bytes((MEDIA / "video/short_hamilton_clip.mp4").read_bytes()[:300000]),
     "not a readable video file"),
])
def test_unusable_files(client, bucket, name, make, fragment):
    make(bucket / name)
    with pytest.raises(client.exceptions.InvalidParameterException) as e:
        client.start_face_detection(Video=s3(name))
    assert fragment in e.value.response["Error"]["Message"]


def test_still_image_is_not_a_video(client, bucket, media):
    (bucket / "photo.mp4").write_bytes((media / "faces/obama.jpg").read_bytes())
    with pytest.raises(client.exceptions.InvalidParameterException, match="still image"):
        client.start_face_detection(Video=s3("photo.mp4"))


def test_over_10_gb_is_video_too_large(client, bucket):
    big = bucket / "big.mp4"
    with open(big, "wb") as f:  # sparse: takes no disk space
        f.truncate(10 * 1024**3 + 1)
    with pytest.raises(client.exceptions.VideoTooLargeException) as e:
        client.start_face_detection(Video=s3("big.mp4"))
    assert "maximum limit of: 10737418240 bytes" in e.value.response["Error"]["Message"]


def test_over_6_hours_is_video_too_large(client, bucket):
    import av
    import numpy as np

    # Two frames 6 h 1 s apart: the container says the video lasts over 6 hours.
    with av.open(str(bucket / "long.mp4"), "w") as c:
        st = c.add_stream("libx264", rate=1)
        st.width, st.height, st.pix_fmt = 64, 64, "yuv420p"
        for pts in (0, 6 * 3600 + 1):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = pts
            for p in st.encode(frame):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    with pytest.raises(client.exceptions.VideoTooLargeException, match="6 hours"):
        client.start_face_detection(Video=s3("long.mp4"))


# -- Get* errors ---------------------------------------------------------------------
def test_get_errors(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_face_detection(JobId="a" * 64)
    with pytest.raises(client.exceptions.InvalidParameterException, match="JobId"):
        client.get_face_detection(JobId="bad id!")
    with pytest.raises(ParamValidationError, match="MaxResults"):
        client.get_face_detection(JobId="a" * 64, MaxResults=0)
    with pytest.raises(ParamValidationError, match="JobId"):
        client.get_face_detection()


def test_errors_are_botocore_client_errors(client):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        client.get_face_detection(JobId="x" * 64)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert isinstance(e.value, rk.errors.ResourceNotFoundException)
    assert client.exceptions.ResourceNotFoundException is rk.errors.ResourceNotFoundException
    assert "GetFaceDetection" in str(e.value)


def test_nothing_written_outside_the_home(client, bucket, rekolab_home, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*"))
    for name in ["../x.mp4", "nope.mp4"]:
        with pytest.raises(rk.ClientError):
            client.start_face_detection(Video=s3(name))
    assert sorted(p for p in tmp_path.rglob("*")) == before
