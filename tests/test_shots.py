"""Shot boundaries (rekolab.analysis.shots) on every frame: recipe videos with cuts
at known frames, and the real clips."""
from __future__ import annotations

from fractions import Fraction

import pytest

from conftest import MEDIA, need
from rekolab.analysis.shots import ShotDetector, detect_shots
from rekolab.testing import spliced_video
from rekolab.video.every_frame import every_frame_plan

VIDEO = MEDIA / "video"


@pytest.fixture(scope="module")
def spliced(tmp_path_factory):
    """Four real clips with a black run and SMPTE bars between them, at 29.97 fps."""
    for name in ("mmaction2_basketball.mp4", "mmaction2_demo_armwrestling.mp4", "slow_traffic_small.mp4"):
        need(VIDEO / name)
    path = tmp_path_factory.mktemp("shots") / "spliced.mp4"
    starts = spliced_video(path, [
        ("clip", VIDEO / "mmaction2_basketball.mp4", 0, 30),
        ("black", 12),
        ("clip", VIDEO / "mmaction2_demo_armwrestling.mp4", 0, 30),
        ("bars", 15, "smpte"),
        ("clip", VIDEO / "slow_traffic_small.mp4", 0, 25),
    ], size=(320, 180), fps=Fraction(30000, 1001))
    return path, starts


def test_every_cut_at_the_exact_frame(spliced):
    path, starts = spliced
    shots = detect_shots(path)
    assert [s.start_frame for s in shots] == starts
    assert [s.end_frame for s in shots] == starts[1:] + [112]
    assert [s.index for s in shots] == list(range(len(starts)))
    assert all(50 <= s.confidence <= 100 for s in shots)


def test_shot_times_are_exact_pts(spliced):
    path, starts = spliced
    pts = {n: ms for n, ms, _ in every_frame_plan(path, max_width=64).frames()}
    shots = detect_shots(path)
    for shot in shots[:-1]:
        assert shot.start_ms == pts[shot.start_frame] == shot.start_frame * 1001 // 30
        assert shot.end_ms == pts[shot.end_frame]
    assert shots[-1].end_ms == 112 * 1001 // 30  # the stream's duration: where the last frame ends


def test_incremental_detector_reports_cuts_as_it_goes(spliced):
    path, starts = spliced
    det = ShotDetector(fps=29.97)
    seen = []
    for n, ms, rgb in every_frame_plan(path).frames():
        for cut in det.update(n, ms, rgb):
            assert n - cut <= 2  # known two frames late at most (the adaptive window)
            seen.append(cut)
    assert seen == starts[1:] == det.cuts


def test_real_clips():
    # The Hamilton clip has four shots (pianist, close-up, singer, audience: cuts
    # checked by eye at frames 20, 82 and 211); the basketball clip is one shot.
    hamilton = detect_shots(need(VIDEO / "short_hamilton_clip.mp4"))
    assert [s.start_frame for s in hamilton] == [0, 20, 82, 211]
    assert hamilton[-1].end_frame == 275
    basketball = detect_shots(need(VIDEO / "mmaction2_basketball.mp4"))
    assert [(s.start_frame, s.end_frame) for s in basketball] == [(0, 300)]
