"""Face Confidence calibration (models.faces.face_confidence): one monotone curve,
clear faces on the shared stills >= 99, detections at the detector's floor low."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MEDIA, need
from rekolab.models.faces import face_confidence, face_score


def test_curve_is_monotone_and_invertible():
    s = np.linspace(0.0, 1.0, 1001)
    c = face_confidence(s)
    assert np.all(np.diff(c) > 0) and 0 <= c.min() and c.max() <= 100
    assert face_confidence(0.5) < 25 and face_confidence(0.55) == pytest.approx(50)
    np.testing.assert_allclose(face_score(face_confidence(s[100:900])), s[100:900], atol=1e-9)


def test_clear_faces_read_99(models_dir):
    import cv2

    from rekolab.models.faces import face_pack

    pack = face_pack()
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "lin-manuel-miranda.png", "alex-lacamoire.png",
                 "two_people.jpg"):
        _, scores, _ = pack.detect(cv2.imread(str(need(MEDIA / "faces" / name))))
        assert len(scores) and face_confidence(scores).min() >= 99, (name, scores)
