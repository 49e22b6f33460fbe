"""Pipeline reliability on awkward real captures: views without usable depth, views too far apart for dense
depth, truncated videos, a moving subject, and references with absurd poses."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import cv2  # before pycolmap: the other order breaks OpenCV's PNG writer (two zlib builds)
import numpy as np
import pytest
from support import box_room

from spatial.bundle import read_bundle
from spatial.bundle_files import read_points
from spatial.dense.fusion import FusionConfig, tsdf_mesh
from spatial.interop.colmap_io import write_colmap
from spatial.interop.nerfstudio_io import write_transforms
from spatial.interop.reference import read_reference
from twin_kit import InputError


def _twin(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "twin_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _one_error_line(r) -> str:
    assert r.returncode == 2, r.stderr[-1500:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


def test_views_without_usable_depth_are_skipped_not_fatal(capsys):
    """Scattered depth that touches no TSDF block (Open3D's "No block is touched") and an empty view."""
    _, cams, images, gts = box_room.scene(n=4, width=80, height=60)
    depths = [g.copy() for g in gts]
    scattered = np.zeros_like(depths[1], bool)
    scattered[1::4, 1::4] = True  # ~300 valid pixels, none on the grid Open3D samples
    depths[1] = np.where(scattered, depths[1], 0).astype(np.float32)
    depths[2][:] = 0
    mesh = tsdf_mesh(depths, images, cams, cfg=FusionConfig(target_triangles=5000))
    assert len(mesh.faces) > 500
    assert mesh.metadata["skipped_views"] == [cams[1].name, cams[2].name]
    err = capsys.readouterr().err
    assert "skipped 2 of 4 views" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="no valid depth"):
        tsdf_mesh([depths[1], depths[2]], images[1:3], cams[1:3])


def test_views_too_far_apart_still_give_a_sparse_bundle(bird_dir, tmp_path):
    """Every 23rd bird photo: cameras register but plane sweep finds no depth. The bundle keeps the cameras
    and the sparse points, has no collision mesh, and says so in a warning and in the manifest."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(1, 185, 23):
        shutil.copy(bird_dir / "images" / f"{i:03d}.jpg", photos)
    out = tmp_path / "b"
    r = _twin("reconstruct", photos, "--out", out, "--max-side", "480", "--quiet", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dense depth failed" in r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["dense_depth"] == "failed" and summary["mesh_triangles"] == 0
    b = read_bundle(out)
    rec = b.manifest["metrics"]["reconstruct"]
    assert rec["dense_depth"] == "failed" and rec["points_source"] == "sparse SfM" and not rec["collision_mesh"]
    assert any("dense depth failed" in n for n in rec["notes"])
    assert len(b.cameras) >= 3 and not b.paths.collision.exists()
    pts, _ = read_points(b.paths.points)
    assert len(pts) == rec["points"] > 0


def _orbit_video(bird_dir: Path, path: Path, first: int, count: int) -> Path:
    """A 10 fps H.264 video of consecutive bird photos, index (moov) at the start like a phone's."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 272, 480, "yuv420p"
        for i in range(first, first + count):
            img = cv2.resize(cv2.imread(str(bird_dir / "images" / f"{i:03d}.jpg")), (272, 480),
                             interpolation=cv2.INTER_AREA)
            for pkt in s.encode(av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def test_truncated_video_warns_and_is_recorded(bird_dir, tmp_path):
    data = _orbit_video(bird_dir, tmp_path / "full.mp4", 100, 40).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "b"
    r = _twin("reconstruct", cut, "--out", out, "--max-side", "480", "--depth-frames", "3", "--depth-max-side", "128",
              "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:") and "truncated" in ln]
    assert len(lines) == 1 and "of the 40" in lines[0], r.stderr
    rec = read_bundle(out).manifest["metrics"]["reconstruct"]
    assert rec["video"]["truncated"] and rec["video"]["frames_declared"] == 40
    assert 10 <= rec["video"]["frames_decoded"] < 30
    assert any("truncated" in n for n in rec["notes"])

    short = tmp_path / "short.mp4"
    short.write_bytes(data[: int(len(data) * 0.15)])
    line = _one_error_line(_twin("reconstruct", short, "--out", tmp_path / "b2"))
    assert "looks truncated or damaged" in line and "too few" in line
    assert not (tmp_path / "b2").exists()


def _bedroom_video(shared_data: Path, video: Path) -> Path:
    """The bedroom clip (children jumping on a bed, hand-held camera) as a 24 fps 480 x 270 H.264 video."""
    frames = sorted((shared_data / "bedroom").glob("*.jpg"))
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 480, 270, "yuv420p"
        for p in frames:
            img = cv2.resize(cv2.imread(str(p)), (480, 270), interpolation=cv2.INTER_AREA)
            for pkt in s.encode(av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return video


def test_real_video_with_moving_subjects_reconstructs(shared_data, tmp_path):
    """The bedroom clip goes through every stage."""
    video = _bedroom_video(shared_data, tmp_path / "bedroom.mp4")
    out = tmp_path / "b"
    r = _twin("reconstruct", video, "--out", out, "--depth-frames", "4", "--depth-max-side", "160", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    b = read_bundle(out)
    assert len(b.cameras) >= 3


def test_video_keyframes_that_do_not_register_are_retried_denser(shared_data, bird_dir, tmp_path, capsys):
    """When a video's keyframes register too few, SfM runs once more on keyframes twice as dense; here the first
    set is three views of two unrelated scenes (nothing to register), the retry the bedroom clip's own."""
    from spatial.capture.frames import Frame, FramesConfig, FrameSet
    from spatial.commands import ReconstructConfig
    from spatial.reconstruct import _from_video_sfm

    video = _bedroom_video(shared_data, tmp_path / "bedroom.mp4")
    bird = [cv2.cvtColor(cv2.resize(cv2.imread(str(bird_dir / "images" / f"{i:03d}.jpg")), (480, 270)),
                         cv2.COLOR_BGR2RGB) for i in (1, 90)]
    room = cv2.cvtColor(cv2.imread(str(shared_data / "bedroom" / "00100.jpg")), cv2.COLOR_BGR2RGB)
    room = cv2.resize(room, (480, 270), interpolation=cv2.INTER_AREA)
    first = FrameSet([Frame(f"frame_{k:06d}.png", img, (480, 270))
                      for k, img in enumerate((bird[0], room, bird[1]))], source="video")
    work = tmp_path / "work"
    work.mkdir()
    cfg = ReconstructConfig(input=video, out=tmp_path / "unused", quiet=True)
    frames, rec = _from_video_sfm(first, video, FramesConfig(max_side=cfg.max_side), work, cfg, None)
    assert len(frames.frames) > 5 and len(rec.cameras) >= 0.8 * len(frames.frames)
    assert {c.name for c in rec.cameras} <= {f.name for f in frames.frames}
    assert any("denser keyframes" in n for n in rec.report["notes"])
    err = capsys.readouterr().err
    assert "retrying with denser keyframes" in err and "of 3 frames could be registered" in err


@pytest.fixture()
def bird_reference(bird_dir):
    return read_reference(bird_dir / "sparse" / "0")


def test_eval_poses_refuses_absurd_transforms(bird_dir, bird_reference, tmp_path):
    est = bird_dir / "sparse" / "0"
    path = write_transforms(tmp_path / "ref", bird_reference)
    data = json.loads(path.read_text())
    data["frames"][2]["transform_matrix"][0][0] = 1e308
    path.write_text(json.dumps(data))
    line = _one_error_line(_twin("eval-poses", est, "--reference", path))
    assert "invalid pose" in line and bird_reference[2].name in line


def test_eval_poses_refuses_absurd_colmap_text_model(bird_dir, bird_reference, tmp_path):
    est = bird_dir / "sparse" / "0"
    model = write_colmap(tmp_path / "ref", bird_reference[:10], text=True)
    for f in ("frames.txt", "images.txt"):  # COLMAP 4 keeps poses in frames.txt, older models in images.txt
        p = model / f
        if not p.exists():
            continue
        lines = p.read_text().splitlines()
        k = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#"))
        parts = lines[k].split()
        parts[2 if f == "frames.txt" else 1] = "1e308"  # the quaternion's w
        lines[k] = " ".join(parts)
        p.write_text("\n".join(lines) + "\n")
    line = _one_error_line(_twin("eval-poses", est, "--reference", model))
    assert "invalid pose" in line
