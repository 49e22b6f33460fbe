"""Benchmark: the procedural restyler on real sim frames, against kornia's colour/blur/noise augmentation of the
same frames in the same run.

    python benches/restyle.py [--json] [--frames 256] [--size 128]

Frames: the Franka on a table (Newton ray tracing through `Sensors`, with normals) in eight arm poses,
repeated to --frames, from a fixed camera. Timed: a train style and a held-out style with every family, the
train style with normals derived from depth, and kornia's ColorJiggle + RandomGaussianBlur +
RandomGaussianNoise (what a trainer would otherwise run: no geometry, no labels). Frames per second are wall
time (best of 3); --json prints one JSON object as the last line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# benches/sim.py is named like the `sim` package: keep this folder off the import path when run as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from policies import restyle, sample_style  # noqa: E402
from sim import BoxObject, Sensors, WorldConfig, build_world, control_maps  # noqa: E402
from spatial import Camera, look_at  # noqa: E402
from twin_kit import machine  # noqa: E402

TABLE_Z = 0.75


def sim_frames(n: int, size: int):
    """(rgb (n, S, S, 3), maps) of n frames cycling through eight arm poses."""
    import newton
    import trimesh

    with tempfile.TemporaryDirectory() as tmp:
        table = trimesh.creation.box(extents=(1.2, 0.8, TABLE_Z))
        table.apply_translation((0.3, 0.0, TABLE_Z / 2))
        floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
        floor.apply_translation((0.0, 0.0, -0.01))
        path = Path(tmp) / "table.ply"
        trimesh.util.concatenate([table, floor]).export(path)
        world = build_world(WorldConfig(scene=str(path), robot="franka", worlds=8,
                                        objects=[BoxObject(half=(0.04, 0.04, 0.04), pos=(0.55, -0.2, TABLE_Z + 0.04))]))
    q = world.state.joint_q.numpy().reshape(8, -1).copy()
    s = world.robot_coord_start
    q[:, s] += np.linspace(-0.6, 0.6, 8)
    q[:, s + 1] += np.linspace(0.0, 0.4, 8)
    world.state.joint_q.assign(q.ravel())
    newton.eval_fk(world.model, world.state.joint_q, world.state.joint_qd, world.state)
    R, t = look_at(np.array([1.6, 1.0, 1.5]), np.array([0.3, 0.0, 1.0]))
    cam = Camera("bench", size, size, float(size), float(size), (size - 1) / 2, (size - 1) / 2, R, t)
    f = Sensors(world, cam, normals=True, splats=False).render()
    idx = torch.arange(n) % 8
    maps = control_maps(f)
    maps = {k: v[idx].contiguous() for k, v in maps.items()}
    maps.update(normal=f.normal[idx].contiguous(), K=torch.tensor(cam.K, dtype=torch.float32),
                world_to_cam=torch.tensor(cam.world_to_cam, dtype=torch.float32), support_height=TABLE_Z)
    return f.rgb[idx].contiguous(), maps


def best_fps(fn, n: int, repeats: int = 3) -> float:
    fn()  # warm-up: texture caches, allocator
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--size", type=int, default=128)
    a = p.parse_args()
    rgb, maps = sim_frames(a.frames, a.size)
    train, held = sample_style(0, "train"), sample_style(0, "held_out")
    derived = {**maps, "normal": None}
    res = {"frames": a.frames, "size": a.size, "threads": torch.get_num_threads(),
           "train_fps": best_fps(lambda: restyle(rgb, maps, train), a.frames),
           "held_out_fps": best_fps(lambda: restyle(rgb, maps, held), a.frames),
           "train_derived_normals_fps": best_fps(lambda: restyle(rgb, derived, train), a.frames),
           "train_one_thread_fps": best_fps(lambda: restyle(rgb, maps, train, threads=1), a.frames)}
    import kornia.augmentation as K

    aug = torch.nn.Sequential(K.ColorJiggle(0.3, 0.3, 0.3, 0.05, p=1.0),
                              K.RandomGaussianBlur((5, 5), (0.1, 1.0), p=1.0),
                              K.RandomGaussianNoise(std=0.02, p=1.0))
    x = rgb.permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        res["kornia_fps"] = best_fps(lambda: aug(x), a.frames)
    res["train_vs_kornia"] = res["train_fps"] / res["kornia_fps"]
    for k, v in res.items():
        print(f"{k:28s} {v:.1f}" if isinstance(v, float) else f"{k:28s} {v}")
    if a.json:
        res["host"] = machine()
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}))


if __name__ == "__main__":
    main()
