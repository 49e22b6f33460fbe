"""Build a Newton world: the scan as static triangle mesh, a registered robot on its support, N replicas.

`build_world(cfg)` returns a `World` holding the finalized model, solver, double-buffered states, control and
the per-world index layout that the controllers, sensors and the batched environment use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from sim.physics.robots import RobotLayout, RobotSpec, get_robot, mjcf_source, urdf_text
from sim.physics.scene_mesh import SceneMesh, load_scene
from twin_kit import InputError, opt, tmul

SOLVERS = ("auto", "mujoco_cpu", "mujoco_warp", "mujoco_c", "xpbd", "featherstone")
NOSLIP_ITERATIONS = 4  # grasp_contacts on mujoco_cpu: without it a small gripper's grasp creeps open (measured:
                       # 5 of 16 SO-101 grasps dropped their cube within 14 s of holding, none with 4 iterations)
SCENE_COLOR = (0.55, 0.55, 0.55)  # the scan mesh where no splat covers it
DEFAULT_SOLVER = {"cpu": "mujoco_cpu", "cuda": "mujoco_warp"}  # measured: benches/sim.py, see resolve_solver


@dataclass
class BoxObject:
    """A free-body task object made of boxes (a cube, a bin of five plates, a target-zone sheet).

    `half` and `pos` alone give one box centred on the body origin (the original form). `parts` instead lists
    (half extents, centre) pairs in the body frame, e.g. an asset whose origin is the centre of its bottom face.
    Mass is spread uniformly over the boxes. `collide=False` makes a visual-only object that nothing touches;
    on the MuJoCo solvers it is gravity compensated, so it stays where a reset puts it (Newton's other solvers
    let it fall). `friction` is (sliding, torsional, rolling); None keeps the builder's default material; a
    torsional coefficient makes MuJoCo's contacts of the object condim 4, so a cube held between two small
    jaw pads does not spin freely about the line between them.
    """

    half: tuple[float, float, float] = (0.025, 0.025, 0.025)
    pos: tuple[float, float, float] = (0.0, 0.0, 0.5)
    mass: float = 0.1
    parts: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = ()
    yaw: float = 0.0
    friction: tuple[float, float, float] | None = None
    color: tuple[float, float, float] | None = None
    opacity: float | None = None
    collide: bool = True
    name: str = "object"

    def boxes(self) -> tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...]:
        """(half extents, centre in the body frame) of every box."""
        return self.parts or ((tuple(self.half), (0.0, 0.0, 0.0)),)


@dataclass
class WorldConfig:
    """Everything that defines a batch of simulated worlds."""

    scene: str | None = opt(None, "scene bundle directory or mesh file (GLB/OBJ/PLY/STL/USD); None = floor only")
    robot: str | None = opt("franka", "robot name from the registry (None = no robot)")
    scale: float | None = opt(None, "metres per scene unit (required when the scene's scale is arbitrary)")
    robot_pose: tuple[float, float, float, float] | None = opt(
        None, "robot base x y z yaw (m, m, m, rad); default: on the support surface at its centre")
    worlds: int = opt(1, "number of independent replicated worlds")
    device: str = opt("cpu", "Warp device: cpu or cuda:N")
    solver: str = opt("auto", "physics solver: auto (mujoco_cpu on the CPU unless the scan is too detailed for "
                      "it, mujoco_warp on CUDA: see resolve_solver); mujoco_cpu "
                      "(MuJoCo's C core, N worlds in one batch, the scan as convex pieces); mujoco_warp (MuJoCo "
                      "Warp kernels, N worlds, Newton's mesh contacts); mujoco_c (Newton's own C path, one world, "
                      "convex-hull contacts); xpbd and featherstone (diverge with the Franka here: kept for free "
                      "bodies)", choices=SOLVERS)
    threads: int = opt(1, "threads stepping the worlds of solver mujoco_cpu (0 = all cores)")
    frame_dt: float = opt(0.01, "seconds per environment step (control period)")
    substeps: int = opt(2, "physics steps per environment step")
    iterations: int = opt(4, "solver iterations (XPBD)")
    check_collisions: bool = opt(True, "refuse robot poses that penetrate the scan")
    up_axis: str = opt("auto", "up axis of a plain mesh file: auto, y or z")
    visuals: bool = opt(True, "give the robot its visual meshes (what viewers and sensors draw; physics collides "
                              "with the collision shapes either way)")
    objects: list[BoxObject] = field(default_factory=list)
    grasp_contacts: bool = opt(False, "MuJoCo solvers: elliptic friction cones with impratio 10 (and on "
                                      "mujoco_cpu a no-slip pass), which hold a grasped object without the slow "
                                      "slip of soft contacts")
    support_plane: bool = opt(False, "add an invisible collision plane at the scan's support height: the table or "
                                     "floor continues beyond the scan's edges and through its holes")


@dataclass
class World:
    """A finalized batch of worlds and everything needed to step and read it."""

    cfg: WorldConfig
    model: object
    solver: object
    state: object
    next_state: object
    control: object
    pipeline: object | None
    contacts: object | None
    scene: SceneMesh | None
    robot: RobotLayout | None
    base_xform: np.ndarray            # (7,) robot base position + quaternion xyzw (world frame, every world)
    bodies_per_world: int
    coords_per_world: int
    dofs_per_world: int
    robot_coord_start: int            # first actuated coordinate of the robot inside a world
    robot_dof_start: int
    object_bodies: list[int]          # local body index of each task object
    default_q: np.ndarray             # (coords_per_world,) initial joint coordinates of one world
    home_body_q: np.ndarray           # (bodies, 7) initial body poses of all worlds (for resets)
    home_targets: np.ndarray          # initial joint position targets of all worlds (flat, per coordinate)
    sim_time: float = 0.0

    @property
    def n(self) -> int:
        return self.cfg.worlds

    @property
    def device(self):
        return self.model.device


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion xyzw (Warp's order) of a rotation by `yaw` about +Z."""
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def _new_builder(mujoco: bool):
    import newton

    b = newton.ModelBuilder()
    if mujoco:
        newton.solvers.SolverMuJoCo.register_custom_attributes(b)
    return b


def _robot_builder(spec: RobotSpec, base_pos, yaw: float, mujoco: bool = False, visuals: bool = True):
    """A ModelBuilder holding one robot with PD position drives at its home pose.

    For the MuJoCo solvers the robot's links get gravity compensation (as a real arm's controller does),
    so joint position targets are tracked without sag. `visuals`: also the visual meshes, as visual-only
    shapes that renderers draw instead of the collision shapes (see sim.physics.visuals); physics is the same.
    """
    import newton
    import warp as wp

    b = _new_builder(mujoco)
    xf = wp.transform(wp.vec3(*base_pos), wp.quat(*yaw_quat(yaw)))
    if spec.source == "aloha":
        b.add_mjcf(mjcf_source(spec), xform=xf, floating=False, hide_visuals=not visuals,
                   enable_self_collisions=False)
    else:
        b.add_urdf(urdf_text(spec), xform=xf, floating=spec.floating, hide_visuals=True,
                   enable_self_collisions=False, collapse_fixed_joints=True)
    if visuals:
        from sim.physics.visuals import add_robot_visuals

        add_robot_visuals(b, spec, np.array([*base_pos, *yaw_quat(yaw)]))
    for i, mass in enumerate(b.body_mass):  # a massless link left over would be static for XPBD
        if mass <= 0.0:
            b.body_mass[i], b.body_inv_mass[i] = 0.01, 100.0
            b.body_inertia[i] = wp.mat33(*(np.eye(3, dtype=np.float32) * 1e-5).ravel())
            b.body_inv_inertia[i] = wp.mat33(*(np.eye(3, dtype=np.float32) * 1e5).ravel())
    start_c = 7 if spec.floating else 0
    start_d = 6 if spec.floating else 0
    if mujoco and not spec.floating:
        attr = b.custom_attributes["mujoco:gravcomp"]
        attr.values = {**(attr.values or {}), **{i: 1.0 for i in range(b.body_count)}}
    nq = b.joint_coord_count - start_c
    q0 = np.zeros(nq)
    if spec.default_q:
        k = min(nq, len(spec.default_q))
        q0[:k] = spec.default_q[:k]
    lo = np.asarray(b.joint_limit_lower[start_d:], dtype=np.float64)
    hi = np.asarray(b.joint_limit_upper[start_d:], dtype=np.float64)
    q0 = np.clip(q0, lo, hi)
    b.joint_q[start_c:] = q0.tolist()
    b.joint_target_q[start_c:] = q0.tolist()
    ke, kd = spec.gains
    for i in range(start_d, b.joint_dof_count):
        b.joint_target_ke[i] = ke
        b.joint_target_kd[i] = kd
        b.joint_target_mode[i] = int(newton.JointTargetMode.POSITION)
        b.joint_armature[i] = max(b.joint_armature[i], 0.01)
    return b, start_c, start_d


def _layout(spec: RobotSpec, b, start_d: int) -> RobotLayout:
    from sim.physics.robots import fixed_link_offset

    names = [lbl.split("/")[-1] for lbl in b.body_label]
    text = urdf_text(spec) if spec.source == "erd" else None

    def find(link: str) -> tuple[int, np.ndarray]:
        offset = np.array([0, 0, 0, 0, 0, 0, 1.0])
        if text is not None:
            link, offset = fixed_link_offset(text, link)
        if link in names:
            return names.index(link), offset
        hits = [i for i, n in enumerate(names) if n.endswith(link)]
        if hits:
            return hits[0], offset
        if text is not None:
            return -1, offset  # merged into the world with the fixed base
        raise InputError(f"robot {spec.name!r}: link {link!r} not in the model (links: {', '.join(names)})")

    ee, ee_off = find(spec.ee_link)
    cam, cam_off = find(spec.camera_link)
    return RobotLayout(spec=spec, body_names=names, ee_body=ee, camera_body=cam, ee_offset=ee_off,
                       camera_offset=cam_off, coord_count=b.joint_coord_count - (7 if spec.floating else 0),
                       dof_count=b.joint_dof_count - start_d,
                       lower=list(b.joint_limit_lower[start_d:]), upper=list(b.joint_limit_upper[start_d:]))


def _clear_pose(spec: RobotSpec, scene: SceneMesh):
    """A collision-free default base pose on the support surface (robot home pose, facing the centre)."""
    import newton

    from sim.physics.placement import find_clear_pose, robot_points

    rb, _, _ = _robot_builder(spec, (0.0, 0.0, spec.base_height), 0.0, visuals=False)
    m = rb.finalize(device="cpu")
    st = m.state()
    newton.eval_fk(m, m.joint_q, m.joint_qd, st)
    return find_clear_pose(scene, robot_points(rb, st.body_q.numpy()))


def _add_object(b, ob: BoxObject, mujoco: bool) -> int:
    """Add task object `ob` to builder `b` as a free body (label "object/<name>"); returns its body index."""
    import newton
    import warp as wp

    boxes = ob.boxes()
    vol = sum(8.0 * h[0] * h[1] * h[2] for h, _ in boxes)
    if not (ob.mass > 0 and vol > 0):
        raise InputError(f"object {ob.name!r}: mass and box sizes must be positive")
    body = b.add_body(xform=wp.transform(wp.vec3(*ob.pos), wp.quat(*yaw_quat(ob.yaw))), label=f"object/{ob.name}")
    kw = {}
    if ob.friction is not None:
        kw = dict(zip(("mu", "mu_torsional", "mu_rolling"), map(float, ob.friction)))
    cfg = newton.ModelBuilder.ShapeConfig(density=ob.mass / vol, has_shape_collision=ob.collide,
                                          has_particle_collision=ob.collide, **kw)
    extra = {}
    if mujoco and ob.collide and ob.friction is not None and ob.friction[1] > 0:
        extra = {"mujoco:condim": 4}  # MuJoCo applies torsional friction only with condim >= 4
    for i, (h, c) in enumerate(boxes):
        b.add_shape_box(body, xform=wp.transform(wp.vec3(*c), wp.quat_identity()), hx=h[0], hy=h[1], hz=h[2],
                        cfg=cfg, color=ob.color, opacity=ob.opacity, label=f"object/{ob.name}/{i}",
                        custom_attributes=extra or None)
    if mujoco and not ob.collide:
        attr = b.custom_attributes["mujoco:gravcomp"]
        attr.values = {**(attr.values or {}), body: 1.0}
    return body


def resolve_solver(name: str, device: str, scene: SceneMesh | None = None) -> str:
    """The solver `auto` stands for on `device` (and `scene`); other names pass through.

    Measured with `benches/sim.py --steps 20` (Franka in the bird scene, 1 thread, shared 2-core machine,
    5 runs): at 64 worlds mujoco_cpu ran 11,000-21,000 env-steps/s, 0.67-0.98x MuJoCo's own `rollout` on
    the same MJCF measured right after it, and 18-36x mujoco_warp on Warp's CPU device (580-660), where the
    launch cost of many small kernels dominates. MuJoCo collides with convex pieces only, so a scan is
    decomposed once into a few (`SceneMesh.convex_pieces`: CoACD, stored in the bundle; this call makes them
    when the scene lacks them): the bird capture's own 176k-triangle reconstruction became 8 pieces (~27 CPU-s,
    once), on which the Franka ran 8,500-15,600 env-steps/s at 64 worlds, 0.62-0.64x `rollout` on the same MJCF,
    and mujoco_warp on its triangles 4-7 (the bench's `scan_*` keys, 2 runs on a loaded machine). Only a scene
    of more than `AUTO_MAX_PIECES` separate convex parts goes to mujoco_warp and its triangle-mesh contacts. On
    CUDA, mujoco_warp runs thousands of worlds in parallel kernels.
    """
    if name != "auto":
        return name
    choice = DEFAULT_SOLVER["cuda" if str(device).startswith("cuda") else "cpu"]
    if choice == "mujoco_cpu" and scene is not None:
        from sim.physics.mujoco_batch import AUTO_MAX_PIECES

        if len(scene.convex_pieces()) > AUTO_MAX_PIECES:
            return "mujoco_warp"
    return choice


def make_solver(model, name: str, iterations: int = 4):
    """The Newton solver called `name`; MuJoCo's C core runs a single world only (Newton's limitation)."""
    import newton

    if name == "xpbd":
        return newton.solvers.SolverXPBD(model, iterations=iterations)
    if name == "featherstone":
        return newton.solvers.SolverFeatherstone(model)
    if name == "mujoco_warp":
        return newton.solvers.SolverMuJoCo(model, use_mujoco_contacts=False)
    if name == "mujoco_cpu":
        raise InputError("solver mujoco_cpu is made by build_world (it needs the scene and the step size)")
    if name == "mujoco_c":
        if model.world_count > 1:
            raise InputError("solver mujoco_c simulates one world only; use --worlds 1 or another solver")
        return newton.solvers.SolverMuJoCo(model, use_mujoco_cpu=True)
    raise InputError(f"unknown solver {name!r}; known: {', '.join(SOLVERS)}")


def add_static_shapes(builder, scene: SceneMesh | None, support_plane: bool) -> None:
    """The world's global (static) shapes: the scan mesh (and with `support_plane` an invisible collision plane at
    its support height), else a ground plane. The sensors' static cache builds the same shapes with this."""
    import newton

    if scene is None:
        builder.add_ground_plane()
        return
    mesh = newton.Mesh(scene.vertices, scene.faces.ravel(), compute_inertia=False, is_solid=False)
    # A fixed colour: Newton's palette picks one by shape index, which grows with the world count, so images of the
    # bare scan would otherwise depend on how many worlds run beside it.
    builder.add_shape_mesh(-1, mesh=mesh, label="scene", color=SCENE_COLOR)
    if support_plane:
        builder.add_ground_plane(height=float(scene.support_height), label="support_plane",
                                 cfg=newton.ModelBuilder.ShapeConfig(is_visible=False))


def build_world(cfg: WorldConfig) -> World:
    """Load the scene and robot, place the robot, replicate `cfg.worlds` times and finalize on `cfg.device`."""
    import newton

    if cfg.worlds < 1:
        raise InputError(f"--worlds must be at least 1, got {cfg.worlds}")
    if cfg.solver not in SOLVERS:
        raise InputError(f"unknown solver {cfg.solver!r}; known: {', '.join(SOLVERS)}")
    spec = get_robot(cfg.robot) if cfg.robot else None
    scene = load_scene(cfg.scene, cfg.scale, cfg.up_axis) if cfg.scene else None
    cfg = replace(cfg, solver=resolve_solver(cfg.solver, cfg.device, scene))

    if cfg.robot_pose is not None:
        if len(cfg.robot_pose) != 4:
            raise InputError("--robot-pose takes four numbers: x y z yaw")
        x, y, z, yaw = map(float, cfg.robot_pose)
    elif scene is not None:
        (x, y), z, yaw = scene.support_center, scene.support_height, 0.0
        if spec is not None and cfg.check_collisions:
            pose = _clear_pose(spec, scene)
            if pose is None:
                raise InputError(f"no free spot for robot {spec.name!r} on the scene's support surface; "
                                 f"pass --robot-pose x y z yaw")
            x, y, z, yaw = pose
    else:
        x, y, z, yaw = 0.0, 0.0, 0.0, 0.0
    base_pos = (x, y, z + (spec.base_height if spec else 0.0))

    mujoco = cfg.solver.startswith("mujoco")
    one = _new_builder(mujoco)
    layout, start_c, start_d = None, 0, 0
    if spec is not None:
        rb, start_c, start_d = _robot_builder(spec, base_pos, yaw, mujoco, cfg.visuals)
        layout = _layout(spec, rb, start_d)
        one.add_builder(rb)
    objects = [_add_object(one, ob, mujoco) for ob in cfg.objects]

    builder = _new_builder(mujoco)
    builder.replicate(one, cfg.worlds)
    if mujoco and cfg.grasp_contacts:
        builder.custom_attributes["mujoco:cone"].values = {0: 1}                     # mjCONE_ELLIPTIC
        builder.custom_attributes["mujoco:impratio"].values = dict.fromkeys(range(cfg.worlds), 10.0)
    add_static_shapes(builder, scene, cfg.support_plane)
    model = builder.finalize(device=cfg.device)

    state, next_state, control = model.state(), model.state(), model.control()
    newton.eval_fk(model, model.joint_q, model.joint_qd, state)
    bodies_per_world = one.body_count
    if spec is not None and scene is not None and cfg.check_collisions:
        from sim.physics.placement import check_clear

        check_clear(scene, one, state.body_q.numpy()[:bodies_per_world], spec.name, base_pos)

    solver = None
    if model.joint_count == 0:
        pass  # static scene only
    elif cfg.solver == "mujoco_cpu":
        from sim.physics.mujoco_batch import build_batch, push_state

        solver = build_batch(model, cfg.worlds, scene.vertices if scene is not None else None,
                             scene.faces if scene is not None else None, cfg.frame_dt / cfg.substeps, cfg.threads,
                             pieces=scene.convex_pieces() if scene is not None else None,
                             options={"noslip_iterations": NOSLIP_ITERATIONS} if cfg.grasp_contacts else None)
        push_state(solver, state)
    else:
        solver = make_solver(model, cfg.solver, cfg.iterations)
    pipeline = contacts = None
    if cfg.solver not in ("mujoco_c", "mujoco_cpu") and solver is not None:
        pipeline = newton.CollisionPipeline(model)
        contacts = pipeline.contacts()
    q, r = (base_pos, yaw_quat(yaw))
    return World(cfg=cfg, model=model, solver=solver, state=state, next_state=next_state, control=control,
                 pipeline=pipeline, contacts=contacts, scene=scene, robot=layout,
                 base_xform=np.array([*q, *r], dtype=np.float64), bodies_per_world=bodies_per_world,
                 coords_per_world=one.joint_coord_count, dofs_per_world=one.joint_dof_count,
                 robot_coord_start=start_c, robot_dof_start=start_d, object_bodies=objects,
                 default_q=np.asarray(one.joint_q, dtype=np.float32), home_body_q=state.body_q.numpy().copy(),
                 home_targets=control.joint_target_q.numpy().copy())


def step(world: World, frames: int = 1) -> None:
    """Advance every world by `frames` environment steps (each `cfg.substeps` physics steps)."""
    dt = world.cfg.frame_dt / world.cfg.substeps
    if world.solver is None:
        world.sim_time += frames * world.cfg.frame_dt
        return
    if world.cfg.solver == "mujoco_cpu":
        from sim.physics.mujoco_batch import step_batch

        for _ in range(frames):
            step_batch(world.solver, world.state, world.control, world.cfg.substeps)
            world.sim_time += world.cfg.frame_dt
        return
    for _ in range(frames):
        if world.pipeline is not None:  # contacts once per environment step, reused by its substeps
            world.pipeline.collide(world.state, world.contacts)
        for _ in range(world.cfg.substeps):
            world.state.clear_forces()
            world.solver.step(world.state, world.next_state, world.control, world.contacts, dt)
            world.state, world.next_state = world.next_state, world.state
        world.sim_time += world.cfg.frame_dt


def sync_joint_coordinates(world: World) -> None:
    """Make state.joint_q/qd match body poses (maximal-coordinate solvers such as XPBD only move bodies)."""
    import newton

    if world.cfg.solver in ("xpbd",):
        newton.eval_ik(world.model, world.state, world.state.joint_q, world.state.joint_qd)


def body_poses(world: World, state=None) -> np.ndarray:
    """(worlds, bodies_per_world, 7) body transforms (position + quaternion xyzw) of every world, in the world's
    current state or in `state` (a copy of it, e.g. a frame being rendered while physics goes on)."""
    state = world.state if state is None else state
    return state.body_q.numpy().reshape(world.n, world.bodies_per_world, 7)


def frame_poses(world: World, body: int, offset: np.ndarray, state=None) -> np.ndarray:
    """(worlds, 7) world pose of a frame rigidly attached to local `body` (-1: the robot base) at `offset`."""
    if body >= 0:
        bq = body_poses(world, state)[:, body].astype(np.float64)
    else:
        bq = np.broadcast_to(world.base_xform, (world.n, 7)).astype(np.float64)
    return tmul(bq, np.broadcast_to(np.asarray(offset, dtype=np.float64), bq.shape))
