"""Task objects in assets/objects: URDF and MJCF agree with each other and with the shape's own mass
properties, MuJoCo and Newton load them with that mass, and a dropped object comes to rest on its bottom face.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from twin_kit import InputError
from twin_kit.assets import asset_path

# name: total mass (kg), whether it is a free body, number of collision boxes
OBJECTS = {"cube": (0.064, True, 1), "bin": (0.1661184, True, 5), "target_zone": (0.014, False, 0)}


def urdf_path(name):
    return asset_path(f"objects/{name}/{name}.urdf")


def mjcf_path(name):
    return asset_path(f"objects/{name}/{name}.xml")


def _vec(text, default="0 0 0"):
    return np.array((text or default).split(), dtype=np.float64)


def read_urdf(name) -> dict:
    """Mass, centre of mass, inertia diagonal, friction and (size, centre) boxes of the single-link URDF."""
    link = ET.parse(urdf_path(name)).getroot().find("link")
    inertial = link.find("inertial")
    i = inertial.find("inertia").attrib
    assert all(float(i[k]) == 0.0 for k in ("ixy", "ixz", "iyz"))

    def boxes(tag):
        return [(_vec(el.find("geometry/box").get("size")), _vec(el.find("origin").get("xyz")))
                for el in link.findall(tag)]

    contact = link.find("contact")
    friction = None if contact is None else np.array(
        [float(contact.find(k).get("value")) for k in ("lateral_friction", "spinning_friction", "rolling_friction")])
    return {"mass": float(inertial.find("mass").get("value")), "com": _vec(inertial.find("origin").get("xyz")),
            "inertia": np.array([float(i[k]) for k in ("ixx", "iyy", "izz")]), "friction": friction,
            "collision": boxes("collision"), "visual": boxes("visual")}


def read_mjcf(name) -> dict:
    """The same fields from the MJCF, with geom attributes resolved through the body's childclass defaults."""
    root = ET.parse(mjcf_path(name)).getroot()
    defaults = {d.get("class"): d.find("geom").attrib for d in root.iter("default") if d.find("geom") is not None}
    body = root.find("worldbody/body")
    inertial = body.find("inertial")
    geoms = [{**defaults.get(body.get("childclass"), {}), **g.attrib} for g in body.findall("geom")]
    colliding = [g for g in geoms if not (g.get("contype") == "0" and g.get("conaffinity") == "0")]
    frictions = {tuple(_vec(g.get("friction"), "1 0.005 0.0001")) for g in colliding}
    assert len(frictions) <= 1, "one friction per object"
    return {"mass": float(inertial.get("mass")), "com": _vec(inertial.get("pos")),
            "inertia": _vec(inertial.get("diaginertia")), "free": body.find("freejoint") is not None,
            "friction": np.array(frictions.pop()) if frictions else None,
            "collision": [(2 * _vec(g["size"]), _vec(g.get("pos"))) for g in colliding if g.get("type") == "box"],
            "visual": [(2 * _vec(g["size"]), _vec(g.get("pos"))) for g in geoms]}


def solid_boxes(boxes, mass):
    """Centre of mass and inertia diagonal about it of non-overlapping solid boxes of one density."""
    vols = np.array([np.prod(size) for size, _ in boxes])
    masses = mass * vols / vols.sum()
    com = sum(m * c for m, (_, c) in zip(masses, boxes)) / mass
    inertia = np.zeros((3, 3))
    for m, (size, c) in zip(masses, boxes):
        a, b, h = size
        d = c - com
        inertia += np.diag([m * (b * b + h * h), m * (a * a + h * h), m * (a * a + b * b)]) / 12
        inertia += m * (d @ d * np.eye(3) - np.outer(d, d))  # parallel-axis theorem
    assert np.allclose(inertia, np.diag(np.diag(inertia)))
    return com, np.diag(inertia)


# ---------------------------------------------------------------------------------------------- the files

def test_asset_path_finds_files_and_refuses_missing_ones():
    assert asset_path("objects/cube/cube.urdf").is_file()
    with pytest.raises(InputError, match="asset objects/nope.urdf not found") as e:
        asset_path("objects/nope.urdf")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="relative"):
        asset_path("../pyproject.toml")


def test_twin_assets_variable_points_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "mine.urdf").write_text("<robot/>")
    monkeypatch.setenv("TWIN_ASSETS", str(tmp_path))
    assert asset_path("objects/mine.urdf") == tmp_path / "objects" / "mine.urdf"
    assert asset_path("objects/cube/cube.xml").parent.name == "cube"  # the repo's folder is still searched


@pytest.mark.parametrize("name", OBJECTS)
def test_urdf_and_mjcf_agree_and_match_the_shape(name):
    mass, free, n_colliders = OBJECTS[name]
    u, m = read_urdf(name), read_mjcf(name)
    assert u["mass"] == pytest.approx(mass) and m["mass"] == pytest.approx(mass)
    assert m["free"] == free
    for key in ("com", "inertia"):
        assert u[key] == pytest.approx(m[key], rel=1e-6, abs=1e-12), key
    assert len(u["collision"]) == len(m["collision"]) == n_colliders
    if n_colliders:
        assert u["friction"] == pytest.approx(m["friction"])
    else:
        assert u["friction"] is None and m["friction"] is None
    shape = u["collision"] or u["visual"]  # the zone's mass is that of its (visual-only) sheet
    for (su, cu), (sm, cm) in zip(sorted(shape, key=lambda b: tuple(b[1])),
                                  sorted(m["collision"] or m["visual"], key=lambda b: tuple(b[1]))):
        assert su == pytest.approx(sm) and cu == pytest.approx(cm)
    com, inertia = solid_boxes(shape, mass)
    assert u["com"] == pytest.approx(com, abs=1e-6)
    assert u["inertia"] == pytest.approx(inertia, rel=1e-6)
    bottom = min(c[2] - s[2] / 2 for s, c in shape)
    assert bottom == pytest.approx(0.0, abs=1e-12), "origin at the bottom centre"


# ---------------------------------------------------------------------------------------------- MuJoCo

def _mujoco_drop(parts, seconds=3.0):
    """Compile a floor plane plus the given (name, start position) objects, step `seconds`, return model, data.

    Part k's body is named "k/NAME"."""
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[1, 1, 0.1])
    for k, (name, pos) in enumerate(parts):
        frame = spec.worldbody.add_frame(pos=pos)
        frame.attach_body(mujoco.MjSpec.from_file(str(mjcf_path(name))).body(name), f"{k}/", "")
    model = spec.compile()
    data = mujoco.MjData(model)
    for _ in range(round(seconds / model.opt.timestep)):
        mujoco.mj_step(model, data)
    return model, data


@pytest.mark.parametrize("name", OBJECTS)
def test_mujoco_drop_comes_to_rest_on_its_bottom(name):
    mass, free, _ = OBJECTS[name]
    model, data = _mujoco_drop([(name, [0.05, -0.03, 0.03 if free else 0.0])])
    body = model.body(f"0/{name}").id
    assert model.body_mass.sum() == pytest.approx(mass)
    assert model.body_subtreemass[body] == pytest.approx(mass)
    assert model.body_inertia[body] == pytest.approx(read_mjcf(name)["inertia"], rel=1e-6)
    assert data.xpos[body][2] == pytest.approx(0.0, abs=1e-3), "bottom face on the plane"
    assert data.xpos[body][:2] == pytest.approx([0.05, -0.03], abs=1e-3)
    tilt = np.degrees(2 * np.arccos(min(1.0, abs(data.xquat[body][0]))))
    assert tilt < 0.5 and np.abs(data.qvel).max(initial=0.0) < 1e-3
    if not free:
        assert model.nv == 0 and data.ncon == 0
        assert all(model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0
                   for g in range(model.ngeom) if model.geom_bodyid[g] == body)


def test_mujoco_inertia_from_the_geoms_matches_the_files():
    """MuJoCo's own mass properties of the geoms (density = mass / volume) equal the explicit <inertial>."""
    for name, (mass, _, _) in OBJECTS.items():
        spec = mujoco.MjSpec.from_file(str(mjcf_path(name)))
        spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_TRUE
        geoms = spec.body(name).geoms
        volume = sum(8 * np.prod(g.size) for g in geoms)
        for g in geoms:
            g.density = mass / volume
        model = spec.compile()
        body = model.body(name).id
        m = read_mjcf(name)
        assert model.body_mass[body] == pytest.approx(mass, rel=1e-6)
        assert model.body_ipos[body] == pytest.approx(m["com"], abs=1e-7)
        R = np.zeros(9)
        mujoco.mju_quat2Mat(R, model.body_iquat[body])  # MuJoCo stores principal axes, sorted
        R = R.reshape(3, 3)
        assert R @ np.diag(model.body_inertia[body]) @ R.T == pytest.approx(np.diag(m["inertia"]), abs=1e-10)


def test_cube_dropped_into_the_bin_rests_on_its_floor_and_passes_through_the_zone():
    model, data = _mujoco_drop([("target_zone", [0.3, 0.0, 0.0]), ("bin", [0.0, 0.0, 0.0]),
                                ("cube", [0.01, 0.02, 0.07]), ("cube", [0.3, 0.0, 0.02])])
    z = {k: data.xpos[model.body(k).id][2] for k in ("1/bin", "2/cube", "3/cube")}
    assert z["2/cube"] == pytest.approx(0.004, abs=1e-3)  # on the bin's 4 mm floor
    assert z["3/cube"] == pytest.approx(0.0, abs=1e-3)  # through the zone: it is seen, not touched
    assert z["1/bin"] == pytest.approx(0.0, abs=1e-3)


# ---------------------------------------------------------------------------------------------- Newton

def _newton_builder(for_mujoco: bool = False):
    from twin_kit import quiet_warp

    quiet_warp()
    import newton

    b = newton.ModelBuilder()
    if for_mujoco:
        newton.solvers.SolverMuJoCo.register_custom_attributes(b)
    return b


@pytest.mark.parametrize("name", OBJECTS)
def test_newton_loads_urdf_and_mjcf_with_the_same_mass(name):
    import newton

    mass, free, n_colliders = OBJECTS[name]
    m = read_mjcf(name)
    for kind in ("urdf", "mjcf"):
        b = _newton_builder()
        if kind == "urdf":
            b.add_urdf(str(urdf_path(name)), floating=free)
        else:
            b.add_mjcf(str(mjcf_path(name)))
        assert b.body_count == 1
        assert b.body_mass[0] == pytest.approx(mass, rel=1e-6)
        assert np.asarray(b.body_com[0]) == pytest.approx(m["com"], abs=1e-6)
        assert np.diag(np.asarray(b.body_inertia[0]).reshape(3, 3)) == pytest.approx(m["inertia"], rel=1e-5)
        assert int(b.joint_type[0]) == int(newton.JointType.FREE if free else newton.JointType.FIXED)
        colliders = [k for k, f in enumerate(b.shape_flags) if f & int(newton.ShapeFlags.COLLIDE_SHAPES)]
        assert len(colliders) == n_colliders, kind
        if kind == "mjcf" and colliders:  # Newton reads MJCF friction; its URDF importer does not
            assert [b.shape_material_mu[k] for k in colliders] == pytest.approx([m["friction"][0]] * n_colliders)


@pytest.mark.parametrize("name", ["cube", "bin"])
def test_newton_drop_of_the_urdf_rests_on_its_bottom(name):
    import newton
    import warp as wp

    b = _newton_builder(for_mujoco=True)
    b.add_urdf(str(urdf_path(name)), floating=True, xform=wp.transform(wp.vec3(0.0, 0.0, 0.03), wp.quat_identity()))
    b.add_ground_plane()
    model = b.finalize(device="cpu")
    s0, s1, control = model.state(), model.state(), model.control()
    newton.eval_fk(model, model.joint_q, model.joint_qd, s0)
    solver = newton.solvers.SolverMuJoCo(model, use_mujoco_cpu=True)
    for _ in range(600):
        s0.clear_forces()
        solver.step(s0, s1, control, None, 0.002)
        s0, s1 = s1, s0
    q = s0.body_q.numpy()[0]  # x y z, quaternion xyzw
    assert q[2] == pytest.approx(0.0, abs=1e-3) and abs(q[6]) > np.cos(np.radians(0.25))
