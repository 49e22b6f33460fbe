"""A live session drawn into the browser viewer: the robot's visual meshes moved by link pose, status, teleop GUI.

The link meshes (each link's visual meshes, one per colour, as the sensors trace them) are sent once under a
frame per link; then a drawing thread moves the frames to each new `Snapshot` the session publishes (at most
`ui_hz` times a second) and refreshes the status line. GUI callbacks (buttons, keys, the dropdown) only
queue commands to the session; nothing here touches Warp. The viewer shows the scene in its own units, so
geometry and poses (metres) are divided by the scene's metres per unit.

The pieces every robot drawn into the viewer uses (policies' live policy and episode replay too) are public:
`add_bodies` (the link meshes under a frame per body), `add_goal`, `set_pose` / `draw_bodies`, `look_from`,
`speed_text`, and `start_view` / `serve_view` / `stop_view` (attach, serve, stop in order).
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from sim.live.session import LiveSession, SessionConfig, Snapshot, build_live_world
from sim.live.threaded import SnapshotDrawer
from twin_kit import qrot

KEYS = {"KeyI": "+X", "KeyK": "-X", "KeyJ": "+Y", "KeyL": "-Y", "KeyU": "+Z", "KeyO": "-Z",
        "KeyN": "Open gripper", "KeyM": "Close gripper"}
AXES = {"+X": (1, 0, 0), "-X": (-1, 0, 0), "+Y": (0, 1, 0), "-Y": (0, -1, 0), "+Z": (0, 0, 1), "-Z": (0, 0, -1)}
LINK_COLOR = (225, 228, 235)    # links drawn from their collision shapes (no visual mesh)
OBJECT_COLOR = (240, 140, 40)
GOAL_COLOR = (40, 200, 90)      # the end-effector target, a task's goal


@dataclass
class ViewConfig:
    """How a session is drawn (the physics side is `SessionConfig`)."""

    ui_hz: float = 20.0          # how often link poses are sent to the browser
    save_button: bool = False    # show "Stop & save" (ends a `twin sim --teleop` session)


@dataclass
class LinkMesh:
    """One colour of what a body shows, merged, in the body frame (metres)."""

    body: int                    # local body index inside a world; -1: fixed to the world (mesh in world frame)
    name: str
    vertices: np.ndarray         # (V, 3) float32
    faces: np.ndarray            # (F, 3) uint32
    color: tuple[int, int, int] = LINK_COLOR  # sRGB bytes


def _primitive(kind, scale: np.ndarray):
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


def _shape_parts(m, s: int, kind, scale: np.ndarray, default_rgb) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """(vertices, faces, sRGB bytes) of shape `s` in its own frame: a visual mesh per colour, else one piece."""
    import newton

    from sim.physics.visuals import VISUAL_LABEL, mesh_parts

    if kind in (newton.GeoType.MESH, newton.GeoType.CONVEX_MESH):
        src = m.shape_source[s]
        if src is None:
            return []
        if str(m.shape_label[s]).startswith(VISUAL_LABEL + "/"):
            return [(p.vertices.astype(np.float64) * scale, p.faces.astype(np.int64),
                     tuple(int(round(c * 255)) for c in p.color)) for p in mesh_parts(src)]
        return [(np.asarray(src.vertices, np.float64) * scale, np.asarray(src.indices, np.int64).reshape(-1, 3),
                 default_rgb)]
    prim = _primitive(kind, scale)
    return [] if prim is None else [(*prim, default_rgb)]


def link_meshes(world) -> list[LinkMesh]:
    """What renderers see of world 0's bodies (its VISIBLE shapes: visual meshes, else colliders), merged per
    body and colour, in the body frame; shapes fixed to the world (a robot's base) are in the world frame."""
    import newton

    m = world.model
    flags = m.shape_flags.numpy()
    kinds = m.shape_type.numpy()
    bodies = m.shape_body.numpy()
    xforms = m.shape_transform.numpy().astype(np.float64)
    scales = m.shape_scale.numpy().astype(np.float64)
    names = world.robot.body_names if world.robot is not None else []
    labels = list(m.shape_label) if getattr(m, "shape_label", None) is not None else [""] * m.shape_count
    worlds = m.shape_world.numpy() if getattr(m, "shape_world", None) is not None else np.zeros(m.shape_count)
    objects = set(world.object_bodies)
    visible, site = int(newton.ShapeFlags.VISIBLE), int(newton.ShapeFlags.SITE)
    parts: dict[tuple[int, tuple], list[tuple[np.ndarray, np.ndarray]]] = {}
    for s in range(m.shape_count):
        b = int(bodies[s])
        # body -1: shapes fixed to the world, e.g. a fixed robot base merged away; the scan itself is not drawn
        static = b < 0 and int(worlds[s]) == 0 and labels[s] != "scene"
        if not (static or 0 <= b < world.bodies_per_world) or not flags[s] & visible or flags[s] & site:
            continue
        rgb = OBJECT_COLOR if b in objects else LINK_COLOR
        for v, f, color in _shape_parts(m, s, newton.GeoType(int(kinds[s])), scales[s], rgb):
            parts.setdefault((b, color), []).append((qrot(xforms[s, 3:], v) + xforms[s, :3], f))
    out, count = [], {}
    for (b, color), pieces in sorted(parts.items()):
        base, vs, fs = 0, [], []
        for v, f in pieces:
            vs.append(v)
            fs.append(f + base)
            base += len(v)
        name = "base" if b < 0 else names[b] if b < len(names) else f"object_{b}"
        count[name] = count.get(name, -1) + 1
        out.append(LinkMesh(b, f"{name}/{count[name]}", np.concatenate(vs).astype(np.float32),
                            np.concatenate(fs).astype(np.uint32), color))
    return out


def _wxyz(q_xyzw: np.ndarray) -> np.ndarray:
    return np.asarray(q_xyzw, np.float64)[..., [3, 0, 1, 2]]


# ---------------------------------------------------------------------- drawing a world's bodies


def add_bodies(server, world, root: str, s: float) -> list[tuple[int, object]]:
    """Send world 0's link meshes (`link_meshes`, times `s` scene units per metre) under a frame per body below
    the scene node `root`; returns the (body, frame) pairs, in the order sent, that `draw_bodies` moves."""
    frames: dict[int, object] = {}
    for lm in link_meshes(world):
        if lm.body not in frames:
            frames[lm.body] = server.scene.add_frame(f"{root}/{lm.name.split('/')[0]}", show_axes=False)
        server.scene.add_mesh_simple(f"{root}/{lm.name}", lm.vertices * s, lm.faces, color=lm.color,
                                     flat_shading=False, cast_shadow=False, receive_shadow=False)
    return list(frames.items())


def add_goal(server, name: str, s: float, **kw):
    """A target point: a small green sphere (1.2 cm) at scene node `name`; `kw`: viser's (visible, position)."""
    return server.scene.add_icosphere(name, radius=0.012 * s, color=GOAL_COLOR, subdivisions=2, cast_shadow=False,
                                      receive_shadow=False, **kw)


def set_pose(handle, pose: np.ndarray, s: float) -> None:
    """Put a scene node at `pose` (x, y, z metres, quaternion xyzw), shown `s` scene units per metre."""
    handle.position = pose[:3] * s
    handle.wxyz = _wxyz(pose[3:])


def draw_bodies(bodies: list[tuple[int, object]], body_q: np.ndarray, s: float) -> None:
    """Move the frames of `add_bodies` to `body_q` ((bodies, 7) world poses); those fixed to the world stay."""
    for b, fh in bodies:
        if b >= 0:
            set_pose(fh, body_q[b], s)


def look_from(viewer, eye: np.ndarray, target: np.ndarray, s: float) -> None:
    """Open new clients looking from `eye` at `target` (metres), +Z up."""
    ic = viewer.server.initial_camera
    ic.position = tuple(eye * s)
    ic.look_at = tuple(target * s)
    ic.up = (0.0, 0.0, 1.0)


def speed_text(playing: bool, speed: float, idle: str = "measuring speed…") -> str:
    """How fast a session runs, as a status line says it (`idle` while the speed is 0: not measured yet)."""
    if not playing:
        return "paused"
    if speed == 0.0:
        return idle
    if speed >= 0.9:
        return f"{speed:.2f}x real time"
    return f"**{speed:.2f}x real time** (as fast as this CPU allows)"


@dataclass
class LiveView:
    """Draws a `LiveSession` into a running scenes viewer: meshes once, then poses and status per snapshot."""

    session: LiveSession
    viewer: object
    cfg: ViewConfig = field(default_factory=ViewConfig)
    handles: dict = field(default_factory=dict)
    gui: dict = field(default_factory=dict)

    def __post_init__(self):
        self.mpu = self.session.world.scene.metres_per_unit if self.session.world.scene is not None else 1.0
        self._shown = ("", None)             # (mode, playing) the widgets last showed
        self._drawer = SnapshotDrawer(self.session, self.cfg.ui_hz, self._draw_poses, self._update_status,
                                      "twin-viewer-draw", tick=self._sync_widgets)

    # ------------------------------------------------------------------ lifecycle

    def attach(self) -> None:
        """Send the link meshes, add the Simulation and Teleop panels, frame the robot, start drawing."""
        server = self.viewer.server
        s = 1.0 / self.mpu
        h = self.handles
        h["robot"] = server.scene.add_frame("/robot", show_axes=False)
        h["links"] = add_bodies(server, self.session.world, "/robot", s)
        snap = self.session.snapshot
        h["goal"] = add_goal(server, "/teleop_goal", s, visible=snap.mode == "teleop", position=snap.goal * s)
        self._draw_poses(snap)
        self._add_gui(server)
        self._frame_robot()
        self._drawer.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop drawing (the session keeps running until its own stop)."""
        self._drawer.stop(timeout)

    def link_positions(self) -> np.ndarray:
        """(links, 3) positions of the drawn link frames, in viewer (scene) units."""
        return np.array([np.asarray(fh.position, np.float64) for _, fh in self.handles.get("links", [])])

    # ------------------------------------------------------------------ drawing thread (`SnapshotDrawer`)

    def _draw_poses(self, snap: Snapshot) -> None:
        if not self.handles.get("links"):
            return
        s = 1.0 / self.mpu
        with self.viewer.server.atomic():
            draw_bodies(self.handles["links"], snap.body_q, s)
            if snap.mode == "teleop":
                self.handles["goal"].position = snap.goal * s

    def _sync_widgets(self) -> None:
        """Show the session's mode and play state (changed by the GUI or by callers of the session)."""
        mode, playing = self.session.mode, self.session.playing
        if (mode, playing) == self._shown:
            return
        self._shown = (mode, playing)
        dd = self.gui.get("mode")
        if dd is not None and dd.value != mode.capitalize():
            dd.value = mode.capitalize()  # its callback sees the mode already set: no-op
        if "goal" in self.handles:
            self.handles["goal"].visible = mode == "teleop"
        b = self.gui.get("play")
        if b is not None:
            b.label = "Pause" if playing else "Play"

    def _update_status(self, snap: Snapshot) -> None:
        st = self.gui.get("status")
        if st is None:
            return
        err = self.session.error
        if err is not None:
            st.content = f"**Simulation stopped:** {type(err).__name__}: {err}"
            return
        ee = snap.ee_pos
        w = self.session.world
        rate = speed_text(snap.playing, snap.speed)
        st.content = (f"{w.robot.spec.name} ({w.cfg.solver}) · t = {snap.sim_time:.1f} s · {rate}  \n"
                      f"end effector ({ee[0]:+.3f}, {ee[1]:+.3f}, {ee[2]:+.3f}) m")

    # ------------------------------------------------------------------ GUI (callbacks queue commands)

    def _command(self, fn):
        """A GUI callback that runs `fn()` on the session, then shows the mode it leaves."""
        def cb(_):
            fn()
            self._sync_widgets()
        return cb

    def _add_gui(self, server) -> None:
        g, se = self.gui, self.session
        with server.gui.add_folder("Simulation", order=0.5):
            g["status"] = server.gui.add_markdown("starting…")
            g["play"] = server.gui.add_button("Pause" if se.playing else "Play")
            g["play"].on_click(self._command(lambda: se.set_playing(not se.playing)))
            g["reset"] = server.gui.add_button("Reset")
            g["reset"].on_click(self._command(se.reset))
            g["mode"] = server.gui.add_dropdown("Motion", ("Scripted", "Teleop"), initial_value=se.mode.capitalize())
            g["mode"].on_update(lambda ev: self._command(lambda: se.set_mode(str(g["mode"].value)))(ev))
            g["show_robot"] = server.gui.add_checkbox("Robot", True)
            g["show_robot"].on_update(lambda ev: setattr(self.handles["robot"], "visible", bool(ev.target.value)))
            if self.cfg.save_button:
                g["save"] = server.gui.add_button("Stop & save", color="red")
                g["save"].on_click(lambda _: se.finish())
        with server.gui.add_folder("Teleop", order=0.6):
            g["keys"] = server.gui.add_markdown(
                "Keys (page focused): **I/K** ±X, **J/L** ±Y, **U/O** ±Z, **N/M** open/close gripper. "
                "W/A/S/D/Q/E and the arrows still move the view.")
            g["step"] = server.gui.add_slider("Step (cm)", min=0.5, max=5.0, step=0.5,
                                              initial_value=round(se.cfg.step * 100, 1))
            for label, axis in AXES.items():
                g[label] = server.gui.add_button(label)
                g[label].on_click(self._command(lambda a=axis: se.nudge(a, float(g["step"].value) / 100)))
            g["open"] = server.gui.add_button("Open gripper")
            g["open"].on_click(self._command(lambda: se.set_gripper(True)))
            g["close"] = server.gui.add_button("Close gripper")
            g["close"].on_click(self._command(lambda: se.set_gripper(False)))
            g["key_script"] = server.gui.add_html(keyboard_html())
        self._shown = (se.mode, se.playing)

    def _frame_robot(self) -> None:
        """Open new clients looking at the robot from the front-right, about 1.5 m away."""
        base = np.asarray(self.session.world.base_xform[:3], np.float64)
        target = base + np.array([0.0, 0.0, 0.35])
        look_from(self.viewer, target + np.array([1.3, -1.0, 0.6]), target, 1.0 / self.mpu)


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


# ---------------------------------------------------------------------- starting


def start_view(v, view, session=None, attach: tuple = ()) -> None:
    """Draw into the running viewer `v` (`view.attach(*attach)`), then start `session` (its notes on stderr: stdout
    starts with the URL); on any failure stop what started, then the server, and re-raise."""
    try:
        view.attach(*attach)
        if session is not None:
            with contextlib.redirect_stdout(sys.stderr):
                session.start()
    except BaseException:
        stop_view(v, view, session)
        raise


def stop_view(v, view, session=None) -> None:
    """Stop drawing, then `session`, then the server (viser's farewell on stderr: stdout ends with the JSON)."""
    view.stop()
    if session is not None:
        session.stop()
    with contextlib.redirect_stdout(sys.stderr):
        v.stop()


def serve_view(v, view, seconds: float | None, session=None) -> None:
    """Serve until `seconds` have passed (None: until Ctrl-C) or `session` failed, then stop everything
    (`stop_view`); the session's error is raised again here."""
    t0 = time.monotonic()
    try:
        while (seconds is None or time.monotonic() - t0 < seconds) and (session is None or session.error is None):
            time.sleep(0.2)
    finally:
        stop_view(v, view, session)
    if session is not None and session.error is not None:
        raise session.error


def start_sim_viewer(bundle, opts, robot: str = "franka", scale: float | None = None, robot_pose=None,
                     cfg: SessionConfig | None = None, view: ViewConfig | None = None, announce: bool = True,
                     solver: str | None = None, device: str = "cpu"):
    """Build the world, start the viewer (URL first on stdout when announced), draw the robot, start physics.

    Returns (viewer, live view); the session is `live.session`. Bad scenes (no collision mesh, arbitrary scale
    without `scale`) raise InputError before anything is served.
    """
    from scenes import check_port_free, start_viewer

    check_port_free(opts.host, opts.port)  # before the world build, which takes seconds
    world = build_live_world(bundle, robot, scale, robot_pose, solver, device)
    v = start_viewer(bundle, opts, announce=announce)
    session = LiveSession(world, cfg or SessionConfig())
    live = LiveView(session, v, view or ViewConfig())
    start_view(v, live, session)
    return v, live


def stop_sim_viewer(v, live) -> None:
    """Stop drawing, then physics, then the server."""
    stop_view(v, live, live.session)


def run_view_sim(cfg, json_out: bool = False) -> int:
    """`twin view BUNDLE --sim`: the viewer plus the robot running `twin sim`'s scripted motion."""
    from twin_kit import emit_json, info

    v, live = start_sim_viewer(cfg.bundle, cfg.viewer_options(), robot=cfg.robot, scale=cfg.scale, solver=cfg.solver)
    session = live.session
    info(f"serving {v.bundle.root} with a live {cfg.robot} ({len(live.handles['links'])} links, solver "
         f"{session.world.cfg.solver}); Ctrl-C to stop")
    serve_view(v, live, cfg.seconds, session)
    if json_out:
        snap = session.snapshot
        emit_json({"url": v.url, "robot": cfg.robot, "sim_time": snap.sim_time, "speed": snap.speed})
    return 0
