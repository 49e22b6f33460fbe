"""Render the Franka on a table in a small splat room with Twin's sensors, and tile that frame restyled under
every style family (vanilla first, then three train and three held-out styles per family).

    python examples/restyle_grid.py docs/restyle_grid.png [--width 224 --height 168 --seed 0]

The room is a handful of flat Gaussians (floor, two walls with a window and a poster, a wooden table top)
over a box mesh that gives physics and normals; the robot and a cube are ray traced into it by `Sensors`.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from policies import STYLE_FAMILIES, VANILLA, sample_style, style_grid
from scenes import SH_C0, Gaussians
from sim import BoxObject, Sensors, WorldConfig, build_world, control_maps
from spatial import Camera, look_at

TABLE_Z = 0.75


def _plane(origin, u, v, nu: int, nv: int, colour_fn, rng) -> Gaussians:
    """Flat Gaussians on a grid over origin + a u + b v (a, b in [0, 1]), coloured by colour_fn(a, b)."""
    a, b = np.meshgrid((np.arange(nu) + 0.5) / nu, (np.arange(nv) + 0.5) / nv)
    a, b = a.ravel(), b.ravel()
    u, v = np.asarray(u, float), np.asarray(v, float)
    X = np.asarray(origin, float) + a[:, None] * u + b[:, None] * v
    n = len(X)
    R = np.stack([u / np.linalg.norm(u), v / np.linalg.norm(v), np.cross(u, v) / np.linalg.norm(np.cross(u, v))], 1)
    from scipy.spatial.transform import Rotation

    xyzw = Rotation.from_matrix(R).as_quat()
    q = np.tile(np.r_[xyzw[3], xyzw[:3]], (n, 1))
    su, sv = np.linalg.norm(u) / nu, np.linalg.norm(v) / nv
    rgb = np.clip(colour_fn(a, b) + rng.normal(0, 0.015, (n, 3)), 0, 1)
    f = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return Gaussians(means=f(X), quats=f(q), log_scales=f(np.log(np.tile([0.8 * su, 0.8 * sv, 1e-3], (n, 1)))),
                     opacity_logits=f(np.full(n, 5.0)), sh_dc=f((rgb - 0.5) / SH_C0), sh_rest=torch.zeros(n, 0, 3))


def room_splats(seed: int = 0) -> Gaussians:
    """Floor, back wall (window, poster), side wall, table top and its two front faces."""
    rng = np.random.default_rng(seed)

    def floor(a, b):
        return np.c_[0.42 + 0.04 * np.sin(31 * a), 0.38 + 0.03 * np.sin(29 * b), 0.34 + 0 * a]

    def back(a, b):  # seen from +x: a runs along +y, b up
        c = np.c_[0.82 + 0 * a, 0.78 + 0 * a, 0.70 + 0 * a] - 0.08 * b[:, None]
        window = (a > 0.55) & (a < 0.8) & (b > 0.35) & (b < 0.8)
        c[window] = [0.93, 0.95, 0.97]
        poster = (a > 0.15) & (a < 0.35) & (b > 0.4) & (b < 0.7)
        c[poster] = np.c_[0.2 + 0.6 * a[poster], 0.35 + 0 * a[poster], 0.6 - 0.3 * b[poster]]
        return c

    def side(a, b):
        return np.c_[0.62 + 0 * a, 0.68 + 0 * a, 0.74 + 0 * a] - 0.06 * b[:, None]

    def wood(a, b):
        g = 0.5 + 0.5 * np.sin(2 * np.pi * (b * 14 + 0.6 * np.sin(7 * a)))
        return np.c_[0.66 - 0.10 * g, 0.50 - 0.08 * g, 0.34 - 0.06 * g]

    def face(a, b):
        return np.c_[0.45 + 0 * a, 0.33 + 0 * a, 0.22 + 0 * a]

    parts = [
        _plane((-1.5, -2.0, 0.0), (4.0, 0, 0), (0, 4.0, 0), 200, 200, floor, rng),
        _plane((-1.2, -2.0, 0.0), (0, 4.0, 0), (0, 0, 2.4), 200, 120, back, rng),
        _plane((-1.5, 1.6, 0.0), (3.5, 0, 0), (0, 0, 2.4), 175, 120, side, rng),
        _plane((-0.3, -0.4, TABLE_Z), (1.2, 0, 0), (0, 0.8, 0), 120, 80, wood, rng),
        _plane((0.9, -0.4, 0.0), (0, 0.8, 0), (0, 0, TABLE_Z), 60, 56, face, rng),
        _plane((-0.3, -0.4, 0.0), (1.2, 0, 0), (0, 0, TABLE_Z), 90, 56, face, rng),
    ]
    return Gaussians(*(torch.cat(ts) for ts in zip(*(p.tensors() for p in parts))))


def scene_mesh(path: Path) -> Path:
    """Table, floor and the two walls as boxes (physics, and the normals of the scene's pixels)."""
    import trimesh

    boxes = [((1.2, 0.8, TABLE_Z), (0.3, 0.0, TABLE_Z / 2)), ((4.0, 4.0, 0.02), (0.5, 0.0, -0.01)),
             ((0.02, 4.0, 2.4), (-1.21, 0.0, 1.2)), ((3.5, 0.02, 2.4), (0.25, 1.61, 1.2))]
    meshes = []
    for ext, pos in boxes:
        m = trimesh.creation.box(extents=ext)
        m.apply_translation(pos)
        meshes.append(m)
    trimesh.util.concatenate(meshes).export(path)
    return path


def render_frame(width: int, height: int):
    """(rgb (1, H, W, 3), maps) of the Franka reaching over the table, from a camera beside it."""
    import newton

    with tempfile.TemporaryDirectory() as tmp:
        cube = BoxObject(half=(0.04, 0.04, 0.04), pos=(0.45, -0.18, TABLE_Z + 0.04))
        world = build_world(WorldConfig(scene=str(scene_mesh(Path(tmp) / "room.ply")), robot="franka",
                                        robot_pose=(-0.1, 0.0, TABLE_Z, 0.0), check_collisions=False, objects=[cube]))
    q = world.state.joint_q.numpy().copy()
    s = world.robot_coord_start
    q[s:s + 7] = [-0.45, -0.45, 0.0, -2.4, 0.0, 2.0, 0.35]
    world.state.joint_q.assign(q)
    newton.eval_fk(world.model, world.state.joint_q, world.state.joint_qd, world.state)
    R, t = look_at(np.array([1.3, -1.4, 1.55]), np.array([0.12, 0.0, 1.08]))
    f = 1.0 * width
    cam = Camera("side", width, height, f, f, (width - 1) / 2, (height - 1) / 2, R, t)
    frame = Sensors(world, cam, normals=True, splats=room_splats()).render()
    maps = control_maps(frame)
    maps.update(normal=frame.normal, K=torch.tensor(cam.K, dtype=torch.float32),
                world_to_cam=torch.tensor(cam.world_to_cam, dtype=torch.float32), support_height=TABLE_Z)
    return frame.rgb[:1], {k: (v[:1] if isinstance(v, torch.Tensor) and v.dim() >= 3 else v) for k, v in maps.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="PNG file to write")
    p.add_argument("--width", type=int, default=224)
    p.add_argument("--height", type=int, default=168)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    t0 = time.perf_counter()
    rgb, maps = render_frame(a.width, a.height)
    print(f"rendered the sim frame in {time.perf_counter() - t0:.1f} s")
    rows = [[("vanilla", VANILLA)] + [(f"all {split}", sample_style(a.seed + i, split))
                                      for split in ("train", "held_out") for i in range(3)]]
    for fam in STYLE_FAMILIES:
        rows.append([("vanilla", VANILLA)] + [(f"{fam} {split.replace('_', '-')}",
                                               sample_style(a.seed + i, split, families=[fam]))
                                              for split in ("train", "held_out") for i in range(3)])
    from PIL import Image

    out = Path(a.out)
    tmp = out.with_suffix(".tmp.png")
    Image.fromarray(style_grid(rgb, maps, rows)).save(tmp, optimize=True)
    tmp.replace(out)
    print(f"wrote {out} ({len(rows)} rows x 7)")


if __name__ == "__main__":
    main()
