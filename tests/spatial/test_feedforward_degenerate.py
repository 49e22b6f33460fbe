"""A network whose cameras cannot make a bundle (a field of view of 0, as untrained weights can give: the fov
activation is a ReLU) is refused with one line and exit code 2, and no bundle is written; not-finite poses too."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from spatial.feedforward import build_vggt, tiny_config
from spatial.feedforward.chunked import Predictions
from spatial.feedforward.pipeline import check_cameras
from spatial.feedforward.weights import save_vggt_weights
from twin_kit import InputError


def _predictions(n: int = 3, focal: float = 50.0) -> Predictions:
    ext = np.tile(np.eye(4)[:3], (n, 1, 1))
    K = np.tile(np.array([[focal, 0, 40], [0, focal, 30], [0, 0, 1]], np.float64), (n, 1, 1))
    maps = np.ones((n, 6, 8), np.float32)
    return Predictions(ext, K, maps, maps, maps)


def test_check_cameras_names_the_first_bad_frame():
    names = ["a.jpg", "b.jpg", "c.jpg"]
    check_cameras(_predictions(), names, "w.safetensors")            # usable cameras pass
    p = _predictions()
    p.intrinsics[1, 0, 0] = np.inf
    with pytest.raises(InputError, match=r"field of view of 0 .* for 1 of 3 frames \(first: b.jpg\)"):
        check_cameras(p, names, "w.safetensors")
    p = _predictions()
    p.extrinsics[2, 0, 3] = np.nan
    with pytest.raises(InputError, match=r"not finite for 1 of 3 frames \(first: c.jpg\)"):
        check_cameras(p, names, "w.safetensors")


def test_zero_field_of_view_is_refused_in_one_line(tmp_path):
    import cv2

    torch.manual_seed(0)
    model = build_vggt(tiny_config())
    with torch.no_grad():   # every refinement adds a negative fov: the ReLU makes it 0
        fc2 = model.camera_head.pose_branch.fc2
        fc2.weight.zero_()
        fc2.bias.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -0.5, -0.5]))
    weights = save_vggt_weights(model, tmp_path / "zero_fov.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
    for i in range(3):
        cv2.imwrite(str(photos / f"p{i}.jpg"), np.roll(base, 6 * i, axis=1))
    out = tmp_path / "twin"
    r = subprocess.run([sys.executable, "-m", "twin_cli", "reconstruct", str(photos), "--out", str(out), "--method",
                        "vggt", "--weights", str(weights), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "field of view of 0" in lines[0] and "3 of 3 frames" in lines[0], r.stderr
    assert not out.exists()
