"""FaceTracker: one id per continuous appearance."""
import numpy as np

from rekolab.analysis.tracking import FaceTracker, iou_matrix


def test_iou_matrix():
    a = np.array([[0, 0, 2, 2]], float)
    b = np.array([[1, 1, 3, 3], [5, 5, 6, 6]], float)
    assert np.allclose(iou_matrix(a, b), [[1 / 7, 0]])


def test_tracks_follow_moving_boxes_and_swap_order():
    t = FaceTracker()
    assert t.update(0, [[0.1, 0.1, 0.3, 0.4], [0.6, 0.1, 0.8, 0.4]]) == [0, 1]
    assert t.update(200, [[0.62, 0.12, 0.82, 0.42], [0.11, 0.1, 0.31, 0.4]]) == [1, 0]


def test_gap_longer_than_max_starts_a_new_track():
    t = FaceTracker(max_gap_ms=1000)
    t.update(0, [[0.1, 0.1, 0.3, 0.4]])
    assert t.update(800, [[0.1, 0.1, 0.3, 0.4]]) == [0]
    assert t.update(1900, [[0.1, 0.1, 0.3, 0.4]]) == [1]


def test_embedding_bridges_a_jump_but_not_a_different_face():
    e1, e2 = np.eye(4)[0], np.eye(4)[1]
    t = FaceTracker()
    t.update(0, [[0.1, 0.1, 0.3, 0.4]], np.array([e1]))
    # Moved too far for IoU, but the same face nearby: same track.
    assert t.update(200, [[0.25, 0.1, 0.45, 0.4]], np.array([e1])) == [0]
    # Overlapping box but a different face: IoU alone still links it (0.9 IoU).
    assert t.update(400, [[0.26, 0.1, 0.46, 0.4]], np.array([e2])) == [0]
    # A different face far away: new track.
    assert t.update(600, [[0.7, 0.5, 0.9, 0.8]], np.array([e2])) == [1]
