"""Make docs/timeline.png, the timeline picture in the README.

Runs a face-detection job on the Hamilton clip (../shared/media) with the offline
weights (../shared/models) in a temporary rekolab home, and saves ``job.plot()``.

    python scripts/make_readme_figure.py [--out docs/timeline.png] [--sample-rate 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "timeline.png")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("REKOLAB_SHARED") or REPO.parent / "shared"))
    parser.add_argument("--sample-rate", type=float, default=5.0)
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args(argv)
    video = args.shared / "media" / "video" / "short_hamilton_clip.mp4"
    if not video.exists():
        print(f"error: needs {video} (the shared media)", file=sys.stderr)
        return 1
    os.environ.setdefault("REKOLAB_MODEL_DIR", str(args.shared / "models"))
    with tempfile.TemporaryDirectory(prefix="rekolab-figure-") as home:
        os.environ["REKOLAB_HOME"] = home
        import rekolab as rk

        job = rk.start_face_detection(video, sample_rate=args.sample_rate).wait(progress=False)
        if job.status != "SUCCEEDED":
            print(f"error: the job FAILED: {job.status_message}", file=sys.stderr)
            return 1
        fig = job.plot(width_in=9.0, dpi=args.dpi)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=args.dpi)
        lanes = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        rows, frames = job._record.rows, job._record.sampled_frames
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(lanes)} face-track lanes, "
          f"{rows} faces in {frames} sampled frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
