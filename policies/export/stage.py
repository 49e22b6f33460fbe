"""One reset of a task as one OpenUSD stage: scan, task objects and robot, as Twin's own world holds them.

The stage is written from the world a `TaskEnv` builds (one world, `seed`'s reset), so what Isaac Sim, Isaac
Lab or Newton loads is what Twin simulates: the same base spot, object poses, masses, friction and gains.

Layout (default prim /World; metres, kilograms, seconds, +Z up):
  /World/PhysicsScene        gravity -Z 9.81 m/s^2, the physics step rate, MuJoCo options Twin runs with
  /World/Scan                the capture: Splats (ParticleField3DGaussianSplat from the binary layer
                             <stem>_splats.usdc beside the stage, scaled to metres), Cameras (capture frames),
                             Pieces/piece_NNN (the bundle's convex collision pieces: static colliders, purpose
                             guide), SupportPlane (the collision plane at the support height, purpose guide)
  /World/Objects/<name>      each task object: rigid body (mass, centre of mass, inertia) of box colliders with
                             its friction material, at the reset pose
  /World/Robot               the robot articulation (policies.export.articulation) at its base spot, home pose
  /World/Materials           physics materials (friction)
  /World/CollisionGroups     robot (no self-collision, as Twin imports it) and scan (static), each filtered
                             against itself
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from policies.export.articulation import add_articulation
from policies.export.prims import (
    IDENTITY,
    Materials,
    add_model_shape,
    add_physics_scene,
    convex_collider,
    define_mesh,
    rigid_body,
    set_pose,
)
from sim import physical_pieces
from twin_kit import atomic_output

INTEGRATORS = ("euler", "rk4", "implicit", "implicitfast", "discrete")


def task_env(cfg, seed: int):
    """The task's world (one, with the robot's visual meshes) after the reset of `seed`."""
    from policies.tasks.env import TaskEnv

    env = TaskEnv(dataclasses.replace(cfg, worlds=1, seed=seed, visuals=True))
    env.reset([seed])
    return env


def mujoco_options(world) -> dict:
    """The MuJoCo options the world's solver runs with, as mjc:option:* (name: (USD type, value))."""
    mj = getattr(world.solver, "mj_model", None)
    if mj is None:
        return {}
    o = mj.opt
    return {"timestep": ("Double", float(o.timestep)), "impratio": ("Double", float(o.impratio)),
            "cone": ("Token", "elliptic" if int(o.cone) == 1 else "pyramidal"),
            "integrator": ("Token", INTEGRATORS[int(o.integrator)]), "iterations": ("Int", int(o.iterations)),
            "ls_iterations": ("Int", int(o.ls_iterations)), "tolerance": ("Double", float(o.tolerance)),
            "noslip_iterations": ("Int", int(o.noslip_iterations))}


def _hull_faces(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and outward-facing triangles of a convex piece's hull."""
    from scipy.spatial import ConvexHull

    hull = ConvexHull(points)
    f = hull.simplices.copy()
    v = points
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    flip = (n * hull.equations[:, :3]).sum(1) < 0
    f[flip] = f[flip][:, [0, 2, 1]]
    used, f = np.unique(f, return_inverse=True)
    return v[used], f.reshape(-1, 3)


def _scene_shape(model, label: str) -> int | None:
    hits = [s for s in range(model.shape_count) if model.shape_label[s] == label]
    return hits[0] if hits else None


def add_scan(stage, world, materials: Materials, splats_layer: str | None, cameras, metres_per_unit: float) -> dict:
    """/World/Scan: splats and cameras (scene units scaled to metres), convex pieces, support plane."""
    from pxr import Tf, UsdGeom

    from scenes import add_camera

    UsdGeom.Xform.Define(stage, "/World/Scan")
    out = {"pieces": 0, "cameras": 0, "splats": splats_layer is not None}
    if splats_layer is not None:
        splats = stage.DefinePrim("/World/Scan/Splats")
        splats.GetReferences().AddReference(f"./{splats_layer}")
        set_pose(splats, IDENTITY, metres_per_unit)
    if cameras:
        UsdGeom.Scope.Define(stage, "/World/Scan/Cameras")
        used: set[str] = set()
        for i, cam in enumerate(cameras):
            name = Tf.MakeValidIdentifier(cam.name or "camera")
            name = name if name not in used else f"{name}_{i}"
            used.add(name)
            add_camera(stage, f"/World/Scan/Cameras/{name}", dataclasses.replace(
                cam, t=np.asarray(cam.t, np.float64) * metres_per_unit))
        out["cameras"] = len(cameras)
    m = world.model
    scene = world.scene
    if scene is not None:
        s = _scene_shape(m, "scene")
        mu = (m.shape_material_mu.numpy()[s], m.shape_material_mu_torsional.numpy()[s],
              m.shape_material_mu_rolling.numpy()[s]) if s is not None else (1.0, 0.005, 0.0001)
        UsdGeom.Scope.Define(stage, "/World/Scan/Pieces")
        pieces = physical_pieces(scene.convex_pieces())  # as Twin's mujoco_cpu collides with them
        for k, piece in enumerate(pieces):
            v, f = _hull_faces(np.asarray(piece, np.float64))
            mesh = define_mesh(stage, f"/World/Scan/Pieces/piece_{k:03d}", v, f, np.array([[0.55, 0.55, 0.55]]))
            mesh.CreatePurposeAttr().Set(UsdGeom.Tokens.guide)
            convex_collider(mesh.GetPrim())
            materials.bind(mesh.GetPrim(), *mu)
        out["pieces"] = len(pieces)
    plane = _scene_shape(m, "support_plane")
    if plane is not None:
        add_model_shape(stage, "/World/Scan/SupportPlane", m, plane, m.shape_transform.numpy()[plane].astype(
            np.float64), materials, collide=True, guide=True)
    return out


def add_objects(stage, world, names: list[str], materials: Materials) -> list[str]:
    """/World/Objects/<name>: each task object as a free rigid body of its shapes, at its current pose."""
    from newton import ShapeFlags
    from pxr import UsdGeom

    m = world.model
    UsdGeom.Scope.Define(stage, "/World/Objects")
    bq = world.state.body_q.numpy().reshape(world.n, world.bodies_per_world, 7)[0].astype(np.float64)
    sb, sw, flags = m.shape_body.numpy(), m.shape_world.numpy(), m.shape_flags.numpy()
    xf = m.shape_transform.numpy().astype(np.float64)
    mj = getattr(m, "mujoco", None)
    condim = mj.condim.numpy() if mj is not None and hasattr(mj, "condim") else np.full(m.shape_count, 3)
    gravcomp = mj.gravcomp.numpy() if mj is not None and hasattr(mj, "gravcomp") else np.zeros(m.body_count)
    paths = []
    for name, b in zip(names, world.object_bodies, strict=True):
        path = f"/World/Objects/{name}"
        body = UsdGeom.Xform.Define(stage, path).GetPrim()
        set_pose(body, bq[b])
        rigid_body(body, m.body_mass.numpy()[b], m.body_com.numpy()[b], m.body_inertia.numpy()[b],
                   gravity_compensated=bool(gravcomp[b] > 0))
        for k, s in enumerate(s for s in range(m.shape_count) if sb[s] == b and sw[s] == 0):
            collide = bool(flags[s] & int(ShapeFlags.COLLIDE_SHAPES))
            add_model_shape(stage, f"{path}/box_{k}", m, s, xf[s], materials, collide, guide=False,
                            mujoco_condim=None if condim[s] == 3 else int(condim[s]))
        paths.append(path)
    return paths


def add_collision_groups(stage, groups: dict[str, list[str]]) -> None:
    """/World/CollisionGroups/<name>: UsdPhysics collision groups whose colliders never collide with each other.

    The robot's (Twin imports it without self-collision) and the scan's (static: nothing to collide) colliders
    each form one; stated this way, Newton's MuJoCo conversion also compiles the same contact masks as Twin's."""
    from pxr import Sdf, UsdGeom, UsdPhysics

    UsdGeom.Scope.Define(stage, "/World/CollisionGroups")
    for name, roots in groups.items():
        g = UsdPhysics.CollisionGroup.Define(stage, f"/World/CollisionGroups/{name}")
        includes = g.GetCollidersCollectionAPI().CreateIncludesRel()
        for root in roots:
            includes.AddTarget(Sdf.Path(root))
        g.CreateFilteredGroupsRel().AddTarget(g.GetPath())


def build_task_stage(path: Path, env, gaussians=None, cameras=None, splats_layer: str | None = None,
                     doc: str = "Twin task") -> dict:
    """Write the stage of `env`'s world 0 at `path` (a new file); returns what it holds."""
    from pxr import Usd, UsdGeom, UsdPhysics

    w = env.world
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    UsdPhysics.SetStageKilogramsPerUnit(stage, 1.0)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    stage.SetMetadata("comment", doc)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    add_physics_scene(stage, "/World/PhysicsScene", w.cfg.frame_dt / w.cfg.substeps, mujoco_options(w))
    materials = Materials(stage, "/World/Materials")
    scale = w.scene.metres_per_unit if w.scene is not None else 1.0
    scan = add_scan(stage, w, materials, splats_layer if gaussians is not None else None, cameras, scale)
    objects = add_objects(stage, w, [o.name for o in env.objects], materials)
    robot = add_articulation(stage, "/World/Robot", w, materials)
    add_collision_groups(stage, {"robot": ["/World/Robot"], "scan": ["/World/Scan"]})
    stage.GetRootLayer().Save()
    bq = w.state.body_q.numpy()[w.object_bodies].astype(np.float64)
    return {**scan, "objects": objects, "links": len(robot["links"]), "joints": len(robot["joints"]),
            "robot_base": [round(float(v), 4) for v in env.base],
            "object_positions": {p.rsplit("/", 1)[-1]: [round(float(v), 4) for v in q[:3]]
                                 for p, q in zip(objects, bq, strict=True)}}


def write_task_stage(dest: Path, env, gaussians=None, cameras=None, doc: str = "Twin task") -> tuple[list[Path], dict]:
    """Write the stage at `dest` and its splat layer <stem>_splats.usdc beside it, each under a temporary name
    and renamed (the layer first, so the stage never references a missing layer); returns (files, summary)."""
    from scenes import write_splats_layer

    dest = Path(dest)
    files: list[Path] = []
    layer = None
    if gaussians is not None:
        layer = f"{dest.stem}_splats.usdc"
        with atomic_output(dest.parent / layer) as tmp:
            tmp.unlink()                       # usd-core creates layers only where no file exists
            write_splats_layer(tmp, gaussians)
        files.append(dest.parent / layer)
    with atomic_output(dest) as tmp:
        tmp.unlink()
        summary = build_task_stage(tmp, env, gaussians, cameras, layer, doc)
    return [dest, *files], summary
