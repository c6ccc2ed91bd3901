"""Decoding: exact frames and timestamps, bounded memory."""
from __future__ import annotations

import numpy as np
import pytest

from rekolab.testing import numbered_video, read_frame_number, remuxed
from rekolab.video import plan, probe, sample_indices


@pytest.mark.parametrize("gop", [None, 10])
@pytest.mark.parametrize("fps, rate, batch_size", [(25, 5, 4), (25, 25, 7), (30, 7, 3), (10, 30, 16)])
def test_every_sampled_frame_is_the_frame_asked_for(tmp_path, fps, rate, batch_size, gop):
    """Frame i shows i: the batches (and the decoder flush between them) never return
    a frame from the wrong position, with one GOP or a keyframe every 10 frames."""
    video = numbered_video(tmp_path / "n.mp4", frames=300, fps=fps, gop=gop)
    p = plan(video, rate)
    seen, stamps = [], []
    for batch in p.batches(batch_size=batch_size):
        seen += [read_frame_number(f) for f in batch.frames]
        stamps += batch.timestamps_ms.tolist()
    assert seen == p.indices.tolist()
    # Timestamps are PTS: frame i of a constant-rate video is at floor(1000 i / fps),
    # exactly (decord's float32 seconds would give 16299 for frame 163 at 10 fps).
    assert stamps == [1000 * i // fps for i in seen]
    # The first frame at or after each multiple of 1/rate seconds.
    expected = sorted({-(-k * fps // rate) for k in range(0, 300 * rate // fps + 1)} - {300})
    assert seen == [i for i in expected if i < 300]


def test_sample_indices_pick_first_frame_at_or_after_each_target():
    starts = np.array([0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24, 0.28])
    assert sample_indices(starts, 10).tolist() == [0, 3, 5]
    assert sample_indices(starts, 100).tolist() == list(range(8))


def test_probe_numbers(tmp_path):
    meta = probe(numbered_video(tmp_path / "n.mp4", frames=50, fps=25, size=(320, 240)))
    assert (meta.codec, meta.format, meta.frame_rate, meta.frame_width, meta.frame_height) == \
        ("h264", "QuickTime / MOV", 25.0, 320, 240)
    assert meta.duration_ms == 2000 and meta.color_range == "LIMITED"


@pytest.mark.parametrize("fmt", ["mp4", "mpegts", "matroska"])
def test_a_part_of_a_plan_seeks_to_its_frames(tmp_path, fmt, monkeypatch):
    """A segment of the plan (``plan.part``, as the segmented executors decode) seeks to
    the keyframe before its first frame and returns exactly its frames, also in MPEG-TS,
    which has no index (FFmpeg's seek there searches by DTS): a part after the first GOP
    never decodes from the stream's start, nor from the GOP before its own (where a seek to
    the keyframe's DTS lands in MP4 and Matroska, x264's B-frames putting DTS before PTS)."""
    import threading

    import rekolab.video.decode as decode

    video = numbered_video(tmp_path / "n.mp4", frames=240, fps=25, gop=50)
    if fmt != "mp4":
        video = remuxed(video, tmp_path / f"n.{fmt}", fmt)
    p = plan(video, 5)
    tries = []
    real = decode._decode_from

    def spy(plan, stop, beat, target, convert):
        landed = yield from real(plan, stop, beat, target, convert)
        tries.append((target, landed))
        return landed

    monkeypatch.setattr(decode, "_decode_from", spy)
    for start, end in [(0, 3), (7, 12), (23, 26), (len(p) - 1, len(p)), (len(p), len(p))]:
        part = p.part(start, end)
        tries.clear()
        seen = [read_frame_number(f) for b in part.batches(batch_size=4) for f in b.frames]
        assert seen == p.indices[start:end].tolist()
        if start == end:
            continue
        first = int(p.indices[start])
        landed = [t for t, ok in tries if ok]
        assert len(landed) == 1 and (landed[0] is None) == (first < 50), tries  # one decode per part
        # ... from the keyframe at or before the part's first frame: packets read
        packets = [0]
        list(decode._decode_sampled(part, threading.Event(), beat=lambda: packets.__setitem__(0, packets[0] + 1)))
        assert packets[0] <= first % 50 + int(p.indices[end - 1]) - first + 4, (start, packets[0])


def test_av1_frames_after_a_keyframe_decode(tmp_path):
    """libdav1d (FFmpeg's AV1 decoder) reads skip_frame once, when it opens: a decode whose
    first packet was marked NONREF (a part of a plan, or the frame viewer, starting after the
    keyframe) dropped every non-reference frame of the video ("the decoder returned no
    frame ... corrupt")."""
    from rekolab.testing import encoded_video
    from rekolab.widgets.frames import FrameSource

    video = encoded_video(tmp_path / "a.mkv", codec="libsvtav1", size=(128, 96), frames=20,
                          options={"preset": "12"})
    p = plan(video, 25)
    full = [f for b in p.batches() for f in b.frames]
    for start in (1, 5):
        part = [f for b in p.part(start, start + 3).batches() for f in b.frames]
        assert len(part) == 3 and all(np.array_equal(a, b) for a, b in zip(part, full[start:])), start
    src = FrameSource(video)
    assert np.array_equal(src.frame(index=1), full[1])  # a run started at frame 1


def test_a_video_cut_mid_gop_starts_at_its_first_keyframe(tmp_path):
    """A recording that starts mid-GOP (MPEG-TS cut from a broadcast): the frames before
    its first keyframe cannot be decoded, so sampling starts at the first keyframe and
    the job does not fail as corrupt; frame numbers still count the leading frames."""
    video = numbered_video(tmp_path / "n.mp4", frames=120, fps=25, gop=50)
    cut = remuxed(video, tmp_path / "cut.ts", "mpegts", drop_first=20)  # the first 20 packets are gone
    p = plan(cut, 5)
    seen = [read_frame_number(f) for b in p.batches() for f in b.frames]
    assert len(seen) == len(p) > 0 and seen[0] == 50  # the second keyframe of the original
    assert [s - seen[0] for s in seen] == (p.indices - p.indices[0]).tolist()


def _decord():
    """decord2 (a test dependency only: rekolab decodes with PyAV), imported without its
    preload of every pip CUDA library (~600 MB of RSS with torch's CUDA wheels)."""
    import sys

    hidden = "nvidia" not in sys.modules and "decord" not in sys.modules
    if hidden:
        sys.modules["nvidia"] = None  # importlib.util.find_spec("nvidia") -> None
    try:
        import decord
    finally:
        if hidden:
            del sys.modules["nvidia"]
    return decord


def test_frames_are_the_pixels_decord_gave(tmp_path):
    """The PyAV decoder returns the pixels decord2 returned for the same request: the
    same frames, scaled (bicubic, in YUV) and turned as displayed."""
    import av
    import cv2

    from conftest import MEDIA, need
    from rekolab.testing import write_video
    from rekolab.video.decode import decode_size

    clip = need(MEDIA / "video" / "short_hamilton_clip.mp4")
    with av.open(str(clip)) as c:
        rgb = [f.to_ndarray(format="rgb24") for _, f in zip(range(6), c.decode(video=0))]
    videos = [clip,
              write_video(tmp_path / "hd.mp4", [cv2.resize(f, (1920, 1080)) for f in rgb], 25),
              write_video(tmp_path / "side.mp4", [cv2.resize(f, (1280, 1080)) for f in rgb], 25, rotation=90)]
    decord = _decord()
    for video in videos:
        meta = probe(video)
        p = plan(video, 5, meta)
        ours = np.concatenate([b.frames for b in p.batches()])
        w, h = decode_size(meta.frame_width, meta.frame_height)
        theirs = decord.VideoReader(str(video), ctx=decord.cpu(0), num_threads=1, width=w, height=h)
        assert np.array_equal(ours, theirs.get_batch(p.indices.tolist()).asnumpy()), video.name


def _batch_of(n: int):
    from rekolab.video.decode import FrameBatch
    return FrameBatch(frames=np.zeros((1, 2, 2, 3), np.uint8), timestamps_ms=np.array([n]), indices=np.array([n]))


def test_prefetch_fails_a_stalled_decoder_but_not_a_slow_one(monkeypatch):
    """Both decoders' background thread (``prefetched``): a decoder that reads no packet for
    STALL_TIMEOUT_S fails in words; one that reads packets but yields rarely does not; its
    errors reach the consumer; closing the consumer stops the thread."""
    import threading
    import time

    from rekolab.video import decode

    monkeypatch.setattr(decode, "STALL_TIMEOUT_S", 0.4)

    def stuck(stop, beat):
        yield _batch_of(0)
        stop.wait(30)  # an FFmpeg call that never returns: no beat
        yield _batch_of(1)

    t0 = time.monotonic()
    got = []
    with pytest.raises(decode.VideoDecodeError, match="read nothing for 0 s"):
        for b in decode.prefetched(stuck):
            got.append(int(b.indices[0]))
    assert got == [0] and time.monotonic() - t0 < 5

    def slow(stop, beat):  # 0.8 s between batches, a packet every 0.05 s
        for n in range(2):
            for _ in range(16):
                beat()
                time.sleep(0.05)
            yield _batch_of(n)

    assert [int(b.indices[0]) for b in decode.prefetched(slow)] == [0, 1]

    def broken(stop, beat):
        yield _batch_of(0)
        raise decode.VideoDecodeError("corrupt at 40 ms")

    with pytest.raises(decode.VideoDecodeError, match="corrupt at 40 ms"):
        list(decode.prefetched(broken))

    ran = threading.Event()

    def endless(stop, beat):
        n = 0
        while True:
            ran.set()
            beat()
            yield _batch_of(n)
            n += 1

    batches = decode.prefetched(endless, name="rekolab-test-endless")
    assert int(next(batches).indices[0]) == 0
    batches.close()  # the consumer stops: the thread ends
    assert ran.is_set()  # (a count of all threads would see other tests' threads come and go)
    assert not [t for t in threading.enumerate() if t.name == "rekolab-test-endless"]


def test_every_frame_decoder_beats_per_packet(tmp_path, monkeypatch):
    """The every-frame decoder (segment detection) reads through the same prefetch: it
    beats for every packet, so its batches arrive and a stall would be caught."""
    from rekolab.video import decode
    from rekolab.video.every_frame import every_frame_plan

    video = numbered_video(tmp_path / "n.mp4", frames=20, fps=10)
    beats = []
    real = decode.prefetched

    def counting(produce, *args, **kw):
        def wrapped(stop, beat):
            return produce(stop, lambda: (beats.append(1), beat()))
        return real(wrapped, *args, **kw)

    monkeypatch.setattr("rekolab.video.every_frame.prefetched", counting)
    batches = list(every_frame_plan(video).batches(batch_size=8))
    assert [len(b.indices) for b in batches] == [8, 8, 4] and len(beats) >= 20


def test_b_frames_at_low_frame_rates_are_no_timestamp_restart(tmp_path):
    """x264's B-frames at 1 fps go back seconds in decode order (and Matroska leaves the first
    packets' DTS unset), one frame every 10 s more so: no restart for either decoder. AVI's
    frame times are in decode order: with B-frames its frames come out with times that go
    back, which the every-frame decoder (segment detection) refuses with a remux hint instead
    of giving segments out of order, as the sampled decoder does; without B-frames it decodes
    them. Two copies of a TS one
    after the other are a restart for both."""
    from rekolab.testing import encoded_video
    from rekolab.video.container import scan_packets
    from rekolab.video.decode import VideoDecodeError, plan
    from rekolab.video.every_frame import every_frame_plan

    def every(path):
        return sum(len(b.indices) for b in every_frame_plan(path).batches(batch_size=8))

    for name, kw in [("b.mkv", {}), ("sparse.mkv", {"pts": [10 * i for i in range(10)]})]:
        video = encoded_video(tmp_path / name, frames=10, fps=1, fmt="matroska", **kw)
        scan = scan_packets(video)
        assert scan.restart_ms is None and scan.missing() is None, (name, scan.missing())
        assert len(plan(video, 1)) == 10 and every(video) == 10, name
    for fps, options in [(1, None), (25, None), (25, {"x264-params": "bframes=2:b-pyramid=none"})]:
        # Without a B-pyramid frame times come out 0, 2, 3, 1: a sampled frame seems dropped
        # twice before one goes back; the next keyframe would say it was.
        avi = encoded_video(tmp_path / f"b{fps}{options is not None}.avi", frames=10, fps=fps, fmt="avi",
                            options=options)
        with pytest.raises(VideoDecodeError, match="not in presentation order .* remux it to MP4"):
            every(avi)
        with pytest.raises(VideoDecodeError, match="not in presentation order"):  # every frame sampled
            list(plan(avi, fps).batches(8, 2))
    intra = encoded_video(tmp_path / "intra.avi", frames=10, fps=1, fmt="avi", options={"x264-params": "bframes=0"})
    ms = [int(t) for b in every_frame_plan(intra).batches(batch_size=8) for t in b.timestamps_ms]
    assert ms == [ms[0] + 1000 * i for i in range(10)], ms  # in order, one second apart
    one = encoded_video(tmp_path / "one.ts", frames=40, fps=25, fmt="mpegts")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(one.read_bytes() * 2)
    assert scan_packets(one).restart_ms is None and scan_packets(joined).restart_ms == 1600
    with pytest.raises(VideoDecodeError, match="timestamps start again after 15"):
        every(joined)
    # Two 0.8 s clips: the second starts again less than a second before the first ends, so
    # no keyframe is a second back; the packets' times repeat, and decoded frames go back.
    short = encoded_video(tmp_path / "short.ts", frames=20, fps=25, fmt="mpegts")
    joined.write_bytes(short.read_bytes() * 2)
    assert scan_packets(short).missing() is None
    assert "timestamps repeat: two frames are at 0 ms" in scan_packets(joined).missing()
    with pytest.raises(VideoDecodeError, match="timestamps repeat"):
        plan(joined, 5)
    with pytest.raises(VideoDecodeError, match="not in presentation order"):
        every(joined)


def test_frames_without_a_time_of_their_own_and_frames_sharing_one(tmp_path):
    """Frames whose packet carries no time (MPEG-TS needs a PTS only every 0.7 s) get the time
    of the one-frame hole the others leave, in both decoders, so every frame keeps its number,
    its time and its pixels. Where the times do not tell where they go (after the last timed
    frame, a real gap as well), and in MPEG-PS (FFmpeg's muxer puts several
    small H.264 frames in one packet, whose one time does not always go to the right frame),
    the video fails, saying so,
    instead of its frames being numbered and timed by the timed ones alone. Matroska stores
    whole milliseconds, so above 1000 fps two frames can share a time: no decode-order time
    goes back, so that is no repeat, and the first stands."""
    from rekolab.testing import encoded_video, numbered_video, read_frame_number, untimed_ts
    from rekolab.widgets.frames import FrameSource
    from rekolab.video.container import scan_packets
    from rekolab.video.decode import VideoDecodeError, plan
    from rekolab.video.every_frame import EveryFramePlan

    numbered = numbered_video(tmp_path / "n.mp4", frames=60, size=(320, 240))  # x264 veryfast: B-frames
    ts = untimed_ts(numbered, tmp_path / "untimed.ts", {2, 10, 11, 30})
    scan = scan_packets(ts)
    assert (scan.untimed, len(scan.placed), len(scan.pts), scan.missing()) == (4, 4, 60, None)
    every = [(n, ms, read_frame_number(rgb)) for n, ms, rgb in EveryFramePlan(ts, max_width=None).frames()]
    assert every == [(i, 40 * i, i) for i in range(60)]
    for rate in (25, 5):
        got = [(int(n), int(ms), read_frame_number(rgb)) for b in plan(ts, rate).batches(8, 2)
               for n, ms, rgb in zip(b.indices, b.timestamps_ms, b.frames)]
        assert got == [(i, 40 * i, i) for i in range(0, 60, 25 // rate)], rate
    viewer = FrameSource(ts)  # the notebook's frame viewer and the exports read them alike
    assert [read_frame_number(f) for _, f in viewer.frames(range(60))] == list(range(60))
    assert read_frame_number(FrameSource(ts).frame(index=11)) == 11
    # Untimed frames past the last timed one (nothing says how many are there); a real one-frame
    # gap (frame 10 never was) and an untimed last frame, which would fit that gap by count alone;
    # a real two-frame gap and an untimed frame elsewhere.
    last = untimed_ts(numbered, tmp_path / "last.ts", {60})
    gap1 = encoded_video(tmp_path / "gap1.mp4", frames=60, size=(320, 240), pts=[*range(10), *range(11, 61)])
    gap2 = encoded_video(tmp_path / "gap2.mp4", frames=30, size=(320, 240), pts=[*range(10), *range(12, 32)])
    for video, frames in [(last, 60), (untimed_ts(gap1, tmp_path / "gap1.ts", {60}), 60),
                          (untimed_ts(gap2, tmp_path / "gap2.ts", {5}), 30)]:
        for decoder in (lambda p: plan(p, 5), EveryFramePlan, FrameSource):
            with pytest.raises(VideoDecodeError, match=rf"^1 of the video's {frames} frames carry no timestamp of "
                                                       "their own, and the other frames' times do not tell where"):
                decoder(video)

    small = encoded_video(tmp_path / "small.mpg", frames=100, fps=25, size=(96, 64), fmt="mpeg")
    scan = scan_packets(small)
    assert scan.untimed > 50 and scan.untimed + len(scan.pts) == 100 and not scan.placed
    with pytest.raises(VideoDecodeError, match=rf"^{scan.untimed} of the video's 100 frames carry no "
                                               "timestamp .* re-encode it"):
        plan(small, 1)
    with pytest.raises(VideoDecodeError, match="frames carry no timestamp"):
        EveryFramePlan(small)
    big = encoded_video(tmp_path / "big.mpg", frames=50, fps=25, size=(1280, 720), fmt="mpeg")
    scan = scan_packets(big)
    assert (scan.untimed, scan.repeat_ms, scan.missing()) == (0, None, None)
    for rate in (1, 2, 25):
        sampled = plan(big, rate)
        ms = [int(t) for b in sampled.batches(8, 2) for t in b.timestamps_ms]
        assert ms == [40 * int(i) for i in sampled.indices] and len(ms) == {1: 2, 2: 4, 25: 50}[rate], (rate, ms)
    assert [ms for _, ms, _ in EveryFramePlan(big).frames()] == [40 * i for i in range(50)]

    fast = encoded_video(tmp_path / "fast.mkv", frames=300, fps=1200, size=(96, 64), fmt="matroska")
    scan = scan_packets(fast)
    assert scan.missing() is None and len(set(scan.pts)) < len(scan.pts) == 300  # shared ms
    sampled = plan(fast, 2000)
    ms = [int(t) for b in sampled.batches(16, 2) for t in b.timestamps_ms]
    assert ms == sorted(set(ms)) and len(ms) == len(set(scan.pts)), ms[:10]
    assert [n for n, _, _ in EveryFramePlan(fast).frames()] == list(range(300))
    viewer, tied = FrameSource(fast), next(i for i in range(1, 300) if scan.pts[i] == scan.pts[i - 1])
    assert np.array_equal(viewer.frame(index=tied), FrameSource(fast).frame(index=tied - 1))  # the first stands
    assert [i for i, _ in viewer.frames(range(tied - 2, tied + 3))] == list(range(tied - 2, tied + 3))


def test_mp4_files_joined_end_to_end_are_found_by_their_boxes(tmp_path):
    """cat a.mp4 b.mp4: FFmpeg goes by the first file's moov and returns its frames alone (a
    fragmented file's second half comes back with its times starting again); the top-level
    boxes show where the second file starts. Whole files of every MP4 layout rekolab writes
    or reads, and trailing padding, are not joins."""
    from conftest import MEDIA, need
    from rekolab.testing import encoded_video
    from rekolab.video.container import joined_file_at, scan_packets
    from rekolab.video.decode import VideoDecodeError
    from rekolab.video.every_frame import every_frame_plan

    HAMILTON = need(MEDIA / "video" / "short_hamilton_clip.mp4")
    mov = "mov,mp4,m4a,3gp,3g2,mj2"
    layouts = {
        "plain.mp4": HAMILTON,
        "fast.mp4": remuxed(HAMILTON, tmp_path / "fast.mp4", "mp4", options={"movflags": "faststart"}),
        "frag.mp4": remuxed(HAMILTON, tmp_path / "frag.mp4", "mp4",
                            options={"movflags": "frag_keyframe+empty_moov"}),
        "a.mov": remuxed(HAMILTON, tmp_path / "a.mov", "mov"),
        "small.mp4": encoded_video(tmp_path / "small.mp4", frames=10),
    }
    for name, one in layouts.items():
        data = one.read_bytes()
        assert joined_file_at(one, mov) is None, name
        padded = tmp_path / f"padded-{name}"
        padded.write_bytes(data + b"\0" * 4096)  # a box of size 0: "to the end of the file"
        assert joined_file_at(padded, mov) is None, name
        joined = tmp_path / f"joined-{name}"
        joined.write_bytes(data + data)
        assert joined_file_at(joined, mov) == (len(data), b"ftyp"), name
        assert joined_file_at(joined, "mpegts") is None  # only ISO BMFF is walked
        message = scan_packets(joined).missing()
        assert message.startswith("the file holds more than one MP4/MOV file joined end to end"), message
        assert f"a second one starts at byte {len(data)} of {2 * len(data)} (the last 50.0% of the file)" \
            in message, message
        with pytest.raises(VideoDecodeError, match="joined end to end"):
            plan(joined, 1)
        with pytest.raises(VideoDecodeError, match="joined end to end"):
            every_frame_plan(joined)
    # A signature (Motion JPEG 2000's "jP  ") or a padding box may come before the ftyp: one file.
    # Fragment offsets here are relative to their moof, so the file stays whole and valid.
    rel = remuxed(HAMILTON, tmp_path / "rel.mp4", "mp4",
                  options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}).read_bytes()
    for lead in [(12).to_bytes(4, "big") + b"jP  " + b"\r\n\x87\n", (8).to_bytes(4, "big") + b"free",
                 (8).to_bytes(4, "big") + b"wide"]:
        led = tmp_path / "led.mp4"
        led.write_bytes(lead + rel)
        assert joined_file_at(led, mov) is None and scan_packets(led).missing() is None, lead[4:8]
        assert len(plan(led, 1)) == 10
        led.write_bytes((lead + rel) * 2)
        assert joined_file_at(led, mov) == (2 * len(lead) + len(rel), b"ftyp"), lead[4:8]  # its ftyp
    # An old QuickTime file has no ftyp: two joined are told by their second index (moov).
    mov_data = layouts["a.mov"].read_bytes()
    assert mov_data[4:8] == b"ftyp"
    bare = (b"\0\0\0" + bytes([mov_data[3]]) + b"free" + mov_data[8:])  # the ftyp turned into padding
    old = tmp_path / "old.mov"
    old.write_bytes(bare)
    assert joined_file_at(old, mov) is None and scan_packets(old).missing() is None
    old.write_bytes(bare * 2)
    at, kind = joined_file_at(old, mov)
    assert kind == b"moov" and at > len(bare)
    assert f"a second index (moov) starts at byte {at} of {2 * len(bare)}" in scan_packets(old).missing()
    # A 64-bit box size is followed; a header that makes no sense ends the walk (FFmpeg decides).
    ftyp = (20).to_bytes(4, "big") + b"ftypisom" + b"\0" * 8
    mdat = (8).to_bytes(4, "big") + b"mdat"
    big = (1).to_bytes(4, "big") + b"free" + (24).to_bytes(8, "big") + b"\0" * 8
    odd = tmp_path / "boxes.mp4"
    odd.write_bytes(ftyp + mdat + big + ftyp)
    assert joined_file_at(odd, mov) == (20 + 8 + 24, b"ftyp")
    odd.write_bytes(ftyp + big + ftyp)  # no media before the second ftyp: not two files
    assert joined_file_at(odd, mov) is None
    odd.write_bytes(ftyp + mdat + (3).to_bytes(4, "big") + b"junk" + ftyp)
    assert joined_file_at(odd, mov) is None
