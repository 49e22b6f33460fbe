"""Robots look like themselves: the viewer and the sensors draw the visual meshes (Franka: COLLADA files read
through pycollada), decimated per file, while physics keeps colliding with the collision shapes only.

Real Newton worlds, real example-robot-data files; the silhouette oracle ray casts the full-resolution .dae
meshes with trimesh (embree), independently of Newton.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from support.small_bundle import make_bundle

from twin_kit import qrot, tmul


@pytest.fixture(scope="module")
def franka(tmp_path_factory):
    from twin_kit import quiet_warp

    quiet_warp()
    from sim.physics.world import WorldConfig, build_world

    bundle = make_bundle(tmp_path_factory.mktemp("vis") / "small", splats=False)
    return build_world(WorldConfig(scene=str(bundle), robot="franka", solver="mujoco_cpu"))


def _link_files(kind: str) -> list[tuple[str, str, np.ndarray]]:
    """(link, mesh file, element origin pose) of every Franka <kind> element with a mesh, from the shipped URDF."""
    from sim.physics.robots import ROBOTS, rpy_quat, urdf_source

    out = []
    for link in ET.fromstring(urdf_source(ROBOTS["franka"])).findall("link"):
        for el in link.findall(kind):
            if el.find("geometry/mesh") is None:
                continue
            o = el.find("origin")
            xyz = [float(x) for x in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split()]
            rpy = [float(x) for x in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split()]
            out.append((link.get("name"), el.find("geometry/mesh").get("filename"), np.r_[xyz, rpy_quat(rpy)]))
    return out


def _posed_files(world, kind: str):
    """World-space trimesh of the Franka's `kind` meshes at full resolution, posed by the current state."""
    import trimesh

    from sim.physics.robots import fixed_link_offset, urdf_source
    from sim.physics.world import body_poses

    urdf = urdf_source(world.robot.spec)
    bq = body_poses(world)[0].astype(np.float64)
    names = world.robot.body_names
    parts = []
    for link, path, origin in _link_files(kind):
        anchor, off = fixed_link_offset(urdf, link)
        frame = tmul(bq[names.index(anchor)], off) if anchor in names else tmul(world.base_xform, off)
        pose = tmul(frame, origin)
        m = trimesh.load(path, force="mesh")
        parts.append(trimesh.Trimesh(qrot(pose[3:], np.asarray(m.vertices)) + pose[:3], m.faces, process=False))
    return trimesh.util.concatenate(parts)


def _silhouette(mesh, cam) -> np.ndarray:
    """(H, W) bool: pixels (OpenCV centres) whose ray from `cam` hits `mesh` (trimesh + embree)."""
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    d_cam = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u, float)], -1).reshape(-1, 3)
    dirs = d_cam @ cam.R  # camera -> world rotation is R^T
    origins = np.broadcast_to(cam.center, dirs.shape)
    hit = mesh.ray.intersects_any(origins, dirs)
    return hit.reshape(cam.height, cam.width)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_franka_draws_its_collada_visuals_not_its_hulls(franka):
    import newton

    from sim.live.viewer import link_meshes
    from sim.physics.visuals import FILE_TRIANGLES, VISUAL_LABEL

    m = franka.model
    flags, labels = m.shape_flags.numpy(), list(m.shape_label)
    vis, col = int(newton.ShapeFlags.VISIBLE), int(newton.ShapeFlags.COLLIDE_SHAPES)
    world0 = m.shape_world.numpy() == 0
    visual = [s for s in range(m.shape_count) if world0[s] and str(labels[s]).startswith(VISUAL_LABEL + "/")]
    colliders = [s for s in range(m.shape_count) if world0[s] and flags[s] & col]
    files = {link: (path, origin) for link, path, origin in _link_files("visual")}  # one visual per Franka link
    assert sorted(str(labels[s]).split("/")[1] for s in visual) == sorted(files)  # one shape per visual link
    assert all(flags[s] & vis and not flags[s] & col for s in visual), "visual shapes: drawn, never colliding"
    assert colliders and not any(flags[s] & vis for s in colliders), "collision shapes: colliding, never drawn"

    # Each visual shape is its .dae file (in the link frame), decimated: same extent, at most the budget.
    import trimesh

    for s in visual:
        link = str(labels[s]).split("/")[1]
        path, origin = files[link]
        dae = trimesh.load(path, force="mesh")
        ref = qrot(origin[3:], np.asarray(dae.vertices)) + origin[:3]
        v = np.asarray(m.shape_source[s].vertices, np.float64)
        np.testing.assert_allclose(v.min(0), ref.min(0), atol=0.003, err_msg=link)
        np.testing.assert_allclose(v.max(0), ref.max(0), atol=0.003, err_msg=link)
        assert len(m.shape_source[s].indices) // 3 <= min(len(dae.faces), 1.05 * FILE_TRIANGLES), link

    # The viewer sends exactly these meshes, split by the files' material colours (Franka: white and dark grey).
    lms = link_meshes(franka)
    n_visual = sum(len(m.shape_source[s].indices) // 3 for s in visual)
    assert sum(len(lm.faces) for lm in lms) == n_visual
    colors = {lm.color for lm in lms}
    assert (255, 255, 255) in colors and (64, 64, 64) in colors, colors
    hull_tris = sum(len(m.shape_source[s].indices) // 3 for s in colliders if m.shape_source[s] is not None)
    assert n_visual > 5 * hull_tris


def test_franka_sensor_silhouette_is_the_visual_mesh(franka):
    from sim.sensors.cameras import SEG_ROBOT, Sensors
    from spatial import Camera, look_at

    base = franka.base_xform[:3]
    R, t = look_at(base + np.array([0.9, -0.7, 0.6]), base + np.array([0.15, 0.0, 0.45]))
    cam = Camera("c", 200, 160, 190.0, 190.0, 99.5, 79.5, R, t)
    frame = Sensors(franka, cam, splats=False).render()
    robot = (frame.seg[0] == SEG_ROBOT).numpy()
    visual = _silhouette(_posed_files(franka, "visual"), cam)
    hulls = _silhouette(_posed_files(franka, "collision"), cam)
    assert robot.sum() > 2000, "the robot should fill a good part of the image"
    iou_visual, iou_hull = _iou(robot, visual), _iou(robot, hulls)
    assert iou_visual > 0.97, iou_visual
    assert iou_visual > iou_hull + 0.05, (iou_visual, iou_hull)
    assert (hulls & ~robot).sum() > 4 * (visual & ~robot).sum()  # the hulls stick out of what is drawn
    # Shading from the files' colours: white shells and dark grey joint caps, not one hull grey.
    rgb = frame.rgb[0].numpy()[robot]
    assert (rgb.mean(1) > 0.75).mean() > 0.3 and (rgb.mean(1) < 0.35).mean() > 0.03


def test_visual_shapes_do_not_change_physics(tmp_path):
    from twin_kit import quiet_warp

    quiet_warp()
    from sim.physics import control
    from sim.physics.world import BoxObject, WorldConfig, build_world, step

    bundle = make_bundle(tmp_path / "small", splats=False)
    for solver in ("mujoco_cpu", "mujoco_warp"):
        runs = []
        for visuals in (True, False):
            w = build_world(WorldConfig(scene=str(bundle), robot="franka", worlds=2, solver=solver, visuals=visuals,
                                        objects=[BoxObject(pos=(0.0, 0.0, 0.9))]))
            p0, r0 = control.ee_pose(w)
            qs = []
            for k in range(40):
                control.ik_targets(w, control.scripted_goal(p0, k * w.cfg.frame_dt, 0.4, 0.12), r0)
                step(w)
                qs.append(w.state.joint_q.numpy().copy())
            runs.append((w.model.shape_count, w.base_xform, np.array(qs)))
        (n_vis, base_vis, q_vis), (n_plain, base_plain, q_plain) = runs
        assert n_vis > n_plain  # the visual shapes are there...
        np.testing.assert_allclose(base_vis, base_plain, atol=0)  # ...placement ignores them...
        assert np.abs(q_vis - q_plain).max() <= 1e-6, solver  # ...and the trajectory is the same
        assert np.abs(q_vis[-1] - q_vis[0]).max() > 0.01  # (the arm did move)


@pytest.mark.parametrize("name", ["so100", "so101", "ur5e", "g1", "aloha"])
def test_other_robots_draw_their_visual_meshes(name):
    """Every link with a visual mesh in its URDF gets one drawn, non-colliding shape with the files' or the URDF
    materials' colours, and renderers stop seeing its colliders; ALOHA's MJCF geoms are drawn as they are."""
    import newton

    from sim.live.viewer import link_meshes
    from sim.physics.robots import ROBOTS, urdf_source
    from sim.physics.visuals import FILE_TRIANGLES, VISUAL_LABEL
    from sim.physics.world import WorldConfig, build_world
    from twin_kit import quiet_warp

    quiet_warp()
    w = build_world(WorldConfig(scene=None, robot=name, solver="mujoco_cpu"))
    m = w.model
    flags, labels, bodies = m.shape_flags.numpy(), list(m.shape_label), m.shape_body.numpy()
    vis, col = int(newton.ShapeFlags.VISIBLE), int(newton.ShapeFlags.COLLIDE_SHAPES)
    world0 = m.shape_world.numpy() == 0  # (not the floor)
    drawn = [s for s in range(m.shape_count) if flags[s] & vis and world0[s]]
    colliders_drawn = [s for s in drawn if flags[s] & col]
    lms = link_meshes(w)
    assert sum(len(lm.faces) for lm in lms) > 1000
    if name == "aloha":  # its MJCF geoms are both: every moving link is drawn from them
        assert {int(bodies[s]) for s in colliders_drawn} >= set(range(1, 7))  # shoulder .. wrist
        return
    visual = [s for s in drawn if str(labels[s]).startswith(VISUAL_LABEL + "/")]
    links = {lk.get("name") for lk in ET.fromstring(urdf_source(ROBOTS[name])).findall("link")
             if lk.find("visual/geometry/mesh") is not None}
    assert {str(labels[s]).split("/")[1] for s in visual} == links
    assert not any(flags[s] & col for s in visual)
    assert not {int(bodies[s]) for s in colliders_drawn} & {int(bodies[s]) for s in visual}
    n_tris = sum(len(m.shape_source[s].indices) // 3 for s in visual)
    assert n_tris <= 1.05 * FILE_TRIANGLES * sum(len(lk.findall("visual")) for lk in
                                                 ET.fromstring(urdf_source(ROBOTS[name])).findall("link"))
    colors = {lm.color for lm in lms}
    expected = {"so100": (255, 209, 31), "so101": (255, 209, 31), "g1": (51, 51, 51)}.get(name)
    assert len(colors) >= 2 and (expected is None or expected in colors), colors
