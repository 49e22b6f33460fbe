"""Camera stage reliability: deterministic SfM, sparse photo sets against pycolmap's own default pipeline,
photos of odd sizes, and captures without camera motion."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2  # before pycolmap: the other order breaks OpenCV's PNG writer (two zlib builds)
import numpy as np
import pycolmap
import pytest

from spatial.bundle import read_bundle
from spatial.capture.frames import Frame, FramesConfig, FrameSet, load_frames
from spatial.evaluation.metrics import evaluate_poses
from spatial.interop.reference import read_reference
from spatial.sfm._intrinsics import camera_groups
from spatial.sfm.mapper import SfmConfig, run_sfm


def _twin(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "twin_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _bird_photos(bird_dir: Path, dest: Path, numbers) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i in numbers:
        shutil.copy(bird_dir / "images" / f"{i:03d}.jpg", dest)
    return dest


def _pycolmap_default(photos: Path, work: Path) -> int:
    """Frames registered by pycolmap's default pipeline (SIFT, exhaustive matching, incremental mapping)."""
    work.mkdir(parents=True, exist_ok=True)
    pycolmap.extract_features(work / "db.db", photos)
    pycolmap.match_exhaustive(work / "db.db")
    recs = pycolmap.incremental_mapping(work / "db.db", photos, work / "sparse")
    return max((r.num_reg_images() for r in recs.values()), default=0)


_SFM_RUN = """
import sys
import numpy as np
from spatial.capture.frames import FramesConfig, load_frames
from spatial.sfm.mapper import SfmConfig, run_sfm
import pycolmap
photos, work, matching, out = sys.argv[1:5]
frames = load_frames(photos, FramesConfig(max_side=320))
res = run_sfm(frames, work, SfmConfig(num_threads=2, matching=matching, overlap=3, loop_candidates=2))
db = pycolmap.Database.open(work + "/database.db")
order = [im.name for im in sorted(db.read_all_images(), key=lambda im: im.image_id)]
db.close()
np.savez(out, names=np.array([c.name for c in res.cameras]), w2c=np.stack([c.world_to_cam for c in res.cameras]),
         fx=np.array([c.fx for c in res.cameras]), points=res.points, order=np.array(order),
         frames=len(frames.frames))
"""


@pytest.mark.parametrize("matching", ["exhaustive", "sequential"])  # photo sets; videos (+ loop candidates)
def test_sfm_is_deterministic_with_two_threads(bird_dir, tmp_path, matching):
    """Image ids follow frame order (not extraction-thread order) and mapping sums in one order, so two runs
    of the same capture give bitwise identical cameras and points (the flaky depth coverage of test_reconstruct
    came from this). Each run is its own process, as two `twin reconstruct` runs are."""
    photos = _bird_photos(bird_dir, tmp_path / "p", range(100, 120, 2))
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}.npz"
        r = subprocess.run([sys.executable, "-c", _SFM_RUN, str(photos), str(tmp_path / f"w{k}"), matching, str(out)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(np.load(out))
    a, b = runs
    assert a["order"].tolist() == [f"{i:05d}.png" for i in range(int(a["frames"]))]
    assert len(a["names"]) == int(a["frames"])
    assert a["names"].tolist() == b["names"].tolist()
    assert np.array_equal(a["w2c"], b["w2c"]) and np.array_equal(a["fx"], b["fx"])
    assert np.array_equal(a["points"], b["points"])


@pytest.mark.parametrize("numbers", [
    list(range(30, 73, 7)),  # 7 photos, 14 degrees apart: pycolmap's default registers 4 or 5
    list(range(1, 185, 23)),  # every 23rd photo: 8 photos, 45 degrees apart, around the bird
], ids=["7-photos-14deg", "every-23rd"])
def test_sparse_photo_sets_register_at_least_what_pycolmap_does(bird_dir, tmp_path, numbers):
    photos = _bird_photos(bird_dir, tmp_path / "photos", numbers)
    theirs = _pycolmap_default(photos, tmp_path / "pycolmap")
    res = run_sfm(load_frames(photos, FramesConfig(max_side=480)), tmp_path / "twin", SfmConfig())
    assert len(res.cameras) >= max(theirs, 3), (len(res.cameras), theirs, res.attempts)
    assert res.attempt == max(res.attempts, key=lambda a: a["registered"])["attempt"]
    # the registered cameras are right, not just many: relative rotations agree with the reference
    m = evaluate_poses(res.cameras, read_reference(bird_dir / "sparse" / "0"))
    assert m["rra_auc30"] > 60, (m, res.attempts)


def test_same_size_photos_share_a_camera_and_an_odd_one_gets_its_own():
    def frame(name, w, h, focal=None, device=None):
        return Frame(name, np.zeros((h, w, 3), np.uint8), (w, h), focal_px=focal, device=device)

    fs = FrameSet([frame("a", 272, 480), frame("b", 360, 480), frame("c", 272, 480),
                   frame("d", 272, 480, 400.0, "Pixel 8"), frame("e", 272, 480, 400.0, "Pixel 8"),
                   frame("f", 272, 480, 400.0, "iPhone 15")])
    assert camera_groups(fs) == [[0, 2], [1], [3, 4], [5]]


def test_stretched_photo_is_dropped_and_the_rest_share_one_focal(bird_dir, tmp_path):
    """A 6000x8000 stretched copy among 544x960 photos (it registers with a focal length of ~500x its long
    side): dropped with a warning and recorded as skipped; the others keep one shared, plausible focal length."""
    photos = _bird_photos(bird_dir, tmp_path / "photos", range(100, 122, 2))
    big = cv2.resize(cv2.imread(str(bird_dir / "images" / "111.jpg")), (6000, 8000), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(photos / "111.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    out = tmp_path / "b"
    r = _twin("reconstruct", photos, "--out", out, "--max-side", "480", "--depth-frames", "3",
              "--depth-max-side", "128", "--quiet", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert any("111.jpg" in line and "implausible camera" in line for line in r.stderr.splitlines()), r.stderr
    b = read_bundle(out)
    assert "111.jpg" not in {Path(c.name).stem + ".jpg" for c in b.cameras}
    assert len(b.cameras) >= 9
    focals = {round(c.fx, 6) for c in b.cameras}
    assert len(focals) == 1, focals
    ref_f = 905.0 * 0.5  # the reference model's focal length at 480 px
    assert 0.7 < focals.pop() / ref_f < 1.4
    assert "implausible camera" in b.manifest["metrics"]["reconstruct"]["skipped_inputs"]["111.jpg"]


def test_identical_photos_say_no_camera_motion(bird_dir, tmp_path):
    """20 copies of one photo (exposure varied, so that thumbnails differ): refused as 'no camera motion'."""
    d = tmp_path / "same"
    d.mkdir()
    img = cv2.imread(str(bird_dir / "images" / "050.jpg"))
    for i in range(20):
        cv2.imwrite(str(d / f"img{i:02d}.jpg"), cv2.convertScaleAbs(img, alpha=1.0, beta=3 * i))
    r = _twin("reconstruct", d, "--out", tmp_path / "b", "--max-side", "320")
    assert r.returncode == 2, r.stderr[-1500:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no camera motion" in lines[0], r.stderr
    assert not (tmp_path / "b").exists()
