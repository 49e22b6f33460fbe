"""A live Newton world in the browser viewer: the robot's links drawn as viser meshes, moved as physics runs.

A physics thread steps the world in real time (or as fast as the CPU allows, and the page says so), driving
the end effector along `twin sim`'s scripted path or toward a teleoperated target through differential IK.
Link meshes are sent once; each frame only their poses change. The viewer shows the scene in its own units,
so robot geometry and poses (metres) are divided by the scene's metres per unit.
All Warp work happens on the physics thread; GUI callbacks only queue commands for it.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from sim.physics.control import default_reach, scripted_goal
from twin_kit import qrot

KEYS = {"KeyI": "+X", "KeyK": "-X", "KeyJ": "+Y", "KeyL": "-Y", "KeyU": "+Z", "KeyO": "-Z",
        "KeyN": "Open gripper", "KeyM": "Close gripper"}
AXES = {"+X": (1, 0, 0), "-X": (-1, 0, 0), "+Y": (0, 1, 0), "-Y": (0, -1, 0), "+Z": (0, 0, 1), "-Z": (0, 0, -1)}
LINK_COLOR = (225, 228, 235)
OBJECT_COLOR = (240, 140, 40)


@dataclass
class LiveSimConfig:
    """How the live simulation runs (see the `--sim` options of `twin view` and `twin sim --teleop`)."""

    period: float = 4.0          # seconds per loop of the scripted end-effector path
    teleop: bool = False         # start in teleop mode (else the scripted motion runs)
    step: float = 0.02           # metres per teleop nudge
    lead: float = 0.10           # the teleop target never runs further than this ahead of the end effector
    record_fps: float = 0.0      # > 0: keep world-0 body poses at this rate (for the mp4 of a teleop session)
    max_record_frames: int = 30_000
    ui_hz: float = 20.0          # how often link poses are sent to the browser
    save_button: bool = False    # show "Stop & save" (ends a `twin sim --teleop` session)


@dataclass
class LinkMesh:
    """Collision geometry of one body, merged, in the body frame (metres)."""

    body: int                    # local body index inside a world; -1: fixed to the world (mesh in world frame)
    name: str
    vertices: np.ndarray         # (V, 3) float32
    faces: np.ndarray            # (F, 3) uint32


def _primitive(kind: str, scale: np.ndarray):
    """Vertices and triangles of a Newton primitive shape (Newton's own mesh generators, +Z axis)."""
    import newton

    G, z = newton.GeoType, newton.Axis.Z
    a, b, c = (float(x) for x in scale)
    kw = dict(compute_normals=False, compute_uvs=False, compute_inertia=False)
    if kind == G.BOX:
        m = newton.Mesh.create_box(a, b, c, duplicate_vertices=False, **kw)
    elif kind == G.SPHERE:
        m = newton.Mesh.create_sphere(a, num_latitudes=12, num_longitudes=16, **kw)
    elif kind == G.ELLIPSOID:
        m = newton.Mesh.create_ellipsoid(a, b, c, num_latitudes=12, num_longitudes=16, **kw)
    elif kind == G.CAPSULE:
        m = newton.Mesh.create_capsule(a, b, up_axis=z, segments=16, **kw)
    elif kind == G.CYLINDER:
        m = newton.Mesh.create_cylinder(a, b, up_axis=z, segments=16, **kw)
    elif kind == G.CONE:
        m = newton.Mesh.create_cone(a, b, up_axis=z, segments=16, **kw)
    else:
        return None
    return np.asarray(m.vertices, np.float64), np.asarray(m.indices, np.int64).reshape(-1, 3)


def link_meshes(world) -> list[LinkMesh]:
    """Every body of world 0 that has shapes, with its shapes merged into one mesh in the body frame."""
    import newton

    m = world.model
    kinds = m.shape_type.numpy()
    bodies = m.shape_body.numpy()
    scales = m.shape_scale.numpy().astype(np.float64)
    xforms = m.shape_transform.numpy().astype(np.float64)
    names = world.robot.body_names if world.robot is not None else []
    labels = list(m.shape_label) if getattr(m, "shape_label", None) is not None else [""] * m.shape_count
    worlds = m.shape_world.numpy() if getattr(m, "shape_world", None) is not None else np.zeros(m.shape_count)
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for s in range(m.shape_count):
        b = int(bodies[s])
        # body -1: shapes fixed to the world, e.g. a fixed robot base merged away; the scan itself is not drawn
        static = b < 0 and int(worlds[s]) == 0 and labels[s] != "scene"
        if not (static or 0 <= b < world.bodies_per_world):
            continue
        kind = newton.GeoType(int(kinds[s]))
        if kind in (newton.GeoType.MESH, newton.GeoType.CONVEX_MESH):
            src = m.shape_source[s]
            if src is None:
                continue
            v = np.asarray(src.vertices, np.float64) * scales[s]
            f = np.asarray(src.indices, np.int64).reshape(-1, 3)
        else:
            prim = _primitive(kind, scales[s])
            if prim is None:
                continue
            v, f = prim
        parts.setdefault(b, []).append((qrot(xforms[s, 3:], v) + xforms[s, :3], f))
    out = []
    for b in sorted(parts):
        base, vs, fs = 0, [], []
        for v, f in parts[b]:
            vs.append(v)
            fs.append(f + base)
            base += len(v)
        name = "base" if b < 0 else names[b] if b < len(names) else f"object_{b}"
        out.append(LinkMesh(b, name, np.concatenate(vs).astype(np.float32), np.concatenate(fs).astype(np.uint32)))
    return out


def _wxyz(q_xyzw: np.ndarray) -> np.ndarray:
    return np.asarray(q_xyzw, np.float64)[..., [3, 0, 1, 2]]


@dataclass
class Snapshot:
    """What the physics thread last published (read by the GUI and tests without touching Warp)."""

    sim_time: float = 0.0
    steps: int = 0
    body_q: np.ndarray | None = None     # (bodies_per_world, 7) world 0, metres, xyzw
    ee_pos: np.ndarray | None = None     # (3,) metres
    joint_q: np.ndarray | None = None    # (robot coords,) measured joint positions
    speed: float = 0.0                   # simulated seconds per wall second, over the last second
    goal: np.ndarray | None = None


@dataclass
class LiveSim:
    """A world stepped on its own thread and drawn into a viewer; commands come from the GUI or callers."""

    world: object
    cfg: LiveSimConfig = field(default_factory=LiveSimConfig)
    viewer: object | None = None
    handles: dict = field(default_factory=dict)
    gui: dict = field(default_factory=dict)
    recording: list = field(default_factory=list)     # world-0 body poses at cfg.record_fps
    finished: threading.Event = field(default_factory=threading.Event)  # "Stop & save" pressed

    def __post_init__(self):
        from sim.physics import control
        from sim.physics.env import SimEnv

        w = self.world
        self._env = SimEnv(w)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.playing = True
        self.mode = "teleop" if self.cfg.teleop else "scripted"
        p0, r0 = control.ee_pose(w)
        self.home_pos, self.home_quat = p0[0].copy(), r0[0].copy()
        self._quat = r0 if (w.robot.spec.arm_dofs or 0) >= 6 else None
        self.reach = default_reach(w.robot.spec.name)
        self.goal = self.home_pos.copy()
        self._t_motion = 0.0
        self.nudges = 0                  # teleop nudges received (GUI clicks and keys)
        self._pending: list[tuple[str, object]] = []
        self._next_rec = w.sim_time
        self.mpu = w.scene.metres_per_unit if w.scene is not None else 1.0
        self.snapshot = Snapshot()
        self._publish(0.0)
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ commands (any thread)

    def nudge(self, direction, distance: float | None = None) -> np.ndarray:
        """Move the teleop target by `distance` (default cfg.step) metres along `direction`; switches to
        teleop mode. The target stays within cfg.lead of the end effector and above the support surface."""
        d = np.asarray(direction, np.float64)
        d = d / max(np.linalg.norm(d), 1e-12) * (self.cfg.step if distance is None else distance)
        with self._lock:  # GUI callbacks run on a thread pool: switching mode and moving the goal is one step
            changed = self._enter_mode("teleop")
            ee = self.snapshot.ee_pos
            g = self.goal + d
            off = g - ee
            n = np.linalg.norm(off)
            if n > self.cfg.lead:
                g = ee + off * (self.cfg.lead / n)
            if self.world.scene is not None:
                g[2] = max(g[2], self.world.scene.support_height + 0.02)
            self.goal = g
            self.nudges += 1
        if changed:
            self._show_mode()
        return g.copy()

    def set_gripper(self, open_: bool) -> None:
        """Open (joint upper limits) or close (lower limits) the joints beyond the arm's, e.g. the fingers."""
        with self._lock:
            self._pending.append(("gripper", bool(open_)))

    def reset(self) -> None:
        """Put the robot back at its home pose and restart the scripted path."""
        with self._lock:
            self._pending.append(("reset", None))

    def set_playing(self, playing: bool) -> None:
        self.playing = bool(playing)
        b = self.gui.get("play")
        if b is not None:
            b.label = "Pause" if self.playing else "Play"

    def set_mode(self, mode: str) -> None:
        """'scripted' (loop `twin sim`'s path) or 'teleop' (hold / follow the nudged target)."""
        mode = mode.lower()
        if mode not in ("scripted", "teleop"):
            return
        with self._lock:
            changed = self._enter_mode(mode)
        if changed:
            self._show_mode()

    def _enter_mode(self, mode: str) -> bool:
        """Switch mode (caller holds the lock); teleop starts by holding the end effector where it is."""
        if mode == self.mode:
            return False
        if mode == "teleop":
            self.goal = self.snapshot.ee_pos.copy()
        self._t_motion = 0.0
        self.mode = mode
        return True

    def _show_mode(self) -> None:
        dd = self.gui.get("mode")
        if dd is not None:
            dd.value = self.mode.capitalize()  # its callback sees the mode already set: no-op
        if "goal" in self.handles:
            self.handles["goal"].visible = self.mode == "teleop"

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="twin-physics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - shown on the page and re-raised by the caller
            self.error = e
            self.finished.set()
            if "status" in self.gui:
                self.gui["status"].content = f"**Simulation stopped:** {type(e).__name__}: {e}"

    def _loop(self) -> None:
        from sim.physics import control
        from sim.physics.world import step

        w = self.world
        dt = w.cfg.frame_dt
        last_ui = last_status = 0.0
        anchor_wall, anchor_sim = time.monotonic(), w.sim_time
        win_wall, win_sim = anchor_wall, w.sim_time
        warned = False
        while not self._stop.is_set():
            self._apply_pending()
            now = time.monotonic()
            if not self.playing:
                anchor_wall, anchor_sim = now, w.sim_time
                win_wall, win_sim = now, w.sim_time
                self._publish(0.0)
                if now - last_status >= 0.5:
                    self._update_status()
                    last_status = now
                time.sleep(0.05)
                continue
            with self._lock:
                if self.mode == "scripted":
                    goal = scripted_goal(self.home_pos, self._t_motion, self.cfg.period, self.reach)
                    self.goal = goal
                else:
                    goal = self.goal.copy()
                self._t_motion += dt
            control.ik_targets(w, goal[None], self._quat)
            step(w)
            self._record()
            now = time.monotonic()
            if now - win_wall >= 1.0:
                speed = (w.sim_time - win_sim) / (now - win_wall)
                win_wall, win_sim = now, w.sim_time
                self.snapshot.speed = speed
                if speed < 0.9 and not warned and w.sim_time > 3.0:
                    from twin_kit import warn

                    warn(f"physics runs at {speed:.2f}x real time on this CPU (as fast as it can)")
                    warned = True
            self._publish(self.snapshot.speed)
            if now - last_ui >= 1.0 / self.cfg.ui_hz:
                self._draw_poses()
                last_ui = now
            if now - last_status >= 0.5:
                self._update_status()
                last_status = now
            ahead = (w.sim_time - anchor_sim) - (now - anchor_wall)
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -0.25:  # behind real time: run flat out, do not try to catch up later
                anchor_wall, anchor_sim = now, w.sim_time

    def _apply_pending(self) -> None:
        from sim.physics import control

        with self._lock:
            todo, self._pending = self._pending, []
        w = self.world
        for kind, arg in todo:
            if kind == "reset":
                self._env.reset()
                with self._lock:
                    self.goal = self.home_pos.copy()
                    self._t_motion = 0.0
                self._publish(self.snapshot.speed)
                self._draw_poses()
            elif kind == "gripper":
                arm = w.robot.spec.arm_dofs or w.robot.dof_count
                if arm >= w.robot.coord_count:
                    continue  # no joints beyond the arm's
                t = control.get_joint_targets(w)
                lim = np.asarray(w.robot.upper if arg else w.robot.lower)
                t[:, arm:] = lim[arm:]
                control.set_joint_targets(w, t)

    def _publish(self, speed: float) -> None:
        from sim.physics import control
        from sim.physics.world import body_poses

        w = self.world
        bq = body_poses(w)[0].astype(np.float64).copy()
        q = w.state.joint_q.numpy().reshape(w.n, w.coords_per_world)[0]
        s = w.robot_coord_start
        snap = Snapshot(sim_time=w.sim_time, steps=self.snapshot.steps + 1, body_q=bq,
                        ee_pos=control.ee_pose(w)[0][0].copy(), joint_q=q[s:s + w.robot.coord_count].astype(np.float64),
                        speed=speed, goal=self.goal.copy())
        with self._lock:
            self.snapshot = snap

    def _record(self) -> None:
        if self.cfg.record_fps <= 0 or self.world.sim_time + 1e-9 < self._next_rec:
            return
        self._next_rec += 1.0 / self.cfg.record_fps
        if len(self.recording) < self.cfg.max_record_frames:
            from sim.physics.world import body_poses

            self.recording.append(body_poses(self.world)[0].copy())

    # ------------------------------------------------------------------ drawing

    def attach(self, viewer) -> None:
        """Draw the robot's links into a running viewer (once) and add the Simulation and Teleop panels."""
        self.viewer = viewer
        server = viewer.server
        s = 1.0 / self.mpu
        h = self.handles
        h["robot"] = server.scene.add_frame("/robot", show_axes=False)
        h["links"] = []
        objects = set(self.world.object_bodies)
        for lm in link_meshes(self.world):
            color = OBJECT_COLOR if lm.body in objects else LINK_COLOR
            mh = server.scene.add_mesh_simple(f"/robot/{lm.name}", lm.vertices * s, lm.faces,
                                              color=color, flat_shading=False, cast_shadow=False,
                                              receive_shadow=False)
            h["links"].append((lm.body, mh))
        h["goal"] = server.scene.add_icosphere("/teleop_goal", radius=0.012 * s, color=(40, 200, 90),
                                               subdivisions=2, cast_shadow=False, receive_shadow=False,
                                               visible=self.mode == "teleop", position=self.goal * s)
        self._draw_poses()
        self._add_gui(server)
        self._frame_robot(viewer)

    def link_positions(self) -> np.ndarray:
        """(links, 3) positions of the drawn link handles, in viewer (scene) units."""
        return np.array([np.asarray(mh.position, np.float64) for _, mh in self.handles.get("links", [])])

    def _draw_poses(self) -> None:
        if self.viewer is None or not self.handles.get("links"):
            return
        snap = self.snapshot
        s = 1.0 / self.mpu
        with self.viewer.server.atomic():
            for b, mh in self.handles["links"]:
                if b < 0:
                    continue
                mh.position = snap.body_q[b, :3] * s
                mh.wxyz = _wxyz(snap.body_q[b, 3:])
            if self.mode == "teleop":
                self.handles["goal"].position = snap.goal * s

    def _update_status(self) -> None:
        st = self.gui.get("status")
        if st is None:
            return
        snap = self.snapshot
        if not self.playing:
            rate = "paused"
        elif snap.speed == 0.0:
            rate = "measuring speed…"
        elif snap.speed >= 0.9:
            rate = f"{snap.speed:.2f}x real time"
        else:
            rate = f"**{snap.speed:.2f}x real time** (as fast as this CPU allows)"
        ee = snap.ee_pos
        who = f"{self.world.robot.spec.name} ({self.world.cfg.solver})"
        st.content = (f"{who} · t = {snap.sim_time:.1f} s · {rate}  \n"
                      f"end effector ({ee[0]:+.3f}, {ee[1]:+.3f}, {ee[2]:+.3f}) m")

    def _add_gui(self, server) -> None:
        g = self.gui
        with server.gui.add_folder("Simulation", order=0.5):
            g["status"] = server.gui.add_markdown("starting…")
            g["play"] = server.gui.add_button("Pause" if self.playing else "Play")
            g["play"].on_click(lambda _: self.set_playing(not self.playing))
            g["reset"] = server.gui.add_button("Reset")
            g["reset"].on_click(lambda _: self.reset())
            g["mode"] = server.gui.add_dropdown("Motion", ("Scripted", "Teleop"), initial_value=self.mode.capitalize())
            g["mode"].on_update(lambda ev: self.set_mode(str(ev.target.value)))
            g["show_robot"] = server.gui.add_checkbox("Robot", True)
            g["show_robot"].on_update(lambda ev: setattr(self.handles["robot"], "visible", bool(ev.target.value)))
            if self.cfg.save_button:
                g["save"] = server.gui.add_button("Stop & save", color="red")
                g["save"].on_click(lambda _: self.finished.set())
        with server.gui.add_folder("Teleop", order=0.6):
            g["keys"] = server.gui.add_markdown(
                "Keys (page focused): **I/K** ±X, **J/L** ±Y, **U/O** ±Z, **N/M** open/close gripper. "
                "W/A/S/D/Q/E and the arrows still move the view.")
            g["step"] = server.gui.add_slider("Step (cm)", min=0.5, max=5.0, step=0.5,
                                              initial_value=round(self.cfg.step * 100, 1))
            g["step"].on_update(lambda ev: setattr(self.cfg, "step", float(ev.target.value) / 100))
            for label, axis in AXES.items():
                g[label] = server.gui.add_button(label)
                g[label].on_click(lambda _, a=axis: self.nudge(a))
            g["open"] = server.gui.add_button("Open gripper")
            g["open"].on_click(lambda _: self.set_gripper(True))
            g["close"] = server.gui.add_button("Close gripper")
            g["close"].on_click(lambda _: self.set_gripper(False))
            g["key_script"] = server.gui.add_html(keyboard_html())

    def _frame_robot(self, viewer) -> None:
        """Open new clients looking at the robot from the front-right, about 1.5 m away."""
        s = 1.0 / self.mpu
        base = np.asarray(self.world.base_xform[:3], np.float64)
        target = base + np.array([0.0, 0.0, 0.35])
        ic = viewer.server.initial_camera
        ic.position = tuple((target + np.array([1.3, -1.0, 0.6])) * s)
        ic.look_at = tuple(target * s)
        ic.up = (0.0, 0.0, 1.0)


def keyboard_html() -> str:
    """A hidden image whose onerror handler installs one document keydown listener (viser 1.1 has no key
    events): each teleop key clicks the GUI button with the matching label, so keys and clicks share one path.
    Keys typed into form fields are ignored; the listener is installed once per page. Viser's client merges
    GUI messages sent within 50 ms, so a held key (auto-repeat) nudges about 20 times a second."""
    table = ",".join(f"{k}:'{v}'" for k, v in KEYS.items())
    js = ("if(!window.twinTeleopKeys){window.twinTeleopKeys=1;var m={" + table + "};"
          "document.addEventListener('keydown',function(e){var t=e.target,l=m[e.code];"
          "if(!l||e.ctrlKey||e.metaKey||e.altKey||"
          "(t&&(t.tagName=='INPUT'||t.tagName=='TEXTAREA'||t.isContentEditable)))return;"
          "for(var b of document.querySelectorAll('button')){"
          "if(b.textContent.trim()==l){b.click();e.preventDefault();break;}}"
          "});}")
    return f'<img alt="" src="data:," style="display:none" onerror="{js}">'


# ---------------------------------------------------------------------- building


def build_live_world(scene: str, robot: str = "franka", scale: float | None = None, robot_pose=None,
                     solver: str | None = None, device: str = "cpu"):
    """One world of `robot` in `scene` with `solver` (None: WorldConfig's default), Warp's messages sent to
    stderr so that stdout keeps the URL line first."""
    from twin_kit import quiet_warp

    quiet_warp()  # module loads happen on the physics thread too
    from sim.physics.world import WorldConfig, build_world

    extra = {} if solver is None else {"solver": solver}
    with contextlib.redirect_stdout(sys.stderr):
        return build_world(WorldConfig(scene=str(scene), robot=robot, scale=scale, robot_pose=robot_pose,
                                       worlds=1, device=device, **extra))


def start_sim_viewer(bundle, opts, robot: str = "franka", scale: float | None = None, robot_pose=None,
                     cfg: LiveSimConfig | None = None, announce: bool = True, solver: str | None = None,
                     device: str = "cpu"):
    """Build the world, start the viewer (URL first on stdout when announced), draw the robot, start physics.

    Returns (viewer, live). Bad scenes (no collision mesh, arbitrary scale without `scale`) raise InputError
    before anything is served.
    """
    from scenes import check_port_free, start_viewer

    check_port_free(opts.host, opts.port)  # before the world build, which takes seconds
    world = build_live_world(bundle, robot, scale, robot_pose, solver, device)
    v = start_viewer(bundle, opts, announce=announce)
    live = LiveSim(world, cfg or LiveSimConfig())
    try:
        live.attach(v)
        with contextlib.redirect_stdout(sys.stderr):
            live.start()
    except BaseException:
        v.stop()
        raise
    return v, live


def run_view_sim(cfg, json_out: bool = False) -> int:
    """`twin view BUNDLE --sim`: the viewer plus the robot running `twin sim`'s scripted motion."""
    from scenes import ViewerOptions
    from twin_kit import emit_json, info

    opts = ViewerOptions(host=cfg.host, port=cfg.port, max_gaussians=cfg.max_gaussians, max_points=cfg.max_points,
                         max_frustums=cfg.max_frustums, thumbnails=cfg.thumbnails)
    v, live = start_sim_viewer(cfg.bundle, opts, robot=cfg.robot, scale=cfg.scale, solver=cfg.solver)
    info(f"serving {v.bundle.root} with a live {cfg.robot} ({len(live.handles['links'])} links, solver "
         f"{live.world.cfg.solver}); Ctrl-C to stop")
    t0 = time.monotonic()
    try:
        while (cfg.seconds is None or time.monotonic() - t0 < cfg.seconds) and live.error is None:
            time.sleep(0.2)
    finally:
        live.stop()  # physics first: it draws into the server
        v.stop()
    if live.error is not None:
        raise live.error
    if json_out:
        snap = live.snapshot
        emit_json({"url": v.url, "robot": cfg.robot, "sim_time": snap.sim_time, "speed": snap.speed})
    return 0
