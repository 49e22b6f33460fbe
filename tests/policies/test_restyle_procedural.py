"""The procedural restyler on an analytic scene (exact depth, classes and normals): labels and geometry kept,
determinism, world-fixed table texture, light direction, distractor depth ordering, exact ray casts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.restyle_scene import CUBE, TABLE_HALF, TABLE_Z, episode, intrinsics, look_at, side_view

from policies.restyle.distractors import Placed, intersect
from policies.restyle.families import (
    VANILLA,
    Background,
    Distractors,
    LightColour,
    LightIntensity,
    Style,
    TableTexture,
    sample_style,
)
from policies.restyle.procedural import SEG_DISTRACTOR, restyle, restyle_labelled
from policies.restyle.shading import light_rgb
from twin_kit import InputError

W = H = 96
K = intrinsics(W, H)


def _frames(maps: dict, sl) -> dict:
    return {k: (v[sl] if k in ("depth", "seg", "normal", "world_to_cam") else v) for k, v in maps.items()}


@pytest.fixture(scope="module")
def scene():
    """Four frames from a fixed side camera."""
    rgb, maps = episode([side_view()], K, W, H)
    rep = lambda t: t.expand(4, *t.shape[1:]).clone()  # noqa: E731
    return rep(rgb), {**maps, **{k: rep(maps[k]) for k in ("depth", "seg", "normal", "world_to_cam")}}


def test_vanilla_changes_nothing(scene):
    rgb, maps = scene
    out = restyle_labelled(rgb, maps, VANILLA)
    assert out.rgb is rgb and out.seg is maps["seg"] and out.placed == 0


def test_labels_and_geometry_never_change(scene):
    """Every family at once: the inputs are untouched, the returned labels equal them except where a distractor
    is visible (class SEG_DISTRACTOR, nearer than the surface it hides), and the frames change."""
    rgb, maps = scene
    before = {k: v.clone() for k, v in maps.items() if isinstance(v, torch.Tensor)}
    rgb0 = rgb.clone()
    for seed in range(3):
        for split in ("train", "held_out"):
            s = sample_style(seed, split)
            out = restyle_labelled(rgb, maps, s)
            assert out.rgb.shape == rgb.shape and out.rgb.dtype == torch.float32
            assert out.rgb.min() >= 0 and out.rgb.max() <= 1 and (out.rgb - rgb).abs().mean() > 0.02
            new = out.seg == SEG_DISTRACTOR
            assert out.placed >= 1 and new.any()
            assert torch.equal(out.seg[~new], maps["seg"][~new])
            assert torch.equal(out.depth[~new], maps["depth"][~new])
            assert (out.depth[new] < maps["depth"][new]).all()
    assert torch.equal(rgb, rgb0)
    assert all(torch.equal(maps[k], v) for k, v in before.items())


def test_background_grades_only_the_rest_of_the_scene(scene):
    """The background family changes the walls and floor, not the table top, the robot or the objects."""
    rgb, maps = scene
    rgb, maps = rgb[:1], _frames(maps, slice(0, 1))
    out = restyle(rgb, maps, Style(split="held_out", background=Background(120.0, 1.8, 0.7, 1.3)))[0]
    seg, n = maps["seg"][0], maps["normal"][0]
    z = _world(maps["depth"][0, ..., 0], side_view())[..., 2]
    top = (seg == 1) & ((z - TABLE_Z).abs() < 1e-3) & (n[..., 2] > 0.99)
    wall = (seg == 1) & (n[..., 1] < -0.99)
    assert top.sum() > 200 and wall.sum() > 200
    keep = top | (seg == 2) | (seg == 3)
    assert torch.equal(out[keep], rgb[0][keep])
    assert (out[wall] - rgb[0][wall]).abs().mean() > 0.1


def test_deterministic_for_a_style_whatever_the_threads(scene):
    rgb, maps = scene
    s = sample_style(5, "train")
    a = restyle(rgb, maps, s, threads=1)
    assert torch.equal(a, restyle(rgb, maps, s, threads=2))
    big = torch.cat([rgb] * 9)  # several chunks, spread over threads
    bmaps = {**maps, **{k: torch.cat([maps[k]] * 9) for k in ("depth", "seg", "normal", "world_to_cam")}}
    b = restyle(big, bmaps, s, threads=2)
    assert torch.equal(b, restyle(big, bmaps, s, threads=1))
    assert not torch.equal(b[0], b[20])  # camera noise differs per frame
    assert not torch.equal(a, restyle(rgb, maps, sample_style(6, "train")))


def _project(P: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    x = P @ w2c[:3, :3].T + w2c[:3, 3]
    return np.c_[K[0, 0] * x[:, 0] / x[:, 2] + K[0, 2], K[1, 1] * x[:, 1] / x[:, 2] + K[1, 2]]


@pytest.mark.parametrize("normals", [True, False])
def test_table_texture_sticks_to_the_world(normals):
    """Two views 3 cm and a degree apart: a table point keeps its restyled colour in the second view (checked at
    pixels whose reprojection lands within 0.1 px of a pixel centre), while the texture varies across the
    table."""
    p0 = look_at(np.array([0.9, -0.7, 1.6]), np.array([0.0, 0.0, TABLE_Z]))
    p1 = look_at(np.array([0.92, -0.68, 1.61]), np.array([0.01, 0.0, TABLE_Z]))
    rgb, maps = episode([p0, p1], K, W, H, objects=False)
    if not normals:
        maps["normal"] = None
    style = Style(split="train", seed=4, table_texture=TableTexture("checker", "granite", 0.12, 30.0, 0.5),
                  light_intensity=LightIntensity(1.1, 0.5, 55.0, 40.0), light_colour=LightColour(4200.0, 0.01))
    out = restyle(rgb, maps, style)
    d0 = maps["depth"][0, ..., 0].numpy()
    v, u = np.nonzero((maps["seg"][0].numpy() == 1) & np.isfinite(d0))
    ray = np.c_[u, v, np.ones_like(u)] @ np.linalg.inv(K).T
    R, t = p0[:3, :3], p0[:3, 3]
    P = (ray * d0[v, u][:, None] - t) @ R                                # camera 0 pixels -> world
    on_table = (np.abs(P[:, 2] - TABLE_Z) < 1e-3) & (np.abs(P[:, 0]) < TABLE_HALF[0] - 0.02) & \
        (np.abs(P[:, 1]) < TABLE_HALF[1] - 0.02)
    uv = _project(P, p1)
    near = on_table & (np.abs(uv - np.round(uv)).max(1) < 0.1)
    u1, v1 = np.round(uv[near]).astype(int).T
    ok = (u1 >= 1) & (u1 < W - 1) & (v1 >= 1) & (v1 < H - 1)
    a = out[0][v[near][ok], u[near][ok]]
    b = out[1][v1[ok], u1[ok]]
    assert ok.sum() > 40
    err = (a - b).abs().max(1).values                                     # 0.1 px apart: ~0 off the checker edges
    assert err.median() < 0.003 and err.mean() < 0.01
    table = out[0][v[on_table], u[on_table]]
    assert table.std(0).max() > 0.04                                      # a texture, not a flat colour
    shuffled = b[torch.randperm(len(b), generator=torch.Generator().manual_seed(0))]
    assert (a - shuffled).abs().max(1).values.mean() > 10 * err.mean()


def test_shading_follows_the_light_direction(scene):
    """The robot column's +x face brightens under a light from +x and darkens under one from -y, and the
    reverse for its -y face; the same with normals derived from depth."""
    rgb, maps = scene
    rgb, maps = rgb[:1], _frames(maps, slice(0, 1))
    n = maps["normal"][0]
    robot = maps["seg"][0] == 2
    px = robot & (n[..., 0] > 0.99)
    my = robot & (n[..., 1] < -0.99)
    assert px.sum() > 10 and my.sum() > 10
    for derived in (False, True):
        m = {**maps, "normal": None} if derived else maps
        gain = {}
        for name, az in (("from_x", 0.0), ("from_minus_y", 270.0)):
            out = restyle(rgb, m, Style(split="train", light_intensity=LightIntensity(1.0, 0.3, 30.0, az)))[0]
            gain[name] = [float(out[f].mean() / rgb[0][f].mean()) for f in (px, my)]
        assert gain["from_x"][0] > 1.5 * gain["from_x"][1]
        assert gain["from_minus_y"][1] > 1.5 * gain["from_minus_y"][0]


def test_distractors_respect_depth_order():
    """Frame 0 is clear; frame 1 has a near object covering the left half of the image. Distractors show in
    frame 0 in front of the table; in frame 1 they are hidden on the left and unchanged on the right."""
    rgb, maps = episode([side_view(), side_view()], K, W, H)
    left = torch.zeros(H, W, dtype=torch.bool)
    left[:, : W // 2] = True
    maps["depth"][1][left] = 0.3
    maps["seg"][1][left] = 3
    rgb[1][left] = torch.tensor([0.2, 0.6, 0.3])
    spec = Distractors(4, ("box", "cylinder", "box", "cylinder"), ("grey", "lime", "white", "sky"),
                       (6.0, 8.0, 5.0, 7.0), (1.5, 1.0, 2.0, 1.2), (10.0, 0.0, 45.0, 0.0))
    out = restyle_labelled(rgb, maps, Style(split="train", seed=2, distractors=spec))
    d = out.seg == SEG_DISTRACTOR
    assert out.placed == 4
    assert d[0, :, : W // 2].any() and d[0, :, W // 2:].any()
    assert not d[1][left].any()                                          # behind the near object
    assert torch.equal(out.rgb[1][left], rgb[1][left])                   # which is untouched
    right = ~left
    assert torch.equal(d[1][right], d[0][right]) and torch.equal(out.rgb[1][right], out.rgb[0][right])
    # the distractors stand on the table: their visible points are between the table top and 12 cm above
    P = _world(out.depth[0, ..., 0], side_view())[d[0]]
    assert (P[:, 2] > TABLE_Z - 1e-3).all() and (P[:, 2] < TABLE_Z + 0.13).all()
    assert (P[:, 0].abs() < TABLE_HALF[0]).all() and (P[:, 1].abs() < TABLE_HALF[1]).all()
    # a moving camera takes the per-frame path and agrees on the first frame
    p1 = look_at(np.array([1.15, -0.85, 1.45]), np.array([0.0, 0.0, TABLE_Z]))
    rgb2, maps2 = episode([side_view(), p1], K, W, H)
    out2 = restyle_labelled(rgb2, maps2, Style(split="train", seed=2, distractors=spec))
    assert torch.equal(out2.seg[0], out.seg[0]) and torch.allclose(out2.rgb[0], out.rgb[0], atol=1e-5)
    d2 = out2.seg[1] == SEG_DISTRACTOR
    assert d2.any() and (out2.depth[1][d2] < maps2["depth"][1][d2]).all()


def test_distractors_stand_beside_the_objects_where_no_table_shows():
    """A capture whose splats show no table under the objects (they stand on the collision plane alone): with
    the table top's pixels seen through to a far floor, distractors still stand on the support plane, within
    NEAR_OBJECTS_M of the task objects; with no objects in view there is nowhere to put them."""
    from policies.restyle.distractors import NEAR_OBJECTS_M

    rgb, maps = episode([side_view()], K, W, H)
    P = _world(maps["depth"][0, ..., 0], side_view())
    top = (maps["seg"][0] == 1) & ((P[..., 2] - TABLE_Z).abs() < 1e-3)
    assert top.sum() > 500
    maps["depth"][0][top] = maps["depth"][0][top] * 3.0          # the floor far below, seen past the plane
    maps["normal"][0][top] = torch.tensor([0.0, 0.0, 1.0])
    spec = Distractors(3, ("box", "cylinder", "box"), ("grey", "lime", "white"), (5.0, 4.0, 6.0),
                       (1.5, 1.0, 1.2), (10.0, 0.0, 45.0))
    style = Style(split="train", seed=4, distractors=spec)
    out = restyle_labelled(rgb, maps, style)
    d = out.seg[0] == SEG_DISTRACTOR
    assert out.placed >= 1 and d.any()
    Q = _world(out.depth[0, ..., 0], side_view())[d]
    assert (Q[:, 2] > TABLE_Z - 1e-3).all() and (Q[:, 2] < TABLE_Z + 0.1).all()
    cube = torch.tensor(CUBE[0][:2])
    assert ((Q[:, :2] - cube).norm(dim=-1) < NEAR_OBJECTS_M + 0.06).all()
    maps["seg"][0][maps["seg"][0] == 3] = 1
    assert restyle_labelled(rgb, maps, style).placed == 0


def test_distractors_never_hide_the_task():
    """Tall held-out-sized distractors crowd the table, yet none covers the cube or the ground around it in the
    first frame: the family changes what is seen around the task, it does not take the target out of view."""
    rgb, maps = episode([side_view()], K, W, H)
    cube = maps["seg"][0] == 3
    ys, xs = torch.nonzero(cube, as_tuple=True)
    ring = torch.zeros_like(cube)
    ring[ys.min() - 2: ys.max() + 3, xs.min() - 2: xs.max() + 3] = True   # the cube's box and two pixels round it
    spec = Distractors(6, ("cylinder", "box") * 3, ("lime", "magenta", "crimson") * 2, (12.0, 11.0, 10.0) * 2,
                       (2.0,) * 6, (0.0, 30.0) * 3)
    placed = 0
    for seed in range(8):
        out = restyle_labelled(rgb, maps, Style(split="held_out", seed=seed, distractors=spec))
        placed += out.placed
        assert not (out.seg[0][ring] == SEG_DISTRACTOR).any(), seed
        assert torch.equal(out.rgb[0][cube], rgb[0][cube])
    assert placed >= 8            # they are still there, beside the task


def _world(depth: torch.Tensor, w2c: np.ndarray) -> torch.Tensor:
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    ray = torch.stack([u, v, torch.ones_like(u)], -1).double() @ torch.tensor(np.linalg.inv(K)).T
    R, t = torch.tensor(w2c[:3, :3]), torch.tensor(w2c[:3, 3])
    return ((ray * depth.double()[..., None] - t) @ R).float()


def test_ray_casts_are_exact():
    """A ray straight down hits a box's top and a cylinder's cap at the exact height; a horizontal ray hits the
    cylinder's side at distance - r, with outward normals."""
    pr = Placed(base=torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]), half=torch.tensor([[0.1, 0.2, 0.15],
                [0.05, 0.05, 0.1]]), yaw=torch.tensor([0.3, 0.0]), cylinder=torch.tensor([False, True]),
                colour=torch.ones(2, 3))
    o = torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 3.0], [3.0, 0.0, 1.1], [0.05, 0.15, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    t, k, n = intersect(o, d, pr)
    assert torch.allclose(t[:3], torch.tensor([3.0 - 1.3, 3.0 - 1.2, 2.0 - 0.05]), atol=1e-6)
    assert k.tolist()[:3] == [0, 1, 1]
    assert torch.allclose(n[:3], torch.tensor([[0.0, 0, 1], [0, 0, 1], [1, 0, 0]]), atol=1e-6)
    # (0.05, 0.15) is inside the yawed 0.2 x 0.4 box: rotate it into the box frame to check
    c, s = math.cos(0.3), math.sin(0.3)
    inside = abs(c * 0.05 + s * 0.15) <= 0.1 and abs(-s * 0.05 + c * 0.15) <= 0.2
    assert bool(torch.isfinite(t[3])) == inside


def test_light_colour_follows_the_planckian_locus():
    white, warm, cold = light_rgb(6500.0), light_rgb(2000.0), light_rgb(10000.0)
    assert torch.allclose(white, torch.ones(3), atol=1e-4)
    assert warm[0] > 1.3 * warm[2] and cold[2] > 1.1 * cold[0]


def test_bad_inputs_are_one_line_errors(scene):
    rgb, maps = scene
    with pytest.raises(InputError, match="rgb"):
        restyle(rgb[0], maps, sample_style(0))
    with pytest.raises(InputError, match="depth"):
        restyle(rgb[:2], maps, sample_style(0))
    with pytest.raises(InputError, match="support_height"):
        restyle(rgb, {**maps, "support_height": None}, sample_style(0))


@pytest.fixture(scope="module")
def sim_frame(tmp_path_factory):
    """A real render: the Franka and a cube on a table, ray traced by Newton through Twin's Sensors."""
    import trimesh

    from sim import BoxObject, Sensors, WorldConfig, build_world, control_maps
    from spatial import Camera
    from spatial import look_at as cam_look_at

    table = trimesh.creation.box(extents=(1.2, 0.8, 0.75))
    table.apply_translation((0.3, 0.0, 0.375))
    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    floor.apply_translation((0.0, 0.0, -0.01))
    path = tmp_path_factory.mktemp("scene") / "table.ply"
    trimesh.util.concatenate([table, floor]).export(path)
    world = build_world(WorldConfig(scene=str(path), robot="franka",
                                    objects=[BoxObject(half=(0.04, 0.04, 0.04), pos=(0.55, -0.25, 0.79))]))
    R, t = cam_look_at(np.array([1.3, 0.9, 1.45]), np.array([0.3, 0.0, 1.05]))
    cam = Camera("side", 96, 72, 96.0, 96.0, 47.5, 35.5, R, t)
    f = Sensors(world, cam, normals=True, splats=False).render()
    maps = control_maps(f)
    maps.update(normal=f.normal, K=torch.tensor(cam.K, dtype=torch.float32),
                world_to_cam=torch.tensor(cam.world_to_cam, dtype=torch.float32), support_height=0.75)
    return f.rgb, maps, cam


def test_real_sim_frame(sim_frame):
    """On Newton's render (its normals, its classes): the table top takes the texture, the robot its colour,
    distractors stand on the table, and the labels follow the rules."""
    from policies.restyle.families import SurfaceTexture

    rgb, maps, cam = sim_frame
    x = np.array([0.75, -0.3, 0.75]) @ cam.R.T + cam.t                 # a table-top point beside the robot
    u, v = np.round([cam.fx * x[0] / x[2] + cam.cx, cam.fy * x[1] / x[2] + cam.cy]).astype(int)
    assert maps["seg"][0, v, u] == 1
    tex = restyle(rgb, maps, Style(split="held_out", seed=1, table_texture=TableTexture("checker", "teal", 0.3, 0.0,
                                                                                       0.0)))
    assert (tex[0, v, u] - rgb[0, v, u]).abs().max() > 0.1
    robot = maps["seg"][0] == 2
    assert torch.equal(tex[0][robot], rgb[0][robot])
    red = restyle(rgb, maps, Style(split="held_out", robot_texture=SurfaceTexture("red", 0.0, 8.0)))
    assert (red[0][robot][:, 0] - red[0][robot][:, 1]).mean() > 0.2 and torch.equal(red[0][~robot], rgb[0][~robot])
    out = restyle_labelled(rgb, maps, sample_style(3, "held_out"))
    d = out.seg == SEG_DISTRACTOR
    assert out.placed >= 1 and d.any() and (out.depth[d] < maps["depth"][d]).all()
    assert torch.equal(out.seg[~d], maps["seg"][~d])


def test_object_colours_turn_together_and_stay_apart(scene):
    """object_texture gives the cube (Twin's red) the palette's colour and turns another object's green by the
    same hue angle, so the two stay apart under every palette and only object pixels change."""
    from policies.restyle.families import OBJECT_PALETTES, SurfaceTexture

    rgb, maps = scene
    rgb, maps = rgb[:1].clone(), _frames(maps, slice(0, 1))
    obj = maps["seg"][0] == 3
    zone = obj & (torch.arange(W)[None, :] >= 48)
    assert zone.sum() >= 10 and (obj & ~zone).sum() >= 10
    rgb[0][zone] = torch.tensor([0.10, 0.70, 0.25])
    for split in ("train", "held_out"):
        for name, colour in OBJECT_PALETTES[split].items():
            out = restyle(rgb, maps, Style(split=split, object_texture=SurfaceTexture(name, 0.0, 1.0)))[0]
            cube, green = out[obj & ~zone].mean(0), out[zone].mean(0)
            hue = lambda c: torch.nn.functional.normalize(c - c.mean(), dim=0)  # noqa: E731
            assert float(hue(cube) @ hue(torch.tensor(colour))) > 0.99, name    # the cube takes the palette hue
            assert float(hue(cube) @ hue(green)) < 0.0, name                   # and the other object stays apart
            assert torch.equal(out[~obj], rgb[0][~obj])


def test_classes_mirror_the_sensors():
    """The restyler's copy of the sensors' segmentation classes agrees with sim's, and the distractor class is new."""
    from policies.restyle import procedural
    from sim.sensors import cameras

    names = ("SEG_NONE", "SEG_SCENE", "SEG_ROBOT", "SEG_OBJECT")
    assert [getattr(procedural, n) for n in names] == [getattr(cameras, n) for n in names]
    assert SEG_DISTRACTOR not in [getattr(cameras, n) for n in names]
