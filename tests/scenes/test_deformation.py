"""The 4D deformation field: identity at initialisation (dynamic render = static render), gradients of the field
and of a rendered image through it agree with finite differences (float64), Warp agrees with the reference."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from scenes.dynamic.deformation import DeformationConfig, DeformationField, HexPlane, quat_multiply
from scenes.dynamic.model import deform_params
from scenes.rendering.rasterize import rasterize
from scenes.splats.train import render_params
from spatial import Camera, look_at

W, H = 40, 30
K = torch.tensor([[36.0, 0.0, 19.5], [0.0, 36.0, 14.5], [0.0, 0.0, 1.0]])


def _tiny_field(seed: int = 0, dtype=torch.float64, moving: bool = True) -> DeformationField:
    """A small field; with `moving` its output layers are random (not the zero init) and its time planes
    vary, so that every weight influences the output."""
    torch.manual_seed(seed)
    f = DeformationField(DeformationConfig(resolution=4, multires=(1, 2), time_resolution=3, features=3, width=8,
                                           bounds=[-0.6, -0.6, 2.0, 0.6, 0.6, 3.2]))
    if moving:
        with torch.no_grad():
            for head in (f.d_xyz, f.d_rot, f.d_scale):
                head[-1].weight.normal_(0, 0.05)
                head[-1].bias.normal_(0, 0.02)
            for tp in f.grid.time:
                tp.add_(torch.randn_like(tp) * 0.2)
    return f.to(dtype)  # after drawing, so that every dtype gets the same weights


def _gaussians(n: int, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g, dtype=dtype) * torch.tensor([1.0, 0.8, 0.8], dtype=dtype) \
        + torch.tensor([-0.5, -0.4, 2.2], dtype=dtype)
    return {"means": means, "quats": torch.randn(n, 4, generator=g, dtype=dtype),
            "log_scales": torch.log(torch.rand(n, 3, generator=g, dtype=dtype) * 0.05 + 0.04),
            "opacity_logits": torch.randn(n, generator=g, dtype=dtype) * 0.5 - 0.5,
            "sh_dc": torch.randn(n, 3, generator=g, dtype=dtype), "sh_rest": torch.zeros(n, 3, 3, dtype=dtype)}


def test_identity_at_initialisation_renders_the_static_scene():
    field = DeformationField(DeformationConfig(resolution=8, time_resolution=5,
                                               bounds=[-0.6, -0.6, 2.0, 0.6, 0.6, 3.2]))
    params = {k: v.float() for k, v in _gaussians(300, seed=1).items()}
    for t in (0.0, 0.37, 1.0):
        means, quats, log_scales = field(params["means"], params["quats"], params["log_scales"], t)
        assert torch.equal(means, params["means"]) and torch.equal(quats, params["quats"])
        assert torch.equal(log_scales, params["log_scales"])
    R, tr = look_at([0.3, -0.2, 0.0], [0.0, 0.0, 2.6], up=(0, -1, 0))
    cam = Camera("c", W, H, 36.0, 36.0, 19.5, 14.5, R=R, t=tr)
    static = render_params(params, cam, backend="warp")
    dynamic = render_params(deform_params(params, field, 0.6), cam, backend="warp")
    assert static.alpha.max() > 0.5  # the scene is in view
    assert torch.equal(static.image, dynamic.image) and torch.equal(static.radii, dynamic.radii)


def test_quaternion_product_composes_rotations():
    from twin_kit import quat_to_rotmat

    a, b = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    a, b = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), quat_to_rotmat(a) @ quat_to_rotmat(b), atol=1e-12)


def test_time_planes_at_one_make_features_time_independent_and_the_border_clamps():
    grid = HexPlane(DeformationConfig(resolution=6, time_resolution=4, features=2,
                                      bounds=[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))
    x = torch.rand(50, 3)
    assert torch.allclose(grid(x, 0.0), grid(x, 0.9), rtol=1e-6, atol=0)  # bilinear weights of ones sum to 1
    with torch.no_grad():
        grid.time[0][:, :, 2:] = 3.0  # later times scale the coarse level's features
    assert not torch.allclose(grid(x, 0.0), grid(x, 1.0))
    far = torch.tensor([[5.0, 0.5, 0.5]])
    edge = torch.tensor([[1.0, 0.5, 0.5]])
    assert torch.allclose(grid(far, 0.3), grid(edge, 0.3))  # outside the bounds: the border's features


def test_field_gradients_match_finite_differences():
    field = _tiny_field()
    g = _gaussians(12, seed=2)
    inputs = (g["means"].requires_grad_(), g["quats"].requires_grad_(), g["log_scales"].requires_grad_())
    assert torch.autograd.gradcheck(lambda m, q, s: field(m, q, s, 0.4), inputs, eps=1e-6, atol=1e-7)
    names = ["grid.space.0", "grid.time.1", "trunk.0.weight", "d_xyz.1.weight", "d_rot.3.bias", "d_scale.3.weight"]
    base = dict(field.named_parameters())
    m, q, s = (x.detach() for x in inputs)

    def out(*tensors):
        return functional_call(field, {**base, **dict(zip(names, tensors))}, (m, q, s, 0.8))

    assert torch.autograd.gradcheck(out, tuple(base[n].detach().requires_grad_() for n in names), eps=1e-6,
                                    atol=1e-7)


def _image_loss(params, field, t, backend):
    view = torch.eye(4, dtype=params["means"].dtype)
    p = deform_params(params, field, t)
    sh = torch.cat([p["sh_dc"][:, None], p["sh_rest"]], 1)
    out = rasterize(p["means"], p["quats"], torch.exp(p["log_scales"]), torch.sigmoid(p["opacity_logits"]), sh,
                    view, K.to(view), W, H, backend=backend)
    w = torch.randn(H, W, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(view)
    return (out.image * w).sum()


def test_rendered_image_gradients_through_the_field_match_finite_differences():
    """d(loss)/d(weights) through rasterizer and field, by autograd against central differences (float64,
    the PyTorch reference rasterizer): the deformation trains by the same gradients the static splats use."""
    field = _tiny_field(seed=3)
    params = _gaussians(10, seed=4)
    loss = _image_loss(params, field, 0.55, "torch")
    loss.backward()
    checked = 0
    for name, p in [("grid.space.1", field.grid.space[1]), ("grid.time.0", field.grid.time[0]),
                    ("d_xyz", field.d_xyz[-1].weight), ("d_rot", field.d_rot[-1].weight),
                    ("d_scale", field.d_scale[-1].weight), ("trunk", field.trunk[0].weight)]:
        flat = p.grad.flatten()
        for k in torch.topk(flat.abs(), 3).indices.tolist():
            h = 1e-6
            with torch.no_grad():
                old = p.view(-1)[k].item()
                p.view(-1)[k] = old + h
                up = _image_loss(params, field, 0.55, "torch").item()
                p.view(-1)[k] = old - h
                down = _image_loss(params, field, 0.55, "torch").item()
                p.view(-1)[k] = old
            fd = (up - down) / (2 * h)
            assert math.isclose(flat[k].item(), fd, rel_tol=1e-4, abs_tol=1e-6), (name, k, flat[k].item(), fd)
            checked += 1
    assert checked == 18


@pytest.mark.parametrize("t", [0.2, 0.9])
def test_warp_gradients_through_the_field_match_the_reference(t):
    """The CPU training path (Warp kernels, float32) gives the field the reference's gradients."""
    grads = {}
    for backend, dtype in (("torch", torch.float64), ("warp", torch.float32)):
        field = _tiny_field(seed=6, dtype=dtype)
        params = {k: v.to(dtype) for k, v in _gaussians(40, seed=7).items()}
        _image_loss(params, field, t, backend).backward()
        grads[backend] = {n: p.grad.double() for n, p in field.named_parameters()}
    for n, ref in grads["torch"].items():
        scale = ref.abs().max().clamp_min(1e-8)
        assert (grads["warp"][n] - ref).abs().max() / scale < 2e-3, n
