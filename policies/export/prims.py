"""UsdPhysics prims written from a finalized Newton model: physics scene, friction materials, rigid-body mass,
collision and visual shapes (usd-core; metres, kilograms, seconds, Z up; quaternions xyzw on the Newton side).

Shapes keep the model's geometry exactly: boxes as `UsdGeom.Cube` (size 1, scaled to the box), meshes as
triangle `UsdGeom.Mesh` colliding as their convex hull (what MuJoCo and PhysX collide a mesh on a moving body
as), the support plane as `UsdGeom.Plane`. Friction goes on a `UsdShade.Material` with `PhysicsMaterialAPI`
(static = dynamic = Newton's mu) plus Newton's torsional and rolling coefficients, bound for purpose "physics".
"""
from __future__ import annotations

import numpy as np

IDENTITY = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])


def gf_quat(q_xyzw):
    """Gf.Quatf of a quaternion given as x y z w."""
    from pxr import Gf

    x, y, z, w = (float(v) for v in q_xyzw)
    return Gf.Quatf(w, Gf.Vec3f(x, y, z))


def set_pose(prim, pose, scale=None) -> None:
    """Give an Xformable prim the local pose (7: position + quaternion xyzw) and an optional scale."""
    from pxr import Gf, UsdGeom

    x = UsdGeom.Xformable(prim)
    x.ClearXformOpOrder()
    x.AddTranslateOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Vec3d(*(float(v) for v in pose[:3])))
    x.AddOrientOp().Set(gf_quat(pose[3:7]))
    if scale is not None:
        x.AddScaleOp().Set(Gf.Vec3f(*(float(v) for v in np.broadcast_to(scale, 3))))


def custom(prim, name: str, type_name: str, value):
    """Author a namespaced attribute of another engine's schema (newton:, mjc:, physx*:) by name."""
    from pxr import Sdf

    attr = prim.CreateAttribute(name, getattr(Sdf.ValueTypeNames, type_name), custom=False)
    attr.Set(value)
    return attr


def add_physics_scene(stage, path: str, timestep: float, mujoco: dict | None = None):
    """UsdPhysics.Scene: gravity 9.81 m/s^2 along -Z, the physics step rate, and MuJoCo options (mjc:option:*)
    for engines that read them (Newton's SolverMuJoCo does)."""
    from pxr import Gf, UsdPhysics

    scene = UsdPhysics.Scene.Define(stage, path)
    scene.CreateGravityDirectionAttr().Set(Gf.Vec3f(0.0, 0.0, -1.0))
    scene.CreateGravityMagnitudeAttr().Set(9.81)
    prim = scene.GetPrim()
    for api in ("NewtonSceneAPI", "PhysxSceneAPI"):      # applied by name: usd-core lacks their schema classes
        prim.AddAppliedSchema(api)
    rate = int(round(1.0 / timestep))
    custom(prim, "newton:timeStepsPerSecond", "Int", rate)
    custom(prim, "physxScene:timeStepsPerSecond", "UInt", rate)
    for key, (type_name, value) in (mujoco or {}).items():
        custom(prim, f"mjc:option:{key}", type_name, value)
    return scene


def principal_inertia(inertia: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(diagonal (3,), principal axes as quaternion xyzw) of a symmetric 3x3 inertia tensor."""
    from scipy.spatial.transform import Rotation

    vals, vecs = np.linalg.eigh(0.5 * (inertia + inertia.T))
    if np.linalg.det(vecs) < 0:
        vecs[:, 2] *= -1.0
    return np.maximum(vals, 0.0), Rotation.from_matrix(vecs).as_quat()


def set_mass(prim, mass: float, com, inertia: np.ndarray) -> None:
    """MassAPI with the body's mass (kg), centre of mass (body frame, m) and inertia about it (kg m^2)."""
    from pxr import Gf, UsdPhysics

    api = UsdPhysics.MassAPI.Apply(prim)
    api.CreateMassAttr().Set(float(mass))
    api.CreateCenterOfMassAttr().Set(Gf.Vec3f(*(float(v) for v in com)))
    diag, axes = principal_inertia(np.asarray(inertia, np.float64))
    api.CreateDiagonalInertiaAttr().Set(Gf.Vec3f(*(float(v) for v in diag)))
    api.CreatePrincipalAxesAttr().Set(gf_quat(axes))


def rigid_body(prim, mass: float, com, inertia, gravity_compensated: bool = False) -> None:
    """RigidBodyAPI + MassAPI; a gravity-compensated body (robot links on the MuJoCo solvers, as a real arm's
    controller does) gets mjc:gravcomp 1 and PhysX's disableGravity."""
    from pxr import UsdPhysics

    UsdPhysics.RigidBodyAPI.Apply(prim).CreateRigidBodyEnabledAttr().Set(True)
    set_mass(prim, mass, com, inertia)
    if gravity_compensated:
        custom(prim, "mjc:gravcomp", "Double", 1.0)
        prim.AddAppliedSchema("PhysxRigidBodyAPI")
        custom(prim, "physxRigidBody:disableGravity", "Bool", True)


class Materials:
    """Physics materials made once per distinct (mu, torsional, rolling, restitution), under one scope."""

    def __init__(self, stage, root: str):
        from pxr import UsdGeom

        UsdGeom.Scope.Define(stage, root)
        self.stage, self.root, self.made = stage, root, {}

    def bind(self, prim, mu: float, torsional: float, rolling: float, restitution: float = 0.0) -> None:
        from pxr import UsdPhysics, UsdShade

        key = tuple(round(float(v), 6) for v in (mu, torsional, rolling, restitution))
        mat = self.made.get(key)
        if mat is None:
            mat = UsdShade.Material.Define(self.stage, f"{self.root}/friction_{len(self.made)}")
            api = UsdPhysics.MaterialAPI.Apply(mat.GetPrim())
            mat.GetPrim().AddAppliedSchema("NewtonMaterialAPI")
            api.CreateStaticFrictionAttr().Set(key[0])
            api.CreateDynamicFrictionAttr().Set(key[0])
            api.CreateRestitutionAttr().Set(key[3])
            custom(mat.GetPrim(), "newton:torsionalFriction", "Float", key[1])
            custom(mat.GetPrim(), "newton:rollingFriction", "Float", key[2])
            self.made[key] = mat
        UsdShade.MaterialBindingAPI.Apply(prim).Bind(mat, UsdShade.Tokens.weakerThanDescendants, "physics")


def _vec3f_array(a: np.ndarray):
    from pxr import Vt

    return Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 3))


def define_mesh(stage, path: str, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None):
    """A triangle UsdGeom.Mesh (no subdivision), with a constant or per-vertex displayColor."""
    from pxr import UsdGeom, Vt

    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int32).reshape(-1, 3)
    m = UsdGeom.Mesh.Define(stage, path)
    m.CreatePointsAttr().Set(_vec3f_array(v))
    m.CreateFaceVertexCountsAttr().Set(Vt.IntArray.FromNumpy(np.full(len(f), 3, np.int32)))
    m.CreateFaceVertexIndicesAttr().Set(Vt.IntArray.FromNumpy(f.ravel()))
    m.CreateSubdivisionSchemeAttr().Set(UsdGeom.Tokens.none)
    m.CreateExtentAttr().Set(_vec3f_array(np.stack([v.min(axis=0), v.max(axis=0)])))
    if colors is not None:
        c = np.asarray(colors, np.float32).reshape(-1, 3)
        interp = UsdGeom.Tokens.vertex if len(c) == len(v) and len(v) > 1 else UsdGeom.Tokens.constant
        m.CreateDisplayColorPrimvar(interp).Set(_vec3f_array(c if interp == UsdGeom.Tokens.vertex else c[:1]))
    return m


def convex_collider(prim, approximation: str = "convexHull") -> None:
    """CollisionAPI on a mesh, colliding as its convex hull (the mesh's own hull for a convex piece)."""
    from pxr import UsdPhysics

    UsdPhysics.CollisionAPI.Apply(prim).CreateCollisionEnabledAttr().Set(True)
    UsdPhysics.MeshCollisionAPI.Apply(prim).CreateApproximationAttr().Set(approximation)


def _mesh_colors(src, color) -> np.ndarray | None:
    """Per-vertex sRGB of a Newton mesh whose colours live in a palette texture (sim's robot visuals), else
    its constant colour."""
    tex, uvs = getattr(src, "texture", None), getattr(src, "uvs", None)
    if isinstance(tex, np.ndarray) and tex.ndim == 3 and uvs is not None and len(uvs) == len(src.vertices):
        h, w = tex.shape[:2]
        uv = np.clip(np.asarray(uvs, np.float64), 0.0, 1.0)
        px = tex[np.clip(((1.0 - uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
        px = px[:, :3].astype(np.float32)
        return px / 255.0 if px.max() > 1.0 else px
    return None if color is None else np.asarray(color, np.float32)[None]


def add_model_shape(stage, path: str, model, s: int, pose, materials: Materials | None, collide: bool,
                    guide: bool, mujoco_condim: int | None = None):
    """Shape `s` of a Newton model as a prim at `path` with local pose `pose` (in its body's frame).

    `collide`: CollisionAPI (+ friction material), else a visual-only prim; `guide`: purpose "guide", so
    renderers draw the visual meshes (or the splats) while physics uses this shape."""
    import newton
    from pxr import UsdGeom, UsdPhysics

    gt = newton.GeoType
    t = int(model.shape_type.numpy()[s])
    scale = model.shape_scale.numpy()[s].astype(np.float64)
    color = model.shape_color.numpy()[s] if model.shape_color is not None else None
    if t == int(gt.BOX):
        g = UsdGeom.Cube.Define(stage, path)
        g.CreateSizeAttr().Set(1.0)
        set_pose(g.GetPrim(), pose, 2.0 * scale)
    elif t == int(gt.SPHERE):
        g = UsdGeom.Sphere.Define(stage, path)
        g.CreateRadiusAttr().Set(float(scale[0]))
        set_pose(g.GetPrim(), pose)
    elif t in (int(gt.CAPSULE), int(gt.CYLINDER)):        # Newton's capsules and cylinders lie along +Z
        g = (UsdGeom.Capsule if t == int(gt.CAPSULE) else UsdGeom.Cylinder).Define(stage, path)
        g.CreateRadiusAttr().Set(float(scale[0]))
        g.CreateHeightAttr().Set(float(2.0 * scale[1]))
        g.CreateAxisAttr().Set(UsdGeom.Tokens.z)
        set_pose(g.GetPrim(), pose)
    elif t in (int(gt.MESH), int(gt.CONVEX_MESH)):
        src = model.shape_source[s]
        v = np.asarray(src.vertices, np.float64) * scale
        g = define_mesh(stage, path, v, np.asarray(src.indices).reshape(-1, 3), None if collide else
                        _mesh_colors(src, color))
        set_pose(g.GetPrim(), pose)
    elif t == int(gt.PLANE):
        g = UsdGeom.Plane.Define(stage, path)
        g.CreateAxisAttr().Set(UsdGeom.Tokens.z)
        g.CreateWidthAttr().Set(100.0)
        g.CreateLengthAttr().Set(100.0)
        set_pose(g.GetPrim(), pose)
    else:
        raise NotImplementedError(f"Newton shape type {t} ({model.shape_label[s]}) has no USD writer")
    prim = g.GetPrim()
    if color is not None and t not in (int(gt.MESH), int(gt.CONVEX_MESH)):
        g.CreateDisplayColorAttr().Set(_vec3f_array(np.asarray(color)[None]))
    if guide:
        g.CreatePurposeAttr().Set(UsdGeom.Tokens.guide)
    if collide:
        if t in (int(gt.MESH), int(gt.CONVEX_MESH)):
            convex_collider(prim)
        else:
            UsdPhysics.CollisionAPI.Apply(prim).CreateCollisionEnabledAttr().Set(True)
        if materials is not None:
            mu = model.shape_material_mu.numpy()[s]
            tor = model.shape_material_mu_torsional.numpy()[s]
            roll = model.shape_material_mu_rolling.numpy()[s]
            rest = model.shape_material_restitution.numpy()[s]
            materials.bind(prim, mu, tor, roll, rest)
        if mujoco_condim is not None:
            custom(prim, "mjc:condim", "Int", int(mujoco_condim))
    return prim
