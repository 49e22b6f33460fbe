"""sim sensors over a moving scene: dynamic splats (4D Gaussians) are rendered at the world's simulation time.

A real Newton world (Franka by a table), Twin's real rasterizer and a real deformation field whose weights are
set by hand so that every Gaussian slides along the camera's x axis in proportion to the capture time.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from spatial.cameras import Camera, look_at

SLIDE = 0.5  # the wall moves this fraction of its depth along the camera's x over the capture


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sim.physics.world import WorldConfig, build_world

    table = trimesh.creation.box(extents=(1.2, 0.8, 0.75))
    table.apply_translation((0.3, 0.0, 0.375))
    p = tmp_path_factory.mktemp("scene") / "table.ply"
    table.export(p)
    return build_world(WorldConfig(scene=str(p), robot="franka", worlds=1))


def _camera(w: int = 64, h: int = 48) -> Camera:
    R, t = look_at(np.array([1.3, 0.9, 1.45]), np.array([0.3, 0.0, 1.05]))
    return Camera("side", w, h, float(w), float(w), (w - 1) / 2, (h - 1) / 2, R, t)


def _sliding_wall(cam: Camera, depth: float):
    """A red strip of flat Gaussians left of the view centre at `depth`, and a field moving it right over time:
    time plane (x, t) runs 1 -> 2, every other plane is 1, so the one feature is 1 + t and d_xyz = v t."""
    from scenes import DynamicSplats
    from scenes.dynamic.deformation import DeformationConfig, DeformationField
    from scenes.dynamic.model import TimeAxis
    from scenes.splats.gaussians import SH_C0, Gaussians

    step = 0.02 * depth
    gx, gy = np.meshgrid(np.arange(-0.5, -0.1, 0.02) * depth, np.arange(-0.6, 0.6, 0.02) * depth)
    pc = np.c_[gx.ravel(), gy.ravel(), np.full(gx.size, depth)]
    n = len(pc)
    f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    g = Gaussians(f((pc - cam.t) @ cam.R), f(np.tile([1.0, 0, 0, 0], (n, 1))),
                  f(np.log(np.full((n, 3), step))), f(np.full(n, 6.0)),
                  f(np.tile((np.array([0.9, 0.1, 0.1]) - 0.5) / SH_C0, (n, 1))), torch.zeros(n, 0, 3))
    field = DeformationField(DeformationConfig(resolution=2, multires=(1,), time_resolution=2, features=1,
                                               width=4, bounds=[-20.0, -20.0, -20.0, 20.0, 20.0, 20.0]))
    with torch.no_grad():
        for p in (*field.grid.space, *field.grid.time):
            p.fill_(1.0)
        field.grid.time[0][0, 0, 1] = 2.0  # plane (x, t) at t = 1
        lin = field.trunk[0]
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[0, 0], lin.bias[0] = 1.0, -1.0  # h0 = t
        field.d_xyz[1].weight.copy_(torch.eye(4))
        field.d_xyz[1].bias.zero_()
        field.d_xyz[3].weight[:, 0] = f(SLIDE * depth * cam.R[0])  # along the camera's x axis, in the world
    return DynamicSplats(g, field.eval(), TimeAxis(0.0, 2.0, "seconds"))


def test_sensors_render_dynamic_splats_at_the_simulation_time(world):
    from sim.sensors.cameras import Sensors

    cam = _camera()
    dist = np.linalg.norm(cam.center - np.array([0.3, 0.0, 1.05]))
    dyn = _sliding_wall(cam, dist + 2.0)
    assert torch.allclose(dyn.at(1.0).means - dyn.at(0.0).means, torch.tensor(SLIDE * (dist + 2.0) * cam.R[0],
                                                                              dtype=torch.float32), atol=1e-5)
    moving = Sensors(world, cam, splats=dyn)
    centres = []
    try:
        for sim_time, t in ((0.0, 0.0), (1.0, 0.5), (5.0, 1.0)):  # 2 s capture: held at its end afterwards
            world.sim_time = sim_time
            frame = moving.render()
            fixed = Sensors(world, cam, splats=dyn.at(t)).render()
            assert torch.allclose(frame.rgb, fixed.rgb, atol=1e-5) and torch.equal(frame.seg, fixed.seg)
            red = (frame.rgb[0, ..., 0] > 0.6) & (frame.rgb[0, ..., 1] < 0.3)
            centres.append(float(torch.nonzero(red)[:, 1].float().mean()))
    finally:
        world.sim_time = 0.0
    shift = SLIDE * cam.fx  # pixels the strip moves by the end of the capture
    assert centres[1] - centres[0] == pytest.approx(shift / 2, abs=2.5)
    assert centres[2] - centres[0] == pytest.approx(shift, abs=2.5)
