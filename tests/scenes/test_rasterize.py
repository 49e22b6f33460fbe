"""Gaussian rasterizer: Twin's Warp kernels against the dense PyTorch reference (values and gradients)."""
from __future__ import annotations

import math

import pytest
import torch

from scenes.rendering.rasterize import rasterize

W, H = 64, 48
K = torch.tensor([[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]])
NAMES = ("means", "quats", "scales", "opacities", "sh")


def _scene(n: int, degree: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.9, 0.7, 0.5]) + torch.tensor([0.0, 0.0, 3.0])
    means[:4, 0] = 0.0
    means[:4, 2] = torch.tensor([-1.0, -0.5, -0.2, -0.195])  # behind the camera, or closer than the near plane
    means[4:8, 0] = torch.tensor([-9.0, 9.0, 4.0, -4.0])  # outside the image
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) * math.log(4.0)) * 0.03
    opacities = torch.rand(n, generator=g) * 0.85 + 0.1
    # centre off-image (x/z beyond the Jacobian clamp) but wide enough to reach in; and one near the camera
    means[8], scales[8], opacities[8] = torch.tensor([3.0, 0.2, 3.0]), torch.tensor([0.5, 0.3, 0.2]), 0.6
    quats[8] = torch.tensor([0.9, 0.1, 0.3, 0.2])
    means[9], scales[9], opacities[9] = torch.tensor([0.0, 0.1, 0.5]), torch.tensor([0.1, 0.08, 0.05]), 0.4
    sh = torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.25
    view = torch.eye(4)
    view[:3, :3] = torch.tensor([[0.995, 0.0, 0.0998], [0.0, 1.0, 0.0], [-0.0998, 0.0, 0.995]])
    view[:3, 3] = torch.tensor([0.05, -0.1, 0.2])
    return [means, quats, scales, opacities, sh], view


def _render(params, view, backend, sh_degree=None, background=None):
    ps = [p.clone().requires_grad_(True) for p in params]
    holder = torch.zeros(ps[0].shape[0], 2, requires_grad=True)
    out = rasterize(*ps, view, K, W, H, sh_degree=sh_degree, background=background, backend=backend,
                    means2d_grad_holder=holder)
    g = torch.Generator().manual_seed(7)
    wi, wd, wa = (torch.randn(H, W, c, generator=g) for c in (3, 1, 1))
    loss = ((out.image * wi).sum() + 0.1 * (out.depth * wd).sum() + (out.alpha * wa).sum()) / 50.0
    loss.backward()
    grads = {n: p.grad for n, p in zip(NAMES, ps)}
    grads["means2d"] = holder.grad
    return out, grads


@pytest.mark.parametrize("degree,sh_degree", [(0, None), (3, None), (3, 1)])
def test_warp_matches_torch_reference(degree, sh_degree):
    params, view = _scene(200, degree, seed=3 + degree)
    bg = torch.tensor([0.2, 0.5, 0.9])
    ref, gref = _render(params, view, "torch", sh_degree, bg)
    out, gout = _render(params, view, "warp", sh_degree, bg)
    assert (ref.radii[:4] == 0).all() and (ref.radii[4:6] == 0).all(), "culling of behind/outside Gaussians"
    assert (ref.radii > 0).sum() > 150 and ref.radii[8] > 0 and ref.radii[9] > 0
    assert ref.means2d[8, 0] > W + 10, "centre off the image, beyond the Jacobian clamp"
    assert torch.equal(out.radii, ref.radii)
    assert ref.alpha.min() < 0.05 and ref.alpha.max() > 0.9, "scene should have both empty and covered pixels"
    for name in ("image", "alpha"):
        assert (getattr(out, name) - getattr(ref, name)).abs().max() < 1e-4, name
    assert ((out.depth - ref.depth).abs() / ref.depth.clamp_min(1.0)).max() < 1e-4
    assert (out.means2d - ref.means2d).abs().max() < 1e-3
    for name, g in gref.items():
        scale = max(1.0, g.abs().max().item())
        diff = (gout[name] - g).abs().max().item()
        assert g.abs().max() > 0, name
        assert diff < 1e-4 * scale, f"{name}: max diff {diff:.2e} (max |grad| {scale:.2e})"
    if sh_degree is not None:
        assert gout["sh"][:, (sh_degree + 1) ** 2:].abs().max() == 0


def _stack_scene():
    """Four round Gaussians centred on pixel (20, 20), 1 m apart in depth, opacity 0.98, plus empty space."""
    z = torch.tensor([2.0, 3.0, 4.0, 5.0])
    x = (20.5 - K[0, 2]) / K[0, 0] * z
    y = (20.5 - K[1, 2]) / K[1, 1] * z
    means = torch.stack([x, y, z], dim=1)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(4, 1)
    scales = (4.0 * z / K[0, 0])[:, None].repeat(1, 3)  # 4 px standard deviation
    opacities = torch.full((4,), 0.98)
    rgb = torch.eye(3)[[0, 1, 2, 0]] * 2.0 - 0.5
    sh = ((rgb - 0.5) / 0.28209479177387814)[:, None, :]
    return [means, quats, scales, opacities, sh], torch.eye(4)


@pytest.mark.parametrize("backend", ["warp", "torch"])
def test_early_termination_and_background(backend):
    params, view = _stack_scene()
    bg = torch.tensor([0.1, 0.2, 0.3])
    with torch.no_grad():
        out = rasterize(*params, view, K, W, H, background=bg, backend=backend)
    # T: 1 -> 0.02 -> 4e-4 -> 8e-6 <= 1e-4, so the third Gaussian ends the pixel and is not composited
    c = out.image[20, 20]
    expect = 0.98 * torch.tensor([1.5, 0.0, 0.0]) + 0.02 * 0.98 * torch.tensor([0.0, 1.5, 0.0])
    expect_alpha = 1.0 - 0.02 * 0.02
    assert torch.allclose(c, expect + (1.0 - expect_alpha) * bg, atol=1e-5)
    assert abs(out.alpha[20, 20, 0].item() - expect_alpha) < 1e-6
    assert abs(out.depth[20, 20, 0].item() - (0.98 * 2.0 + 0.0196 * 3.0) / expect_alpha) < 1e-4
    # far from every Gaussian: exactly the background, nothing accumulated
    assert torch.equal(out.image[5, 60], bg) and out.alpha[5, 60, 0] == 0 and out.depth[5, 60, 0] == 0


def test_nothing_visible_and_backend_choice():
    params, view = _scene(10, 0, seed=0)
    params[0][:, 2] = -2.0  # all behind the camera
    ps = [p.clone().requires_grad_(True) for p in params]
    out = rasterize(*ps, view, K, W, H, backend="auto")
    assert (out.radii == 0).all() and out.alpha.abs().max() == 0
    out.image.sum().backward()
    assert ps[0].grad is not None and ps[0].grad.abs().max() == 0
    with pytest.raises(ValueError):
        rasterize(*params, view, K, W, H, backend="nope")


def test_warp_threads_agree():
    """Tiles split over several CPU threads give the same image and gradients as one thread."""
    params, view = _scene(200, 1, seed=11)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, g1 = _render(params, view, "warp")
        torch.set_num_threads(3)
        three, g3 = _render(params, view, "warp")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.image, three.image) and torch.equal(one.depth, three.depth)
    for name, g in g1.items():
        assert torch.allclose(g, g3[name], rtol=1e-5, atol=1e-6), name
