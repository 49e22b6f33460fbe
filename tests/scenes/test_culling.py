"""Frustum culling by cells (scenes.rendering.culling): a render of the Gaussians a camera's cells keep equals
the render of all of them, and a close-up camera keeps few."""
from __future__ import annotations

import math

import torch

from scenes import build_cells, rasterize, visible_cells, visible_indices


def _room(n: int, seed: int = 0):
    """A 4 x 4 x 2.5 m box of Gaussians (walls, floor and clutter), sizes from 5 mm to 20 cm."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([4.0, 4.0, 2.5]) - torch.tensor([2.0, 2.0, 0.0])
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.005), math.log(0.2), generator=g))
    quats = torch.randn(n, 4, generator=g)
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    sh = torch.randn(n, 4, 3, generator=g) * 0.3
    return means, quats, scales, opac, sh


def _look(eye, target) -> torch.Tensor:
    """World-to-camera (OpenCV) of a camera at eye looking at target, +Z up."""
    eye, target = torch.tensor(eye, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)
    f = (target - eye) / (target - eye).norm()
    r = torch.linalg.cross(f, torch.tensor([0.0, 0.0, 1.0]))
    r = r / r.norm() if r.norm() > 1e-6 else torch.tensor([1.0, 0.0, 0.0])
    d = torch.linalg.cross(f, r)
    R = torch.stack([r, d, f])
    vm = torch.eye(4)
    vm[:3, :3], vm[:3, 3] = R, -R @ eye
    return vm


K = torch.tensor([[60.0, 0.0, 32.0], [0.0, 60.0, 32.0], [0.0, 0.0, 1.0]])


def test_culled_render_equals_the_full_render_and_close_ups_keep_few():
    means, quats, scales, opac, sh = _room(6000)
    cells = build_cells(means, scales, cells_per_axis=12)
    assert int(cells.start[-1]) == len(means) and sorted(cells.order.tolist()) == list(range(len(means)))
    views = [((0.0, 0.0, 1.2), (1.5, 0.3, 0.4)), ((-1.5, -1.5, 2.0), (0.5, 0.5, 0.0)),
             ((0.3, 0.2, 0.5), (0.35, 0.25, 0.0)), ((1.9, 1.9, 0.2), (-2.0, -2.0, 0.2)),
             ((0.0, 0.0, 1.0), (0.0, 0.0, 3.0))]
    kept = []
    for eye, target in views:
        vm = _look(eye, target)
        full = rasterize(means, quats, scales, opac, sh, vm, K, 64, 64)
        idx = visible_indices(cells, vm, K, 64, 64)
        assert torch.equal(idx, torch.sort(idx).values)
        sub = rasterize(means[idx], quats[idx], scales[idx], opac[idx], sh[idx], vm, K, 64, 64)
        assert torch.allclose(sub.image, full.image, atol=1e-6)
        assert torch.allclose(sub.alpha, full.alpha, atol=1e-6)
        shown = torch.nonzero(full.radii.reshape(len(means), -1)[:, 0] > 0)[:, 0]
        assert bool(torch.isin(shown, idx).all())       # every Gaussian the full render shows is kept
        kept.append(len(idx) / len(means))
    assert kept[2] < 0.1                                # 0.5 m above the floor, looking down: a few percent


def test_cells_behind_the_camera_are_dropped():
    means, _, scales, *_ = _room(2000, seed=1)
    cells = build_cells(means, scales, cells_per_axis=8)
    vm = _look((-4.0, 0.0, 1.0), (-5.0, 0.0, 1.0))      # outside the room, looking away from it
    assert not bool(visible_cells(cells, vm, K, 64, 64).any())
    assert len(visible_indices(cells, vm, K, 64, 64)) == 0
