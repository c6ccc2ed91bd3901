"""Detector scores on the shared media: the evidence behind models.faces.face_confidence.

    python scripts/measure_face_confidence.py   # needs REKOLAB_MODEL_DIR and ../shared/media
Prints, per still and for the Hamilton clip (2 frames/s), each face's detector
score, box height in pixels and the calibrated Confidence.
"""
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from rekolab.models.faces import face_confidence, face_pack

media = Path(os.environ.get("REKOLAB_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "media"
pack = face_pack()
print(f"pack {pack.name}")
rows = []
for img in sorted((media / "faces").iterdir()):
    bgr = cv2.imread(str(img))
    boxes, scores, _ = pack.detect(bgr)
    for b, s in zip(boxes, scores):
        rows.append(("still", img.name, float(s), float(b[3] - b[1])))
cap = cv2.VideoCapture(str(media / "video/short_hamilton_clip.mp4"))
fps = cap.get(cv2.CAP_PROP_FPS) or 25
i = 0
while True:
    ok, frame = cap.read()
    if not ok:
        break
    if i % max(1, round(fps / 2)) == 0:
        boxes, scores, _ = pack.detect(frame)
        for b, s in zip(boxes, scores):
            rows.append(("hamilton", f"frame {i}", float(s), float(b[3] - b[1])))
    i += 1
for kind, where, s, hpx in rows:
    print(f"{kind:9s} {where:28s} score {s:.3f} height {hpx:6.0f}px -> Confidence {face_confidence(s):7.3f}")
scores = np.array([r[2] for r in rows])
print("score percentiles 0/5/25/50/75/100:", np.percentile(scores, [0, 5, 25, 50, 75, 100]).round(3), file=sys.stderr)
