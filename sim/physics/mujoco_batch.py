"""Solver "mujoco_cpu": every world of a Newton model stepped by MuJoCo's C core, in one batch.

Newton builds the world (robot, scene, replicas) and converts one world to MuJoCo (`SolverMuJoCo` with
`use_mujoco_cpu=True`, multi-point contacts on); the scan's triangle mesh is replaced by convex pieces, since
MuJoCo collides with a mesh's convex hull only: the scene's own (`SceneMesh.convex_pieces`: convex parts kept,
CoACD for the rest, stored in the bundle) or, without them, a prism under every non-convex triangle.
`mujoco.batch.Batch` keeps one MjData per world and steps them all in C (`threads` sets its pool). After each
environment step joint coordinates (Newton's conventions, float32) and body poses / COM twists (from MuJoCo's
own kinematics) are written into Newton's State, so controllers, sensors and the environment read it as with
any other solver. Writes to `state.joint_q/qd` made between steps (resets, user edits) are detected and pushed
into the MjData of the worlds they touch.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from twin_kit import InputError, qconj, qrot, tinv, tmul

PRISM_DEPTH = 0.02      # m: depth of the solid under each scene triangle that is not part of a convex piece
SCENE_LABEL = "scene"  # label of the scan's shape in the Newton model (sim.world.build_world)
MAX_PRISMS = 20000      # triangles turned into prisms before the scene is refused (compile time, broadphase)
FLAT_TOL = 0.001        # m: a piece's near-horizontal top that varies less than this is made exactly flat
AUTO_MAX_PIECES = 2000  # solver "auto" on the CPU takes mujoco_cpu up to this many pieces, else mujoco_warp


# ---------------------------------------------------------------- scene as convex pieces

def scene_piece_count(vertices: np.ndarray, faces: np.ndarray) -> int:
    """How many convex pieces `scene_pieces` makes of a mesh (its cost in MuJoCo's collision detection)."""
    from spatial import convex_components

    hulls, loose = convex_components(vertices, faces)
    return len(hulls) + len(loose)


def scene_pieces(vertices: np.ndarray, faces: np.ndarray, depth: float = PRISM_DEPTH) -> list[np.ndarray]:
    """Convex pieces (vertex arrays) whose union is the scene mesh's surface, for MuJoCo's convex collider.

    Convex connected components (a box desk, a hull) are one piece each; every other triangle becomes a
    prism reaching `depth` metres below its face (against its normal), thick enough not to be tunnelled."""
    from spatial import convex_components

    v = np.asarray(vertices, dtype=np.float64)
    hulls, loose = convex_components(v, faces)
    tri = v[loose]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1)
    keep = norm > 1e-12
    if keep.sum() > MAX_PRISMS:
        raise InputError(f"scene mesh has {keep.sum()} non-convex triangles; solver mujoco_cpu takes at most "
                         f"{MAX_PRISMS} (decimate the collision mesh or use --solver mujoco_warp)")
    tri, n = tri[keep], n[keep] / norm[keep, None]
    return hulls + list(np.concatenate([tri, tri - depth * n[:, None]], 1))


def _flat_top(p: np.ndarray, tol: float, max_tilt_deg: float = 1.0) -> np.ndarray:
    """`p` with the vertices of its near-horizontal top facets raised to one height, when they lie within `tol`.

    A scanned desk's top comes out of CoACD as dozens of facets tilted by hundredths of a degree; MuJoCo's
    multi-point contact clips against one facet, so a box resting there got one contact point and sank. Made
    exactly flat (moved up by at most `tol`), the top is one face and a resting box gets its four corners."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(p)
    except (QhullError, ValueError):
        return p
    up = hull.equations[:, 2] > np.cos(np.radians(max_tilt_deg))
    top = np.unique(hull.simplices[up])
    if len(top) < 3 or np.ptp(p[top, 2]) > tol:
        return p
    p = p.copy()
    p[top, 2] = p[top, 2].max()
    return p


def physical_pieces(pieces: list[np.ndarray], depth: float = PRISM_DEPTH, flat_tol: float = FLAT_TOL
                    ) -> list[np.ndarray]:
    """Convex pieces (metres) made ready for MuJoCo: near-flat tops made flat, thin pieces thickened downwards.

    A piece thinner than `depth` (mean vertical chord: volume over footprint area) is swept down to about that:
    CoACD turns an open scanned desk into a slab one remeshing voxel thick (millimetres), which a falling object
    crosses in one 5 ms step; sweeping a convex piece straight down keeps it convex and keeps its upper
    surface, so what lands from above meets the same surface but cannot tunnel through."""
    from scipy.spatial import ConvexHull, QhullError

    out = []
    for p in pieces:
        p = _flat_top(np.asarray(p, dtype=np.float64), flat_tol)
        try:
            chord = ConvexHull(p).volume / ConvexHull(p[:, :2]).volume
        except (QhullError, ValueError, ZeroDivisionError):
            chord = 0.0                        # flat or degenerate: no volume to speak of
        sweep = depth - chord
        out.append(np.concatenate([p, p - [0.0, 0.0, sweep]]) if sweep > 0 else p)
    return out


# ---------------------------------------------------------------- the MuJoCo model of one world

def _newton_conversion(model, multiccd: bool):
    """Newton's SolverMuJoCo (C backend) for the template world of `model`, and its MJCF text."""
    import newton

    with tempfile.TemporaryDirectory(prefix="twin-mjcf-") as tmp:
        path = os.path.join(tmp, "world.xml")
        conv = newton.solvers.SolverMuJoCo(model, use_mujoco_cpu=True, separate_worlds=True, save_to_mjcf=path,
                                           enable_multiccd=multiccd, kinematic_switchable_roots=False)
        with open(path) as fh:
            return conv, fh.read()


def world_mjcf(model, scene_vertices: np.ndarray | None, scene_faces: np.ndarray | None, timestep: float,
               multiccd: bool = True, pieces: list[np.ndarray] | None = None, options: dict | None = None):
    """(MJCF text, Newton's converter) of one world: Newton's conversion with the scan as convex pieces.

    `pieces`: the scan's convex pieces (hull vertices, metres), e.g. `SceneMesh.convex_pieces()`, made ready by
    `physical_pieces`; None makes them with `scene_pieces` (prisms). Only the scan's mesh geom (the Newton shape
    labelled `SCENE_LABEL`) is replaced, keeping its contact parameters; robot (a fixed base link lives on the
    world body too), objects, joints, actuators and options stay as Newton exports them, and the timestep is the
    physics step. `options`: further MuJoCo <option> attributes (e.g. noslip_iterations, which Newton does not
    export). The text is edited as XML, not re-serialised through MjSpec, which takes seconds for detailed
    robot meshes."""
    import xml.etree.ElementTree as ET

    import mujoco

    conv, xml = _newton_conversion(model, multiccd)
    root = ET.fromstring(xml)
    m0 = conv.mj_model
    shape_of = conv.mjc_geom_to_newton_shape.numpy()[0]
    names = {m0.geom(g).name for g in range(m0.ngeom) if shape_of[g] >= 0
             and model.shape_label[shape_of[g]] == SCENE_LABEL and m0.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH}
    world = root.find("worldbody")
    geoms = [g for g in world.findall("geom") if g.get("name") in names]
    if geoms and (scene_vertices is not None or pieces is not None):
        asset = root.find("asset")
        contact = {k: v for k, v in geoms[0].attrib.items() if k not in ("name", "mesh", "pos", "quat")}
        for g in geoms:
            world.remove(g)
            mesh = asset.find(f"mesh[@name='{g.get('mesh')}']")
            if mesh is not None:
                asset.remove(mesh)
        pieces = scene_pieces(scene_vertices, scene_faces) if pieces is None else physical_pieces(pieces)
        for i, piece in enumerate(pieces):
            name = f"scene_piece_{i}"
            ET.SubElement(asset, "mesh", name=name, vertex=" ".join(map(repr, piece.astype(float).ravel().tolist())))
            ET.SubElement(world, "geom", {**contact, "name": name, "mesh": name})
    option = root.find("option")
    if option is None:
        option = ET.SubElement(root, "option")
    option.set("timestep", repr(float(timestep)))
    for key, value in (options or {}).items():
        option.set(key, str(value))
    return ET.tostring(root, encoding="unicode"), conv


# ---------------------------------------------------------------- the batch and its State bridge

@dataclass
class MujocoBatch:
    """All worlds as rows of one `mujoco.batch.Batch`, with the index maps to and from Newton's State."""

    mjcf: str                       # the MJCF every world runs (what `mujoco.MjModel.from_xml_string` loads)
    mj_model: object
    batch: object
    n: int
    coords: int                     # Newton coordinates / dofs / bodies per world
    dofs: int
    bodies: int
    q_newton: np.ndarray            # scalar joints: Newton coordinate <- MuJoCo qpos index (minus q_ref)
    q_mj: np.ndarray
    q_ref: np.ndarray
    qd_newton: np.ndarray
    qd_mj: np.ndarray
    free: dict                      # free joints: Newton / MuJoCo starts, anchors and child COM per world
    act: dict                       # actuators by ctrl source: (actuator ids, source index, offset)
    body_newton: np.ndarray         # MuJoCo bodies that are Newton bodies, and which (local index)
    body_mj: np.ndarray
    body_root: np.ndarray           # their kinematic tree roots (for the COM velocities)
    fk_model: object | None = None  # the Newton model when some of its bodies have no MuJoCo body
    view: dict = field(default_factory=dict)   # live (n, ...) arrays of the batch, bound once
    seen_q: np.ndarray | None = None           # joint_q / joint_qd as last written to the State
    seen_qd: np.ndarray | None = None
    _np: dict = field(default_factory=dict)    # NumPy views of Warp arrays (CPU), by array identity

    @property
    def nthread(self) -> int:
        return self.batch.nthread

    def host(self, arr, cols: int) -> np.ndarray:
        """(n, cols) NumPy view of a Warp array (a copy off the CPU), cached while the array lives."""
        hit = self._np.get(id(arr))
        if hit is not None and hit[0] is arr:
            return hit[1]
        a = arr.numpy().reshape(self.n, cols)
        if arr.device.is_cpu:
            self._np[id(arr)] = (arr, a)
        return a


def build_batch(model, n: int, scene_vertices=None, scene_faces=None, timestep: float = 0.005,
                threads: int = 1, pieces: list[np.ndarray] | None = None, options: dict | None = None
                ) -> MujocoBatch:
    """Convert one world of `model` to MuJoCo and make a batch of `n` worlds stepping it on `threads` threads.

    `pieces`: the scan's convex pieces (see world_mjcf), else prisms are made from its triangles; `options`:
    extra MuJoCo <option> attributes."""
    import mujoco
    import newton
    from mujoco.batch import Batch

    xml, conv = world_mjcf(model, scene_vertices, scene_faces, timestep, pieces=pieces, options=options)
    m = mujoco.MjModel.from_xml_string(xml)
    if (m.nq, m.nv, m.nu, m.nbody) != (conv.mj_model.nq, conv.mj_model.nv, conv.mj_model.nu, conv.mj_model.nbody):
        raise RuntimeError("MJCF round trip changed the MuJoCo model's coordinates")
    jpw, bpw = model.joint_count // n, model.body_count // n
    cpw, dpw = model.joint_coord_count // n, model.joint_dof_count // n
    jt = model.joint_type.numpy()
    q_start, qd_start = model.joint_q_start.numpy(), model.joint_qd_start.numpy()
    dim = model.joint_dof_dim.numpy()
    mq, mqd = conv.mj_q_start.numpy(), conv.mj_qd_start.numpy()
    ref_attr = getattr(getattr(model, "mujoco", None), "dof_ref", None)
    dof_ref = ref_attr.numpy()[:dpw].astype(np.float64) if ref_attr is not None else np.zeros(dpw)
    JT = newton.JointType
    qn, qm, qr, dn, dm, free = [], [], [], [], [], []
    for j in range(jpw):
        if mq[j] < 0:
            continue
        t = int(jt[j])
        if t == int(JT.FREE):
            free.append(j)
        elif t == int(JT.BALL):
            raise InputError("solver mujoco_cpu does not map ball joints yet; use --solver mujoco_warp")
        else:
            k = int(dim[j, 0] + dim[j, 1])
            qn += range(q_start[j], q_start[j] + k)
            qm += range(mq[j], mq[j] + k)
            dn += range(qd_start[j], qd_start[j] + k)
            dm += range(mqd[j], mqd[j] + k)
            qr += list(dof_ref[qd_start[j]:qd_start[j] + k])
    fj = np.array(free, dtype=np.int64)
    world_j = fj[None] + jpw * np.arange(n)[:, None]                       # (n, F) global joint ids
    X_p, X_c = model.joint_X_p.numpy().astype(np.float64), model.joint_X_c.numpy().astype(np.float64)
    com = model.body_com.numpy().astype(np.float64)
    child = model.joint_child.numpy()
    free_maps = {"q": q_start[fj], "qd": qd_start[fj], "mq": mq[fj], "mqd": mqd[fj],
                 "X_p": X_p[world_j], "X_c": X_c[world_j], "com": com[child[world_j]]}

    act = {"pos": [], "vel": [], "direct": []}
    if m.nu:
        src = conv.mjc_actuator_ctrl_source.numpy()
        idx = conv.mjc_actuator_to_newton_idx.numpy()
        tq = conv.mjc_actuator_to_newton_target_q_idx.numpy()
        axis = conv.mjc_actuator_to_target_q_axis_idx.numpy()
        for a in range(m.nu):
            if axis[a] >= 0:
                raise InputError("solver mujoco_cpu does not map ball-joint actuators yet; use --solver mujoco_warp")
            if src[a] == 1:
                act["direct"].append((a, idx[a], 0.0))
            elif idx[a] >= 0 and tq[a] >= 0:
                act["pos"].append((a, tq[a], dof_ref[idx[a]]))
            elif idx[a] <= -2:
                act["vel"].append((a, -(idx[a] + 2), 0.0))
    act = {k: tuple(np.array(c) for c in zip(*v)) for k, v in act.items() if v}

    bmap = conv.mjc_body_to_newton.numpy()[0]
    mb_ids = np.nonzero(bmap >= 0)[0]
    batch = Batch(m, n, nthread=threads, persistent=True)
    mb = MujocoBatch(mjcf=xml, mj_model=m, batch=batch, n=n, coords=cpw, dofs=dpw, bodies=bpw,
                     q_newton=_index(qn), q_mj=_index(qm), q_ref=np.array(qr),
                     qd_newton=_index(dn), qd_mj=_index(dm), free=free_maps, act=act,
                     body_newton=_index(bmap[mb_ids]), body_mj=_index(mb_ids), body_root=m.body_rootid[mb_ids],
                     fk_model=None if set(bmap[mb_ids].tolist()) == set(range(bpw)) else model)
    for name in ("qpos", "qvel", "ctrl", "qfrc_applied", "qacc_warmstart", "act",
                 "xpos", "xquat", "xipos", "cvel", "subtree_com"):
        mb.view[name] = batch.bind(name)
    return mb


def _newton_to_mujoco(mb: MujocoBatch, jq: np.ndarray, jqd: np.ndarray, worlds: np.ndarray) -> None:
    """Write Newton joint coordinates (n, coords) / velocities (n, dofs) of `worlds` into their qpos/qvel."""
    qpos, qvel = mb.view["qpos"], mb.view["qvel"]
    sub_q = qpos[worlds]
    sub_q[:, mb.q_mj] = jq[worlds][:, mb.q_newton] + mb.q_ref
    qpos[worlds] = sub_q
    sub_qd = qvel[worlds]
    sub_qd[:, mb.qd_mj] = jqd[worlds][:, mb.qd_newton]
    qvel[worlds] = sub_qd
    fr = mb.free
    if len(fr["q"]):
        w = worlds[:, None, None]
        q = jq[w, fr["q"][None, :, None] + np.arange(7)].astype(np.float64)        # (k, F, 7)
        qd = jqd[w, fr["qd"][None, :, None] + np.arange(6)].astype(np.float64)
        X_p, X_c, com = fr["X_p"][worlds], fr["X_c"][worlds], fr["com"][worlds]
        pose = tmul(tmul(X_p, q), tinv(X_c))                                     # world pose of the body
        v_com, w_world = qrot(X_p[..., 3:], qd[..., :3]), qrot(X_p[..., 3:], qd[..., 3:])
        v_origin = v_com - _cross(w_world, qrot(pose[..., 3:], com))
        w_body = qrot(qconj(pose[..., 3:]), w_world)
        qpos[w, fr["mq"][None, :, None] + np.arange(7)] = np.concatenate(
            [pose[..., :3], pose[..., 6:7], pose[..., 3:6]], -1)                     # quaternion xyzw -> wxyz
        qvel[w, fr["mqd"][None, :, None] + np.arange(6)] = np.concatenate([v_origin, w_body], -1)


def _mujoco_to_newton(mb: MujocoBatch, jq: np.ndarray, jqd: np.ndarray) -> None:
    """Fill Newton joint coordinates (n, coords) and velocities (n, dofs) from every world's qpos/qvel."""
    qpos, qvel = mb.view["qpos"], mb.view["qvel"]
    jq[:, mb.q_newton] = qpos[:, mb.q_mj] - mb.q_ref
    jqd[:, mb.qd_newton] = qvel[:, mb.qd_mj]
    fr = mb.free
    if len(fr["q"]):
        p = qpos[:, fr["mq"][:, None] + np.arange(7)]                                  # (n, F, 7) wxyz
        pose = np.concatenate([p[..., :3], p[..., 4:7], p[..., 3:4]], -1)              # xyzw
        q = tmul(tmul(tinv(fr["X_p"]), pose), fr["X_c"])
        v = qvel[:, fr["mqd"][:, None] + np.arange(6)]                                 # origin v (world), w (body)
        w_world = qrot(pose[..., 3:], v[..., 3:])
        v_com = v[..., :3] + _cross(w_world, qrot(pose[..., 3:], fr["com"]))
        qp = qconj(fr["X_p"][..., 3:])
        jq[:, fr["q"][:, None] + np.arange(7)] = q
        jqd[:, fr["qd"][:, None] + np.arange(6)] = np.concatenate([qrot(qp, v_com), qrot(qp, w_world)], -1)


def _bodies_to_newton(mb: MujocoBatch, body_q: np.ndarray, body_qd: np.ndarray) -> None:
    """Body poses (n, bodies, 7) and COM twists (n, bodies, 6) from MuJoCo's kinematics at the new state."""
    v, b = mb.view, mb.body_mj
    body_q[:, mb.body_newton] = np.concatenate([v["xpos"][:, b], v["xquat"][:, b][..., _WXYZ_TO_XYZW]], -1)
    cvel = v["cvel"][:, b]                               # [angular; linear] at the subtree COM of the tree root
    w = cvel[..., :3]
    r = v["xipos"][:, b] - v["subtree_com"][:, mb.body_root]
    lin = cvel[..., 3:] + w[..., _YZX] * r[..., _ZXY] - w[..., _ZXY] * r[..., _YZX]   # v + w x r
    body_qd[:, mb.body_newton] = np.concatenate([lin, w], -1)


_WXYZ_TO_XYZW, _YZX, _ZXY = [1, 2, 3, 0], [1, 2, 0], [2, 0, 1]


def _index(idx) -> np.ndarray | slice:
    """A contiguous increasing index array as a slice (basic indexing: views, no gather), else the array."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) and (np.diff(idx) == 1).all():
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross over the last axis, without its per-call argument handling (this runs every step)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


def push_state(mb: MujocoBatch, state, worlds: np.ndarray | None = None) -> None:
    """Load Newton's joint state of `worlds` (all when None) into their MjData and clear their warm start."""
    import mujoco

    jq, jqd = mb.host(state.joint_q, mb.coords), mb.host(state.joint_qd, mb.dofs)
    worlds = np.arange(mb.n) if worlds is None else np.asarray(worlds, dtype=np.int64)
    _newton_to_mujoco(mb, jq, jqd, worlds)
    for name in ("qacc_warmstart", "act"):
        if mb.view[name].size:
            mb.view[name][worlds] = 0.0
    mb.batch.forward(worlds, stage=mujoco.mjtStage.mjSTAGE_VEL)   # derived fields of the new state
    mb.seen_q, mb.seen_qd = jq.copy(), jqd.copy()


def apply_control(mb: MujocoBatch, control) -> None:
    """MuJoCo ctrl (and scalar joint forces) of every world from Newton's Control, as SolverMuJoCo maps them."""
    ctrl = mb.view["ctrl"]
    if "pos" in mb.act:
        a, i, ref = mb.act["pos"]
        t = mb.host(control.joint_target_q, control.joint_target_q.shape[0] // mb.n)
        ctrl[:, a] = t[:, i] + ref
    if "vel" in mb.act:
        a, i, _ = mb.act["vel"]
        ctrl[:, a] = mb.host(control.joint_target_qd, mb.dofs)[:, i]
    direct = getattr(getattr(control, "mujoco", None), "ctrl", None)
    if "direct" in mb.act and direct is not None:
        a, i, _ = mb.act["direct"]
        ctrl[:, a] = mb.host(direct, direct.shape[0] // mb.n)[:, i]
    if control.joint_f is not None:
        mb.view["qfrc_applied"][:, mb.qd_mj] = mb.host(control.joint_f, mb.dofs)[:, mb.qd_newton]


def step_batch(mb: MujocoBatch, state, control, substeps: int) -> None:
    """One environment step of every world: take in State edits, step in C, write joints and bodies back."""
    import mujoco
    import warp as wp

    jq, jqd = mb.host(state.joint_q, mb.coords), mb.host(state.joint_qd, mb.dofs)
    changed = (jq != mb.seen_q).any(1) | (jqd != mb.seen_qd).any(1)
    if changed.any():                                  # a reset or a user edit since the last step
        push_state(mb, state, np.nonzero(changed)[0])
    apply_control(mb, control)
    mb.batch.step(nstep=substeps, stage=mujoco.mjtStage.mjSTAGE_VEL)
    bq = mb.host(state.body_q, mb.bodies * 7).reshape(mb.n, mb.bodies, 7)
    bqd = mb.host(state.body_qd, mb.bodies * 6).reshape(mb.n, mb.bodies, 6)
    _mujoco_to_newton(mb, jq, jqd)
    _bodies_to_newton(mb, bq, bqd)
    if not state.joint_q.device.is_cpu:                # CUDA: the NumPy arrays above are copies
        for arr, host in ((state.joint_q, jq), (state.joint_qd, jqd), (state.body_q, bq), (state.body_qd, bqd)):
            flat = host.ravel() if arr.dtype == wp.float32 else host.reshape(arr.shape[0], -1)
            wp.copy(arr, wp.array(flat, dtype=arr.dtype, device=arr.device))
    if mb.fk_model is not None:                        # Newton bodies MuJoCo merged away: forward kinematics
        import newton

        newton.eval_fk(mb.fk_model, state.joint_q, state.joint_qd, state)
    mb.seen_q, mb.seen_qd = jq.copy(), jqd.copy()
