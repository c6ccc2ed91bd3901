"""The bad-input corpus (issue #9): every file is made here by a recipe from
``rekolab.testing`` (nothing is copied in). Each case asserts its exact outcome —
the Rekognition error code at Start, a FAILED job with a readable StatusMessage, or
SUCCEEDED for unusual-but-valid video — within a time limit (a FIFO must not hang),
and that nothing was written outside the rekolab home.

Codecs: every encoder PyAV bundles here is covered (libx264 8/10-bit, libx265,
libvpx-vp9, libsvtav1, mjpeg, mpeg2video, mpeg4, gif)."""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import rekolab as rk
from rekolab import testing as t
from rekolab.testing import validate_response

from conftest import MEDIA, MODELS, module_env, need
from test_bad_input import _wav

HAMILTON = MEDIA / "video" / "short_hamilton_clip.mp4"
TRAFFIC = MEDIA / "video" / "slow_traffic_small.mp4"

IPE, S3, TOO_LARGE = "InvalidParameterException", "InvalidS3ObjectException", "VideoTooLargeException"
FAILED, OK = "FAILED", "SUCCEEDED"


def _png(p: Path):
    import cv2
    cv2.imwrite(str(p.with_suffix(".png")), np.full((100, 120, 3), 90, np.uint8))
    p.with_suffix(".png").rename(p)


def _jpeg(p: Path):
    import cv2
    ok, buf = cv2.imencode(".jpg", np.full((100, 120, 3), 90, np.uint8))
    p.write_bytes(buf.tobytes())


def _gif(p: Path):
    tmp = t.encoded_video(p.with_suffix(".gif"), "gif", size=(64, 64), frames=3, pix_fmt="rgb8", fmt="gif")
    tmp.rename(p)


def _cut(source, keep):
    return lambda p: p.write_bytes(need(source).read_bytes()[: int(source.stat().st_size * keep)])


def _fifo(p: Path):
    os.mkfifo(p)


def _symlink_loop(p: Path):
    os.symlink(p.name + ".b", p)
    os.symlink(p.name, p.with_name(p.name + ".b"))


def _dangling(p: Path):
    os.symlink("nowhere.mp4", p)


def _long_duration(p: Path):
    t.encoded_video(p, size=(64, 64), frames=2, fps=1, pts=[0, 6 * 3600 + 1])


def _sparse_10gb(p: Path):
    with open(p, "wb") as f:
        f.truncate(10 * 1024**3 + 1)


def _enc(**kw):
    return lambda p: t.encoded_video(p, **kw)


def _x265(**kw):
    return _enc(codec="libx265", options={"x265-params": "log-level=error"}, **kw)


# (case id, object name, recipe(path), expected: error code | FAILED | SUCCEEDED, message fragment)
CASES = [
    # -- not videos at all ------------------------------------------------------------------
    ("zero-bytes", "empty.mp4", lambda p: p.write_bytes(b""), IPE, "empty (0 bytes)"),
    ("random-bytes-mp4", "random.mp4", lambda p: p.write_bytes(np.random.default_rng(1).bytes(30000)), IPE,
     "not a readable video"),
    ("random-bytes-mov", "random.mov", lambda p: p.write_bytes(np.random.default_rng(2).bytes(3000)), IPE,
     "not a readable video"),
    ("one-byte", "one.mp4", lambda p: p.write_bytes(b"\x00"), IPE, "not a readable video"),
    ("html-as-mp4", "page.mp4", lambda p: p.write_text("<!doctype html><html><body>404</body></html>\n" * 50),
     IPE, "not a readable video"),
    ("text-as-mp4", "notes.mp4", lambda p: p.write_text("hello world\n" * 100), IPE, "not a readable video"),
    ("png-as-mp4", "photo.mp4", _png, IPE, "still image"),
    ("jpeg-as-mp4", "photo2.mp4", _jpeg, IPE, "still image"),
    ("gif-as-mp4", "anim.mp4", _gif, IPE, "still image"),
    ("wav-as-mp4", "sound.mp4", _wav, IPE, "has no video stream"),
    ("aac-audio-only", "audio.mp4", lambda p: t.audio_only(p), IPE, "has no video stream"),
    ("m4a-audio-only", "audio.m4a", lambda p: t.audio_only(p, "ipod"), IPE, "has no video stream"),
    ("zero-sample-track", "nosamples.mkv", t.zero_sample_video, IPE, "has no frames (zero samples)"),
    ("raw-h264-no-timestamps", "raw.h264", lambda p: t.remuxed(need(HAMILTON), p, "h264"), IPE,
     "frames carry no timestamps"),
    # -- containers cut or damaged before their index ------------------------------------------
    ("mp4-header-only", "head.mp4", _cut(HAMILTON, 0.00005), IPE, "not a readable video"),
    *[(f"moov-cut-{int(k * 100)}", f"moov{int(k * 100)}.mp4",
       lambda p, k=k: t.moov_truncated_video(need(HAMILTON), p, k), IPE, "index (moov) missing or cut off")
      for k in (0.1, 0.5, 0.9, 0.99)],
    ("moov-first-cut-in-moov", "inmoov.mp4", lambda p: t.truncated_video(need(HAMILTON), p, 0.001), IPE,
     "not a readable video"),
    ("ftyp-zeroed", "ftyp.mp4", lambda p: p.write_bytes(b"\0" * 16 + need(HAMILTON).read_bytes()[16:]), IPE,
     "not a readable video"),
    # -- frames too small to analyse ------------------------------------------------------------
    *[(f"tiny-{w}x{h}", f"tiny{w}x{h}.mp4", _enc(size=(w, h), frames=2, pix_fmt="yuv444p"), IPE,
       f"{w}x{h} pixels; rekolab needs at least 32x32")
      for w, h in [(1, 1), (2, 2), (16, 16), (640, 8), (8, 640), (31, 200)]],
    # -- objects that are not readable files ------------------------------------------------------
    ("fifo", "pipe.mp4", _fifo, S3, "is not a file"),
    ("symlink-loop", "loop.mp4", _symlink_loop, S3, "not found"),
    ("dangling-symlink", "dangling.mp4", _dangling, S3, "not found"),
    ("directory-named-mp4", "x.mp4", lambda p: p.mkdir(), S3, "is not a file"),
    ("missing", "absent.mp4", lambda p: None, S3, "not found"),
    ("name-over-255-bytes", "n" * 300 + ".mp4", lambda p: None, S3, "not found"),
    ("component-too-long", "d" * 260 + "/x.mp4", lambda p: None, S3, "not found"),
    ("dot-dot", "../outside.mp4", lambda p: None, S3, "must not contain '..'"),
    ("absolute-name", "/etc/hosts", lambda p: None, S3, "relative key"),  # names are used as given
    # -- over Rekognition's limits ---------------------------------------------------------------------
    ("over-10-gb", "big.mp4", _sparse_10gb, TOO_LARGE, "maximum limit of: 10737418240 bytes"),
    ("over-6-hours", "long.mp4", _long_duration, TOO_LARGE, "6 hours"),
    # -- data missing or damaged after a good start: the job FAILS, saying so ------------------
    *[(f"mdat-cut-{int(k * 100)}", f"cut{int(k * 100)}.mp4", lambda p, k=k: t.truncated_video(need(HAMILTON), p, k),
       FAILED, "the video is truncated") for k in (0.1, 0.3, 0.5, 0.7, 0.9, 0.97)],
    ("mdat-cut-traffic", "traffic_cut.mp4", lambda p: t.truncated_video(need(TRAFFIC), p, 0.6), FAILED,
     "the video is truncated"),
    ("ts-joined-end-to-end", "joined.ts", lambda p: p.write_bytes(
        t.remuxed(need(HAMILTON), p.with_suffix(".one.ts"), "mpegts").read_bytes() * 2), FAILED,
     "timestamps start again after 9175 ms"),
    ("ts-short-clips-joined", "joinedshort.ts", lambda p: p.write_bytes(t.encoded_video(
        p.with_suffix(".one.ts"), frames=20, fps=25, fmt="mpegts").read_bytes() * 2), FAILED,
     "timestamps repeat: two frames are at 0 ms"),
    ("mp4-joined-end-to-end", "joined.mp4", lambda p: p.write_bytes(need(HAMILTON).read_bytes() * 2), FAILED,
     "joined end to end (cat a.mp4 b.mp4?): a second one starts at byte 613928 of 1227856 (the last 50.0%"),
    ("fragmented-mp4-joined", "joinedfrag.mp4", lambda p: p.write_bytes(t.remuxed(
        need(HAMILTON), p.with_suffix(".one.mp4"), "mp4", options={"movflags": "frag_keyframe+empty_moov"}
    ).read_bytes() * 2), FAILED, "more than one MP4/MOV file joined end to end"),
    ("mkv-starting-at-10-s-cut", "late_cut.mkv", lambda p: p.write_bytes(t.remuxed(
        need(HAMILTON), p.with_suffix(".full.mkv"), "matroska", shift_s=10).read_bytes()[:250_000]),
     FAILED, "the video is truncated"),
    ("mkv-starting-at-10-min-cut", "later_cut.mkv", lambda p: p.write_bytes(t.remuxed(
        need(HAMILTON), p.with_suffix(".full.mkv"), "matroska", shift_s=600).read_bytes()[:440_000]),
     FAILED, "declares 9175 ms after its first frame at 600852 ms but the file's frames end at"),
    ("webm-cut", "cut.webm", lambda p: p.write_bytes(
        t.encoded_video(p.with_suffix(".full.webm"), "libvpx-vp9", size=(96, 64), frames=50).read_bytes()[:-2500]),
     FAILED, "the video is truncated"),
    *[(f"corrupt-middle-{int(a * 100)}", f"corrupt{int(a * 100)}.mp4",
       lambda p, a=a: t.corrupt_video(need(HAMILTON), p, at=a, length=20000), FAILED, "corrupt")
      for a in (0.05, 0.3, 0.6)],
    ("h264-ps-small-frames", "h264small.mpg", _enc(frames=100, fps=25, fmt="mpeg"), FAILED,
     "frames carry no timestamp of their own, and the other frames' times do not tell"),
    # -- unusual but valid: analysed ---------------------------------------------------------------
    ("ts-pes-without-times", "untimed.ts", lambda p: t.untimed_ts(need(HAMILTON), p, {5, 6, 100}), OK, ""),
    ("h264-10-bit", "h264_10.mp4", _enc(pix_fmt="yuv420p10le"), OK, ""),
    ("h264-yuv444", "h264_444.mp4", _enc(pix_fmt="yuv444p"), OK, ""),
    ("h264-full-range", "h264_j.mp4", _enc(pix_fmt="yuvj420p"), OK, ""),
    ("hevc-mp4", "hevc.mp4", _x265(), OK, ""),
    ("hevc-10-bit-mkv", "hevc10.mkv", _x265(pix_fmt="yuv420p10le"), OK, ""),
    ("vp9-webm", "vp9.webm", _enc(codec="libvpx-vp9"), OK, ""),
    ("av1-mp4", "av1.mp4", _enc(codec="libsvtav1", size=(128, 96)), OK, ""),
    ("av1-webm", "av1.webm", _enc(codec="libsvtav1", size=(128, 96)), OK, ""),
    ("mjpeg-avi", "mjpeg.avi", _enc(codec="mjpeg", pix_fmt="yuvj420p"), OK, ""),
    ("mpeg2-ps", "mpeg2.mpg", _enc(codec="mpeg2video", fmt="mpeg"), OK, ""),
    ("h264-ps", "h264.mpg", _enc(size=(1280, 720), frames=25, fps=25, fmt="mpeg"), OK, ""),
    ("mkv-1200-fps", "fast1200.mkv", _enc(frames=300, fps=1200, fmt="matroska"), OK, ""),
    ("mpeg4-part2", "mpeg4.avi", _enc(codec="mpeg4"), OK, ""),
    ("mpeg-ts", "stream.ts", _enc(fmt="mpegts"), OK, ""),
    ("mp4-fragmented", "frag.mp4", lambda p: t.remuxed(need(HAMILTON), p, "mp4",
                                                         options={"movflags": "frag_keyframe+empty_moov"}), OK, ""),
    ("mp4-zero-padded", "padded.mp4", lambda p: p.write_bytes(need(HAMILTON).read_bytes() + b"\0" * 65536), OK, ""),
    ("mkv-starting-at-10-s", "late.mkv", lambda p: t.remuxed(need(HAMILTON), p, "matroska", shift_s=10), OK, ""),
    ("vfr", "vfr.mp4", _enc(frames=6, pts=[0, 1, 5, 6, 20, 21]), OK, ""),
    *[(f"rotated-{d}", f"rot{d}.mp4", _enc(rotation=d), OK, "") for d in (90, 180, 270)],
    ("one-frame", "single.mp4", _enc(frames=1), OK, ""),
    ("forty-ms", "short.mp4", _enc(frames=1, fps=25), OK, ""),
    ("one-fps", "slow.mp4", _enc(frames=3, fps=1), OK, ""),
    ("120-fps", "fast.mp4", _enc(frames=12, fps=120), OK, ""),
    ("odd-size", "odd.mp4", _enc(size=(321, 241), pix_fmt="yuv444p"), OK, ""),
    ("narrow-48", "narrow.mp4", _enc(size=(48, 64)), OK, ""),
    ("wide-strip", "strip.mp4", _enc(size=(2000, 32)), OK, ""),
    ("big-frames", "big4k.mp4", _enc(size=(3840, 2160), frames=2, options={"preset": "ultrafast"}), OK, ""),
    ("unicode-name", "vidéo 日本語 🎬.mp4", _enc(), OK, ""),
    ("space-name", "my holiday video.mp4", _enc(), OK, ""),
    ("newline-name", "two\nlines.mp4", _enc(), OK, ""),
    ("quote-name", "it's \"quoted\".mp4", _enc(), OK, ""),
    ("long-name-250", "l" * 246 + ".mp4", _enc(), OK, ""),
    ("deep-folder", "a/b/c/d/e/f/clip.mp4", _enc(), OK, ""),
    ("no-extension", "clip", _enc(fmt="mp4"), OK, ""),
    ("wrong-extension", "clip.avi", _enc(fmt="mp4"), OK, ""),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need(MODELS / "insightface" / "models")
    with module_env(tmp_path_factory, "corpus-home") as home:
        bucket = tmp_path_factory.mktemp("corpus-bucket")
        yield rk.client(buckets={"media": str(bucket)}), bucket, home


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


READABLE = re.compile(r"^[^\[\]]*$")  # no decoder log lines ("[h264 @ 0x...]", "[20:51:55] ndarray.cc")


@pytest.mark.parametrize("case, name, make, expected, fragment", CASES, ids=[c[0] for c in CASES])
def test_corpus(env, case, name, make, expected, fragment):
    client, bucket, home = env
    key = name if name.startswith(("/", "..")) else f"{case}/{name}"
    target = bucket / case / name
    (bucket / case).mkdir()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a folder name the file system refuses: the object cannot exist
        pass
    make(target)
    before, cwd_before = _snapshot(bucket), set(os.listdir("."))
    outcome: dict = {}

    def call():
        try:
            job_id = client.start_face_detection(
                Video={"S3Object": {"Bucket": "media", "Name": key}}, SampleRate=2)["JobId"]
            client.jobs.wait(job_id, timeout=120)
            outcome["page"] = client.get_face_detection(JobId=job_id)
        except Exception as exc:  # judged below: only Rekognition codes are right
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(150)
    assert not worker.is_alive(), f"{case}: hung"
    error = outcome.get("error")
    if expected in (FAILED, OK):
        assert error is None, f"{case}: raised {type(error).__name__}: {error}"
        page = outcome["page"]
        validate_response("GetFaceDetection", page)
        assert page["JobStatus"] == expected, (case, page.get("StatusMessage"))
        if expected == FAILED:
            message = page["StatusMessage"]
            assert fragment in message and READABLE.match(message), message
            assert "Faces" not in page
    else:
        assert isinstance(error, rk.ClientError), f"{case}: {type(error).__name__}: {error}"
        assert error.response["Error"]["Code"] == expected, (case, error.response["Error"])
        message = error.response["Error"]["Message"]
        assert fragment in message and READABLE.match(message.split(": ", 1)[-1][:200]), message
    assert _snapshot(bucket) == before, f"{case}: the bucket changed"
    assert set(os.listdir(".")) == cwd_before, f"{case}: wrote into the working directory"
    assert not list(Path(home).glob("*.part")), "no stray partial files"


def test_corpus_is_big_enough():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
