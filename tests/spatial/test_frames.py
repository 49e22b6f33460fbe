"""Frames in: keyframes from generated videos, photo folders with corrupt, huge and EXIF-tagged images."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from spatial.capture.frames import FramesConfig, load_frames
from twin_kit.errors import InputError


def _texture(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A feature-rich RGB image: smoothed noise at two scales plus random rectangles."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    img = cv2.addWeighted(img, 0.6, cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 0),
                          0.4, 0)
    for _ in range(150):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))),
                      tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.bit_rate = 4_000_000
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


def test_video_keyframes_follow_parallax_not_frame_count(tmp_path):
    tex = _texture(620, 480)
    w, h = 320, 240
    xs = [int(round(x)) for x in np.linspace(0, 620 - w, 90)]  # a steady pan: 3.3 px per frame
    frames = [tex[100:100 + h, x:x + w] for x in xs]
    frames += [frames[-1]] * 30  # then the camera stops: no new keyframes may come from here
    blur = cv2.GaussianBlur(frames[40], (0, 0), 3)
    frames[40] = blur  # a blurred frame is never picked when a sharper neighbour exists
    _write_video(tmp_path / "pan.mp4", frames)
    cfg = FramesConfig(max_side=160, parallax=0.05)
    fs = load_frames(tmp_path / "pan.mp4", cfg)
    assert fs.source == "video"
    idx = [int(f.name[6:12]) for f in fs.frames]
    assert 8 <= len(idx) <= 25, idx
    assert all(b > a for a, b in zip(idx, idx[1:]))
    assert 40 not in idx
    assert idx[-1] <= 95  # the static tail adds nothing
    assert fs.frames[0].image.shape == (120, 160, 3) and fs.frames[0].original_size == (320, 240)
    assert fs.frames[1].timestamp > fs.frames[0].timestamp
    # keyframes come every ~10 px of flow (5 % of the 200 px diagonal at 160 px), i.e. every ~6 frames
    assert 4 <= np.median(np.diff(idx)) <= 9, idx

    fewer = load_frames(tmp_path / "pan.mp4", FramesConfig(max_side=160, parallax=0.05, max_keyframes=5))
    assert len(fewer.frames) == 5


def test_static_video_is_refused(tmp_path):
    tex = _texture(320, 240, seed=3)
    _write_video(tmp_path / "static.mp4", [tex] * 40)
    with pytest.raises(InputError, match="no camera motion"):
        load_frames(tmp_path / "static.mp4", FramesConfig(max_side=160))


def _save_photos(folder: Path, n: int, size=(200, 150)) -> None:
    folder.mkdir(exist_ok=True)
    tex = _texture(size[0] + 20 * n, size[1], seed=1)
    for i in range(n):
        Image.fromarray(tex[:, 20 * i:20 * i + size[0]]).save(folder / f"img{i + 1}.JPG", quality=90)


def test_photos_sorted_corrupt_skipped_with_reason(tmp_path):
    d = tmp_path / "photos"
    _save_photos(d, 11)
    (d / "img5.JPG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "notes.txt").write_text("ignored")
    good = (d / "img3.JPG").read_bytes()
    (d / "img7.JPG").write_bytes(good[: len(good) // 3])  # truncated
    fs = load_frames(d, FramesConfig())
    names = [f.name for f in fs.frames]
    assert names == [f"img{i}.JPG" for i in (1, 2, 3, 4, 6, 8, 9, 10, 11)]  # natural order: 10 after 9
    skipped = dict(fs.skipped)
    assert set(skipped) == {"img5.JPG", "img7.JPG"}
    assert all("unreadable" in r for r in skipped.values())
    assert fs.frames[0].image.shape == (150, 200, 3) and fs.frames[0].image.dtype == np.uint8


def test_fewer_than_three_and_missing_are_input_errors(tmp_path):
    d = tmp_path / "two"
    _save_photos(d, 2)
    (d / "bad.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="2 usable images .*need at least 3"):
        load_frames(d, FramesConfig())
    with pytest.raises(InputError, match="no such file"):
        load_frames(tmp_path / "nothing_here", FramesConfig())


def test_huge_photo_is_reduced_while_decoding(tmp_path):
    import subprocess
    import sys

    d = tmp_path / "huge"
    d.mkdir()
    big = cv2.resize(_texture(400, 300, seed=2), (8000, 6000), interpolation=cv2.INTER_LINEAR)
    Image.fromarray(big).save(d / "a.jpg", quality=80)
    del big
    for n in ("b.jpg", "c.jpg"):
        Image.fromarray(_texture(400, 300, seed=5)).save(d / n)
    fs = load_frames(d, FramesConfig(max_side=960))
    a = fs.frames[0]
    assert a.image.shape == (720, 960, 3) and a.original_size == (8000, 6000)
    # peak memory of a fresh process reading it: a full 8000x6000 RGB decode alone would add 144 MB
    code = ("import resource, sys; from pathlib import Path; from spatial.capture.frames import read_photo; "
            "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "read_photo(Path(sys.argv[1]), 960) if len(sys.argv) > 1 else None; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0)")
    grow_kb = int(subprocess.run([sys.executable, "-c", code, str(d / "a.jpg")], capture_output=True, text=True,
                                 check=True).stdout)
    assert grow_kb < 60_000, grow_kb


def test_exif_focal_and_orientation(tmp_path):
    d = tmp_path / "exif"
    d.mkdir()
    tex = _texture(400, 300, seed=4)
    for i in range(3):
        im = Image.fromarray(tex)
        exif = Image.Exif()
        exif[0x0112] = 6 if i == 0 else 1  # first photo stored sideways: rotate 90 degrees clockwise to view
        ifd = exif.get_ifd(0x8769)
        if i == 1:
            ifd[41989] = 26  # FocalLengthIn35mmFilm
        if i == 2:
            ifd[37386] = 4.0  # FocalLength mm
            ifd[41486] = 100.0  # FocalPlaneXResolution: 100 px per mm
            ifd[41488] = 4  # unit: mm
        im.save(d / f"p{i}.jpg", exif=exif, quality=95)
    fs = load_frames(d, FramesConfig(max_side=200))
    f0, f1, f2 = fs.frames
    assert f0.image.shape == (200, 150, 3) and f0.original_size == (300, 400)
    assert np.abs(f0.image.astype(int)[:, :, 0] - cv2.resize(np.rot90(tex, -1), (150, 200))[:, :, 0]).mean() < 12
    assert f0.focal_px is None
    assert f1.focal_px == pytest.approx(26 * np.hypot(400, 300) / np.hypot(36, 24) * 0.5, rel=1e-6)
    assert f2.focal_px == pytest.approx(400.0 * 0.5, rel=1e-6)
