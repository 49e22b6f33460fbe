"""The 3DGS PLY layout: Twin's writer and reader round trip, and files written by other tools are read right."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from scenes.splats.gaussians import Gaussians, read_splats_ply, write_splats_ply
from scenes.splats.seed_points import gaussians_from_points, read_points_float
from twin_kit.errors import InputError


def _random(n: int, degree: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    k1 = (degree + 1) ** 2 - 1
    return Gaussians(means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
                     log_scales=torch.randn(n, 3, generator=g) - 4, opacity_logits=torch.randn(n, generator=g),
                     sh_dc=torch.randn(n, 3, generator=g), sh_rest=torch.randn(n, k1, 3, generator=g))


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_write_read_round_trip_is_exact(tmp_path, degree):
    g = _random(57, degree)
    write_splats_ply(tmp_path / "s.ply", g)
    back = read_splats_ply(tmp_path / "s.ply")
    assert back.sh_degree == degree
    for a, b in zip(g.tensors(), back.tensors()):
        assert torch.equal(a, b)


def test_reads_ply_from_another_tool_in_other_property_order(tmp_path):
    """Degree 1, properties shuffled, extra ones present, as exported by other splat tools."""
    n = 5
    rng = np.random.default_rng(0)
    vals = {nm: rng.normal(size=n).astype(np.float32) for nm in
            ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"] + [f"f_rest_{i}" for i in range(9)]}
    vals["extra_label"] = np.arange(n, dtype=np.float32)
    names = list(vals)[::-1]  # reversed order, f_rest_8 first
    arr = np.empty(n, dtype=[(nm, "f4") for nm in names])
    for nm in names:
        arr[nm] = vals[nm]
    PlyData([PlyElement.describe(arr, "vertex")], text=True).write(str(tmp_path / "other.ply"))
    g = read_splats_ply(tmp_path / "other.ply")
    assert g.sh_degree == 1
    assert np.allclose(g.means.numpy(), np.stack([vals["x"], vals["y"], vals["z"]], 1))
    assert np.allclose(g.quats[:, 0].numpy(), vals["rot_0"]) and np.allclose(g.opacity_logits.numpy(), vals["opacity"])
    # f_rest is channel-major: f_rest_{c * 3 + k} is band coefficient k of colour channel c
    for c in range(3):
        for k in range(3):
            assert np.allclose(g.sh_rest[:, k, c].numpy(), vals[f"f_rest_{c * 3 + k}"])


def test_reads_degree0_ply_without_normals(tmp_path):
    n = 3
    names = ["x", "y", "z", "opacity", "rot_0", "rot_1", "rot_2", "rot_3", "scale_0", "scale_1", "scale_2",
             "f_dc_0", "f_dc_1", "f_dc_2"]
    arr = np.zeros(n, dtype=[(nm, "f4") for nm in names])
    arr["x"] = [1, 2, 3]
    arr["f_dc_2"] = [0.5, 0.25, 0.125]
    arr["rot_0"] = 1
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "d0.ply"))
    g = read_splats_ply(tmp_path / "d0.ply")
    assert g.sh_degree == 0 and g.sh_rest.shape == (3, 0, 3)
    assert g.means[:, 0].tolist() == [1, 2, 3] and g.sh_dc[:, 2].tolist() == [0.5, 0.25, 0.125]


def test_refuses_non_splat_ply(tmp_path):
    arr = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(InputError, match="not a 3D Gaussian splat PLY"):
        read_splats_ply(tmp_path / "pts.ply")


def test_init_from_points_uses_neighbour_distance_and_colour(tmp_path):
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [10, 10, 10]], np.float32)
    arr = np.empty(5, dtype=[(c, "f4") for c in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")])
    arr["x"], arr["y"], arr["z"] = xyz.T
    arr["red"], arr["green"], arr["blue"] = 255, 128, 0
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "points.ply"))
    g = gaussians_from_points(*read_points_float(tmp_path / "points.ply"), sh_degree=3, init_opacity=0.1)
    assert g.sh_rest.shape == (5, 15, 3) and torch.allclose(g.opacities, torch.full((5,), 0.1))
    # the origin's 3 nearest neighbours are all at distance 1
    assert torch.allclose(g.scales[0], torch.ones(3))
    colour = 0.28209479177387814 * g.sh_dc[0] + 0.5
    assert torch.allclose(colour, torch.tensor([1.0, 128 / 255, 0.0]), atol=1e-6)
    assert torch.equal(g.quats[:, 0], torch.ones(5))
