"""The recorded front camera looks past splats that hide the workspace: floaters or a surface the scan's mesh
lacks, in front of the lens, swing the camera around the robot (as a wall in the mesh does), and a clear view is
kept as the rig places it. Real rasterizer, real Gaussians."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from policies.record.cameras import _splats_block, front_view, rig_of
from scenes import Gaussians
from sim import SplatBackground


def ball(centre, radius: float, n: int = 600) -> Gaussians:
    """An opaque grey cloud of n Gaussians filling a ball (a floater)."""
    g = torch.Generator().manual_seed(0)
    d = torch.randn(n, 3, generator=g)
    r = torch.rand(n, 1, generator=g) ** (1 / 3) * radius
    means = torch.as_tensor(centre, dtype=torch.float32) + d / d.norm(dim=1, keepdim=True) * r
    return Gaussians(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     log_scales=torch.full((n, 3), float(np.log(radius / 4))),
                     opacity_logits=torch.full((n,), 4.0), sh_dc=torch.zeros(n, 3), sh_rest=torch.zeros(n, 0, 3))


def test_splats_in_front_of_the_lens_swing_the_front_camera():
    view = rig_of("franka").front
    env = SimpleNamespace(base=(0.0, 0.0, 0.0, 0.0), world=SimpleNamespace(scene=None))
    eye0, target = np.asarray(view.eye), np.asarray(view.target)
    clear_eye, clear_target = front_view(env, view)  # no scan: the rig's view as it is
    assert np.allclose(clear_eye, eye0) and np.allclose(clear_target, target)

    look = (target - eye0) / np.linalg.norm(target - eye0)
    floater = SplatBackground(ball(eye0 + 0.12 * look, 0.1))
    assert _splats_block(floater, eye0, target, view)
    eye, tgt = front_view(env, view, floater)
    assert np.allclose(tgt, target) and not np.allclose(eye, eye0)
    assert np.isclose(np.hypot(*eye[:2]), np.hypot(*eye0[:2]))  # swung about the base's axis
    assert not _splats_block(floater, eye, target, view)  # and the target is in sight from there

    behind = SplatBackground(ball(target + 0.4 * look, 0.1))  # splats beyond the target hide nothing
    assert not _splats_block(behind, eye0, target, view)
    assert np.allclose(front_view(env, view, behind)[0], eye0)
