"""The batched shot measures (rekolab.analysis.shots.downscale / content_deltas /
ShotDetector.update_batch) give exactly what PySceneDetect computes frame by frame."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import MEDIA, need
from rekolab.analysis.shots import ANALYSIS_WIDTH, ShotDetector, content_deltas, downscale
from rekolab.video.every_frame import every_frame_plan

cv2 = pytest.importorskip("cv2")
scenedetect = pytest.importorskip("scenedetect")


@pytest.fixture(scope="module")
def frames():
    """The Hamilton clip's first 100 frames (RGB, 640 x 360; cuts at 20 and 82)."""
    plan = every_frame_plan(need(MEDIA / "video" / "short_hamilton_clip.mp4"))
    return np.stack([rgb for _, _, rgb in itertools.islice(plan.frames(), 100)])


def test_batch_downscale_is_the_per_frame_resize(frames):
    for width in (ANALYSIS_WIDTH, 160, 200):  # two exact halvings of 640 x 360, one not
        h = int(round(360 * width / 640))
        each = np.stack([cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA) for f in frames[:9]])
        assert np.array_equal(downscale(frames[:9], width), each)
    two = frames[:2]
    assert downscale(two, 640) is two  # not wider than asked: untouched


def test_content_deltas_are_content_detectors_scores(frames):
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector

    small = downscale(frames[:30], ANALYSIS_WIDTH)
    reference = ContentDetector()
    expected = [reference._calculate_frame_score(FrameTimecode(i, 29.97), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
                for i, f in enumerate(small)]
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in small])
    deltas = np.concatenate([content_deltas(hsv[:11], None), content_deltas(hsv[11:], hsv[10])])
    assert deltas.shape == (29, 3)
    got = [0.0] + [sum(c * w for c, w in zip((*d, 0.0), reference._weights)) / 3.0 for d in deltas.tolist()]
    assert got == expected  # exactly, not approximately
    assert max(got) > 15  # the cut at frame 20 is in there


def test_batches_of_any_size_give_the_stock_detectors_cuts(frames):
    from scenedetect import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector

    stock = AdaptiveDetector(adaptive_threshold=3.5, min_scene_len=8, window_width=2, min_content_val=15.0)
    small = downscale(frames, ANALYSIS_WIDTH)
    stock_cuts = [int(tc.frame_num) for i, f in enumerate(small)
                  for tc in stock.process_frame(FrameTimecode(i, 29.97), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))]
    assert stock_cuts == [20, 82]
    results = []
    for size in (1, 7, 16, 100):
        det = ShotDetector(fps=29.97)
        for a in range(0, len(frames), size):
            numbers = list(range(a, min(a + size, len(frames))))
            det.update_batch(numbers, [n * 33 for n in numbers], frames[a:a + size])
        assert det.cuts == stock_cuts
        results.append(det.finish())
    assert all(r == results[0] for r in results)
    assert [s.start_frame for s in results[0]] == [0, 20, 82]


def test_every_frame_scaling_gives_pyav_default_pixels(tmp_path):
    """every_frame scales with swscale on the decode thread (``threads=1``); a 1280 x
    720 video scaled to 640 x 360 gets the very pixels PyAV's default conversion gives."""
    import av

    from rekolab.testing import spliced_video

    path = tmp_path / "big.mp4"
    spliced_video(path, [("clip", need(MEDIA / "video" / "short_hamilton_clip.mp4"), 15, 8)], size=(1280, 720))
    with av.open(str(path)) as container:
        single = [f.to_ndarray(format="rgb24", width=640, height=360) for f in container.decode(video=0)]
    threaded = [rgb for _, _, rgb in every_frame_plan(path, max_width=640).frames()]
    assert len(threaded) == len(single) == 8
    assert all(np.array_equal(a, b) for a, b in zip(threaded, single))


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_every_frame_plan_turns_frames_as_displayed(tmp_path, rotation):
    """Segment detection's every-frame decoder applies the container's display
    matrix exactly as the sampled decoder (PyAV) does: same shape, same pixels."""
    from rekolab.testing import encoded_video
    from rekolab.video import plan as plan_decode
    from rekolab.video.every_frame import every_frame_plan

    path = encoded_video(tmp_path / f"r{rotation}.mp4", size=(160, 96), frames=3, rotation=rotation)
    plan = every_frame_plan(path, max_width=None)
    every = [rgb for _, _, rgb in plan.frames()]
    sampled = next(iter(plan_decode(path, 100).batches(16))).frames
    assert (plan.width, plan.height) == ((96, 160) if rotation in (90, 270) else (160, 96))
    assert every[0].shape == sampled[0].shape == (plan.height, plan.width, 3)
    assert np.array_equal(every[0], sampled[0])
