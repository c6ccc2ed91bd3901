"""Segment detection: SHOT and TECHNICAL_CUE segments on every frame of recipe
videos (real clips cut together with black runs, colour bars and a credits card at
known frames) and of the real Hamilton clip; SMPTE timecodes; filters."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from botocore.exceptions import ParamValidationError

import rekolab as rk
from conftest import MEDIA, module_env, need
from rekolab import cli
from rekolab.analysis.segments import bars_score, black_coverage
from rekolab.results.segments import smpte_timecode
from rekolab.testing import all_pages, color_bars, spliced_video, validate_response

VIDEO = MEDIA / "video"
NTSC = 30000 / 1001


@pytest.mark.parametrize("frame, fps, expected", [
    (0, NTSC, "00:00:00;00"), (29, NTSC, "00:00:00;29"), (30, NTSC, "00:00:01;00"),
    (1799, NTSC, "00:00:59;29"), (1800, NTSC, "00:01:00;02"),      # ;00 and ;01 are dropped
    (3597, NTSC, "00:01:59;29"), (3598, NTSC, "00:02:00;02"),
    (17981, NTSC, "00:09:59;29"), (17982, NTSC, "00:10:00;00"),    # not at each tenth minute
    (107892, NTSC, "01:00:00;00"),                                 # one hour of 29.97 fps
    (3599, 60000 / 1001, "00:00:59;59"), (3600, 60000 / 1001, "00:01:00;04"),
    (0, 25, "00:00:00:00"), (249, 25, "00:00:09:24"), (90000, 25, "01:00:00:00"),
    (1440, 24000 / 1001, "00:01:00:00"),                           # 23.976: non-drop, counted at 24
    (86400, 24, "01:00:00:00"),
])
def test_smpte_timecodes(frame, fps, expected):
    assert smpte_timecode(frame, fps) == expected


def test_black_frame_and_bars_measures():
    frame = np.full((90, 160, 3), 40, np.uint8)  # luma 40: black under 0.2 (51), not under 0.1 (25.5)
    assert black_coverage(frame, 0.2) == 100.0 and black_coverage(frame, 0.1) == 0.0
    frame[:, :3] = 255  # 3 of 160 columns white: 98.1 % black pixels
    assert 98.0 < black_coverage(frame, 0.2) < 98.2
    assert black_coverage(np.zeros((4, 4, 3), np.uint8), 0.0) == 100.0  # 0: only pure black
    assert bars_score(color_bars(160, 90, "smpte")) == 1.0
    assert bars_score(color_bars(160, 90, "ebu")) == 1.0
    assert bars_score(np.full((90, 160, 3), 128, np.uint8)) < 0.2  # only the "white" column matches
    assert bars_score(np.ascontiguousarray(color_bars(160, 90, "smpte")[:, ::-1])) < 0.5  # mirrored bars


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with module_env(tmp_path_factory, "segments") as home:
        yield home


@pytest.fixture
def home(env, monkeypatch):
    monkeypatch.setenv("REKOLAB_HOME", str(env))
    return env


PARTS = [
    ("card", 50, ["A FILM BY", "JOHN SMITH"]),
    ("bars", 15, "smpte"),
    ("black", 10),
    ("clip", VIDEO / "mmaction2_basketball.mp4", 0, 30),
    ("black", 12),
    ("clip", VIDEO / "mmaction2_demo_armwrestling.mp4", 0, 30),
    ("bars", 15, "ebu"),
    ("card", 50, ["DIRECTED BY", "JANE DOE"]),
    ("clip", VIDEO / "short_hamilton_clip.mp4", 30, 20),
]


@pytest.fixture(scope="module")
def spliced(env, tmp_path_factory):
    for name in ("mmaction2_basketball.mp4", "mmaction2_demo_armwrestling.mp4", "short_hamilton_clip.mp4"):
        need(VIDEO / name)
    path = tmp_path_factory.mktemp("segments") / "spliced.mp4"
    starts = spliced_video(path, PARTS, size=(320, 180), fps=Fraction(30000, 1001))
    job = rk.start_segment_detection(path, ["TECHNICAL_CUE", "SHOT"]).wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    return job, starts, 232


def _pages(job, **kw):
    return all_pages(job._client.get_segment_detection, "GetSegmentDetection", JobId=job.id, **kw)


def test_every_cut_black_run_bars_and_credits_at_the_exact_frame(home, spliced):
    job, starts, total = spliced
    segments = [s for p in _pages(job) for s in p["Segments"]]
    cues = [(s["TechnicalCueSegment"]["Type"], s["StartFrameNumber"], s["EndFrameNumber"])
            for s in segments if s["Type"] == "TECHNICAL_CUE"]
    ends = starts[1:] + [total]
    assert cues == [
        ("OpeningCredits", starts[0], ends[0]),
        ("ColorBars", starts[1], ends[1]), ("BlackFrames", starts[2], ends[2]), ("Content", starts[3], ends[3]),
        ("BlackFrames", starts[4], ends[4]), ("Content", starts[5], ends[5]), ("ColorBars", starts[6], ends[6]),
        ("EndCredits", starts[7], ends[7]), ("Content", starts[8], ends[8]),
    ]
    shots = [s for s in segments if s["Type"] == "SHOT"]
    assert [(s["StartFrameNumber"], s["EndFrameNumber"]) for s in shots] == list(zip(starts, ends))
    assert [s["ShotSegment"]["Index"] for s in shots] == list(range(len(starts)))
    # cues first, then shots: the order of the request's SegmentTypes
    assert [s["Type"] for s in segments] == ["TECHNICAL_CUE"] * len(cues) + ["SHOT"] * len(shots)
    for s in segments:
        a, b = s["StartFrameNumber"], s["EndFrameNumber"]
        assert s["StartTimestampMillis"] == a * 1001 // 30  # exact PTS, rounded down
        assert s["EndTimestampMillis"] == b * 1001 // 30
        assert s["DurationMillis"] == s["EndTimestampMillis"] - s["StartTimestampMillis"]
        assert s["DurationFrames"] == b - a
        assert s["StartTimecodeSMPTE"] == smpte_timecode(a, NTSC) and ";" in s["StartTimecodeSMPTE"]
        assert s["EndTimecodeSMPTE"] == smpte_timecode(b, NTSC)
        assert s["DurationSMPTE"] == smpte_timecode(b - a, NTSC)
        conf = (s.get("ShotSegment") or s.get("TechnicalCueSegment"))["Confidence"]
        assert 50 <= conf <= 100


def test_pages_metadata_and_views(home, spliced, tmp_path):
    job, starts, total = spliced
    pages = _pages(job, MaxResults=5)
    assert len(pages) == 4  # 9 cues + 9 shots
    for page in pages:
        assert [m["FrameRate"] for m in page["VideoMetadata"]] == [pytest.approx(NTSC, abs=1e-3)]
        assert page["AudioMetadata"] == []  # the recipe video has no audio
        assert [t["Type"] for t in page["SelectedSegmentTypes"]] == ["TECHNICAL_CUE", "SHOT"]
        assert all(t["ModelVersion"] for t in page["SelectedSegmentTypes"])
    df = job.to_pandas()
    assert len(df) == sum(len(p["Segments"]) for p in pages) == 18
    assert job.models["NotProduced"] == ["Slate", "StudioLogo"]
    names = set(job.view().lanes().names)
    assert names == {"OpeningCredits", "ColorBars", "BlackFrames", "Content", "EndCredits", "shot (even)",
                     "shot (odd)"}
    lines = job.to_jsonl(tmp_path / "segments.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [s for p in pages for s in p["Segments"]]


def test_real_clip_shots_and_audio(home):
    job = rk.start_segment_detection(need(VIDEO / "short_hamilton_clip.mp4"), ["SHOT"]).wait(progress=False)
    assert job.status == "SUCCEEDED", job.status_message
    (page,) = _pages(job)
    assert [s["StartFrameNumber"] for s in page["Segments"]] == [0, 20, 82, 211]
    assert page["Segments"][-1]["EndFrameNumber"] == 275
    assert page["Segments"][-1]["EndTimestampMillis"] == page["VideoMetadata"][0]["DurationMillis"]
    (audio,) = page["AudioMetadata"]
    # the clip's AAC track: 441344 samples at 44.1 kHz stereo (longer than its video)
    assert audio == {"Codec": "aac", "SampleRate": 44100, "NumberOfChannels": 2, "DurationMillis": 10007}
    assert [t["Type"] for t in page["SelectedSegmentTypes"]] == ["SHOT"]


def test_black_frame_filter_reaches_the_job(home, tmp_path):
    """Dark gray (luma 40) frames are black at MaxPixelThreshold 0.2, not at 0.1."""
    gray = [np.full((180, 320, 3), 40, np.uint8)] * 12
    path = tmp_path / "gray.mp4"
    spliced_video(path, [("clip", need(VIDEO / "mmaction2_basketball.mp4"), 0, 12), ("frames", gray),
                         ("clip", VIDEO / "mmaction2_basketball.mp4", 12, 12)], fps=25)
    found = {}
    for threshold in (0.2, 0.1):
        job = rk.start_segment_detection(path, ["TECHNICAL_CUE"], black_max_pixel_threshold=threshold,
                                         cue_min_confidence=50).wait(progress=False)
        (page,) = _pages(job)
        found[threshold] = [(s["TechnicalCueSegment"]["Type"], s["StartFrameNumber"], s["EndFrameNumber"])
                            for s in page["Segments"]]
    assert found[0.2] == [("Content", 0, 12), ("BlackFrames", 12, 24), ("Content", 24, 36)]
    assert found[0.1] == [("Content", 0, 36)]


@pytest.mark.parametrize("kwargs, field", [
    ({"SegmentTypes": ["SHOT"], "Filters": {"ShotFilter": {"MinSegmentConfidence": 101}}},
     "Filters.ShotFilter.MinSegmentConfidence"),
    ({"SegmentTypes": ["TECHNICAL_CUE"], "Filters": {"TechnicalCueFilter": {"MinSegmentConfidence": 100.5}}},
     "Filters.TechnicalCueFilter.MinSegmentConfidence"),
    ({"SegmentTypes": ["TECHNICAL_CUE"], "Filters": {"TechnicalCueFilter": {"BlackFrame": {"MaxPixelThreshold": 1.5}}}},
     "Filters.TechnicalCueFilter.BlackFrame.MaxPixelThreshold"),
    ({"SegmentTypes": ["TECHNICAL_CUE"],
      "Filters": {"TechnicalCueFilter": {"BlackFrame": {"MinCoveragePercentage": 150}}}},
     "Filters.TechnicalCueFilter.BlackFrame.MinCoveragePercentage"),
    ({"SegmentTypes": ["SHOT", "SHOT"]}, "SegmentTypes"),
    ({"SegmentTypes": ["SCENE"]}, "SegmentTypes[0]"),
])
def test_bad_filters_name_the_field(rekolab_home, tmp_path, kwargs, field):
    video = tmp_path / "v.mp4"
    spliced_video(video, [("black", 2)], size=(64, 64))
    with pytest.raises(rk.errors.InvalidParameterException) as e:
        rk.client().start_segment_detection(Video={"Path": str(video)}, **kwargs)
    assert field in str(e.value)
    assert not (rekolab_home / "jobs").exists() or not any((rekolab_home / "jobs").iterdir())


def test_values_under_the_model_minimum_are_botocore_errors(tmp_path):
    with pytest.raises(ParamValidationError, match="MinSegmentConfidence"):
        rk.client().start_segment_detection(Video={"Path": str(tmp_path / "v.mp4")}, SegmentTypes=["SHOT"],
                                            Filters={"ShotFilter": {"MinSegmentConfidence": 40}})
    with pytest.raises(ParamValidationError, match="SegmentTypes"):
        rk.client().start_segment_detection(Video={"Path": str(tmp_path / "v.mp4")}, SegmentTypes=[])


def test_cli_segments(home, tmp_path, capsys):
    video = tmp_path / "two.mp4"
    spliced_video(video, [("clip", need(VIDEO / "mmaction2_basketball.mp4"), 0, 12),
                          ("clip", need(VIDEO / "short_hamilton_clip.mp4"), 100, 12)], fps=25)
    out = tmp_path / "shots.jsonl"
    assert cli.main(["segments", str(video), "--types", "SHOT", "-q", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "shot 1" in printed and "00:00:00:12 - 00:00:00:24" in printed  # frames 12-24 at 25 fps
    assert [json.loads(line)["StartFrameNumber"] for line in out.read_text().splitlines()] == [0, 12]
    assert cli.main(["segments", str(video), "--types", "SHOT", "--min-confidence", "101", "-q"]) == 1
    assert "MinSegmentConfidence" in capsys.readouterr().err


def test_truncated_video_fails_the_job(home, tmp_path):
    from rekolab.testing import truncated_video

    path = truncated_video(need(VIDEO / "mmaction2_basketball.mp4"), tmp_path / "cut.mp4", keep=0.5)
    job = rk.start_segment_detection(path, ["SHOT"]).wait(progress=False)
    assert job.status == "FAILED" and "truncated or corrupt" in job.status_message
    page = job._client.get_segment_detection(JobId=job.id)
    validate_response("GetSegmentDetection", page)
    assert "Segments" not in page and page["JobStatus"] == "FAILED"


def test_streams_joined_end_to_end_fail_the_job(home, tmp_path):
    """cat a.ts a.ts: the frames of the second copy start again at 0 ms; the job fails
    saying so instead of reporting shots with times that go backwards."""
    from rekolab.testing import remuxed

    one = remuxed(need(VIDEO / "short_hamilton_clip.mp4"), tmp_path / "one.ts", "mpegts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(one.read_bytes() * 2)
    assert rk.start_segment_detection(one, ["SHOT"]).wait(progress=False).status == "SUCCEEDED"
    job = rk.start_segment_detection(joined, ["SHOT"]).wait(progress=False)
    assert job.status == "FAILED" and "timestamps start again after 91" in job.status_message, job.status_message
    assert "Segments" not in job._client.get_segment_detection(JobId=job.id)
    from rekolab.testing import encoded_video  # an AVI keeps decode-order times: B-frames come out of order
    avi = encoded_video(tmp_path / "b.avi", frames=40, fps=25, fmt="avi")
    job = rk.start_segment_detection(avi, ["SHOT"]).wait(progress=False)
    assert job.status == "FAILED" and "not in presentation order" in job.status_message, job.status_message
    mp4 = tmp_path / "joined.mp4"
    mp4.write_bytes(need(VIDEO / "short_hamilton_clip.mp4").read_bytes() * 2)  # FFmpeg reads the first alone
    job = rk.start_segment_detection(mp4, ["SHOT"]).wait(progress=False)
    assert job.status == "FAILED" and "joined end to end (cat a.mp4 b.mp4?)" in job.status_message, \
        job.status_message
