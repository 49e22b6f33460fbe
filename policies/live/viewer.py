"""`twin view BUNDLE --policy RUN --task T`: a trained policy playing its task live in the browser viewer.

The robot's links and the task objects (sim's link meshes of the task's world) are sent once, under a frame per
body; a drawing thread then moves the frames to each new `PolicySnapshot` (at most `ui_hz` times a second), shows
the frames the policy saw (restyled when the style says so) in the GUI panel beside the 3D view, and the episode's
status: seed, style, time, speed, and its outcome when it ends. Play/Pause, Reset (the next seed) and the style
dropdown (vanilla and each held-out style family, as `twin eval --styles vanilla,held_out` plays them) only queue
commands to the session; nothing here touches Warp or the policy. The viewer shows the scene in its own units, so
poses (metres) are divided by the scene's metres per unit.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policies.live.session import PlayConfig, PolicySession, PolicySnapshot
from policies.replay.viewer import display_image
from twin_kit import info, qrot

GOAL_COLOR = (40, 200, 90)


def _wxyz(q_xyzw: np.ndarray) -> np.ndarray:
    return np.asarray(q_xyzw, np.float64)[..., [3, 0, 1, 2]]


def outcome(snap: PolicySnapshot) -> str:
    """The episode's outcome as the page shows it."""
    if snap.success:
        return "**Succeeded**"
    return "**Failed** (time limit)" if snap.done else "running…"


@dataclass
class PolicyView:
    """Draws a `PolicySession` into a running scenes viewer (see the module doc)."""

    session: PolicySession
    viewer: object
    title: str = ""               # the panel's first line (policy, run, task, robot)
    ui_hz: float = 20.0
    handles: dict = field(default_factory=dict)
    gui: dict = field(default_factory=dict)

    def __post_init__(self):
        scene = self.session.rollout.env.world.scene
        self.mpu = scene.metres_per_unit if scene is not None else 1.0
        self._latest: PolicySnapshot | None = None
        self._style_shown = ""              # the style of the last snapshot drawn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def attach(self) -> None:
        """Send the bodies' meshes and the goal, add the Policy and Policy cameras panels, frame the robot, and
        start drawing."""
        from sim import link_meshes

        server = self.viewer.server
        s = 1.0 / self.mpu
        h = self.handles
        h["root"] = server.scene.add_frame("/policy", show_axes=False)
        h["bodies"] = []
        frames: dict[int, object] = {}
        for lm in link_meshes(self.session.rollout.env.world):
            body = lm.name.split("/")[0]
            if lm.body not in frames:
                frames[lm.body] = server.scene.add_frame(f"/policy/{body}", show_axes=False)
                h["bodies"].append((lm.body, frames[lm.body]))
            server.scene.add_mesh_simple(f"/policy/{lm.name}", lm.vertices * s, lm.faces, color=lm.color,
                                         flat_shading=False, cast_shadow=False, receive_shadow=False)
        snap = self.session.snapshot
        h["goal"] = server.scene.add_icosphere("/policy_goal", radius=0.012 * s, color=GOAL_COLOR, subdivisions=2,
                                               cast_shadow=False, receive_shadow=False)
        self._add_gui(server, snap)
        self._draw(snap, images=True)
        self._frame_robot()
        self.session.subscribe(self._on_snapshot)
        self._thread = threading.Thread(target=self._run, name="twin-policy-draw", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop drawing (the session keeps running until its own stop)."""
        self.session.unsubscribe(self._on_snapshot)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def body_positions(self) -> np.ndarray:
        """(bodies, 3) positions of the drawn body frames, in viewer (scene) units."""
        return np.array([np.asarray(fh.position, np.float64) for _, fh in self.handles.get("bodies", [])])

    # ------------------------------------------------------------------ GUI (callbacks queue commands)

    def _add_gui(self, server, snap: PolicySnapshot) -> None:
        g, se = self.gui, self.session
        with server.gui.add_folder("Policy", order=0.5):
            g["title"] = server.gui.add_markdown(self.title)
            g["status"] = server.gui.add_markdown(self._status(snap))
            g["outcome"] = server.gui.add_markdown(outcome(snap))
            g["play"] = server.gui.add_button("Pause" if se.playing else "Play")
            g["play"].on_click(lambda _: self._toggle_play())
            g["reset"] = server.gui.add_button("Reset", hint="the next seed's episode")
            g["reset"].on_click(lambda _: se.next_episode())
            g["style"] = server.gui.add_dropdown("Style", tuple(se.styles), initial_value=snap.style,
                                                 hint="vanilla: the capture's appearance; a family: its held-out "
                                                      "styles, restyling the frames the policy sees")
            g["style"].on_update(lambda _: se.set_style(str(g["style"].value)))
        g["images"] = {}
        with server.gui.add_folder("Policy cameras", order=0.6):
            for cam, img in snap.images.items():
                g["images"][cam] = server.gui.add_image(display_image(img), label=cam, format="png")

    def _toggle_play(self) -> None:
        self.session.set_playing(not self.session.playing)
        self.gui["play"].label = "Pause" if self.session.playing else "Play"

    def _status(self, snap: PolicySnapshot) -> str:
        err = self.session.error
        if err is not None:
            return f"**Stopped:** {type(err).__name__}: {err}"
        if not snap.playing:
            rate = "paused"
        elif snap.done or snap.speed == 0.0:
            rate = "…"
        elif snap.speed >= 0.9:
            rate = f"{snap.speed:.2f}x real time"
        else:
            rate = f"**{snap.speed:.2f}x real time** (as fast as this CPU allows)"
        style = snap.style if snap.style == snap.style_id else f"{snap.style} ({snap.style_id})"
        return (f"Episode {snap.episodes} · seed {snap.seed} · style {style}  \n"
                f"t = {snap.t:.1f} s · frame {snap.frames} · {rate}")

    # ------------------------------------------------------------------ drawing thread

    def _on_snapshot(self, snap: PolicySnapshot) -> None:
        """Physics thread: keep the newest snapshot for the drawing thread."""
        self._latest = snap

    def _run(self) -> None:
        """Every 1/ui_hz seconds: draw the newest snapshot if it is new (camera images when the policy saw a new
        frame); the status line at most twice a second."""
        drawn, seen, last_status = None, None, 0.0
        while not self._stop.wait(1.0 / self.ui_hz):
            snap = self._latest
            if snap is None:
                continue
            if snap is not drawn:
                frame = (snap.episodes, snap.frames)
                self._draw(snap, images=frame != seen)
                drawn, seen = snap, frame
            now = time.monotonic()
            if now - last_status >= 0.5 or self.session.error is not None:
                self._show(self.gui["status"], self._status(snap))
                last_status = now

    @staticmethod
    def _show(handle, text: str) -> None:
        if handle.content != text:
            handle.content = text

    def _draw(self, snap: PolicySnapshot, images: bool) -> None:
        s = 1.0 / self.mpu
        with self.viewer.server.atomic():
            for b, fh in self.handles["bodies"]:
                if b >= 0:
                    fh.position = snap.body_q[b, :3] * s
                    fh.wxyz = _wxyz(snap.body_q[b, 3:])
            self.handles["goal"].position = snap.goal * s
        if images:
            for cam, handle in self.gui["images"].items():
                if cam in snap.images:
                    handle.image = display_image(snap.images[cam])
        g = self.gui
        self._show(g["outcome"], outcome(snap))
        if snap.style != self._style_shown:     # the session changed style: show it (a pick not yet applied
            self._style_shown = snap.style      # is left alone, or the dropdown would undo it)
            if g["style"].value != snap.style:
                g["style"].value = snap.style   # its callback asks for the style already playing: no-op
        label = "Pause" if snap.playing else "Play"
        if g["play"].label != label:
            g["play"].label = label

    def _frame_robot(self) -> None:
        """Open new clients looking at the robot's workspace from its front-right."""
        x, y, z, yaw = self.session.rollout.env.base
        q = np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])
        target = np.array([x, y, z]) + qrot(q, np.array([0.35, 0.0, 0.35]))
        ic = self.viewer.server.initial_camera
        ic.position = tuple((target + qrot(q, np.array([1.3, -1.0, 0.6]))) / self.mpu)
        ic.look_at = tuple(target / self.mpu)
        ic.up = (0.0, 0.0, 1.0)


# ---------------------------------------------------------------------- starting


def eval_config(cfg):
    """`twin eval`'s config for one world of `twin view --policy`'s options: every style of the dropdown."""
    from policies.evaluate.config import PolicyEvalConfig

    return PolicyEvalConfig(run=cfg.policy, bundle=str(cfg.bundle), task=cfg.task, robot=cfg.robot, scale=cfg.scale,
                            episodes=1, worlds=1, styles="vanilla,held_out", seed=0, max_videos=0, threads=1)


def start_policy_viewer(cfg, play: PlayConfig | None = None, announce: bool = True):
    """Check the policy, task and scene as `twin eval` does, build the world, start the viewer (URL first on stdout
    when announced), draw, and start the session. `cfg`: `twin view`'s options (bundle, policy, task, robot,
    scale, episode = the first seed, host, port, display budgets). Returns (viewer, policy view); the session is
    `view.session`. Bad input raises InputError before anything is served."""
    from policies.evaluate.run import check_eval
    from policies.live.session import build_session
    from scenes import ViewerOptions, check_port_free, start_viewer
    from twin_kit import quiet_warp

    ecfg = eval_config(cfg)
    spec = check_eval(ecfg)
    ecfg = dataclasses.replace(ecfg, robot=spec["robot"])
    check_port_free(cfg.host, cfg.port)        # before the world build, which takes seconds
    quiet_warp()
    session = build_session(ecfg, spec, play or PlayConfig(seed=cfg.episode))
    opts = ViewerOptions(host=cfg.host, port=cfg.port, max_gaussians=cfg.max_gaussians, max_points=cfg.max_points,
                         max_frustums=cfg.max_frustums, thumbnails=cfg.thumbnails)
    v = start_viewer(cfg.bundle, opts, announce=announce)
    policy = spec["policy"]
    title = f"**{policy.name}** policy `{Path(cfg.policy).name}` · **{cfg.task}** with {spec['robot']}"
    view = PolicyView(session, v, title)
    try:
        view.attach()
        with contextlib.redirect_stdout(sys.stderr):
            session.start()
    except BaseException:
        view.stop()
        session.stop()
        v.stop()
        raise
    return v, view


def stop_policy_viewer(v, view: PolicyView) -> None:
    """Stop drawing, then the session, then the server (viser's farewell on stderr, not before the JSON)."""
    view.stop()
    view.session.stop()
    with contextlib.redirect_stdout(sys.stderr):
        v.stop()


def run_policy_view(cfg, json_out: bool = False) -> int:
    """`twin view BUNDLE --policy RUN --task T`: serve the live policy until Ctrl-C or `cfg.seconds`."""
    from twin_kit import emit_json

    v, view = start_policy_viewer(cfg)
    session = view.session
    info(f"serving {v.bundle.root} with the policy of {cfg.policy} playing {cfg.task} from seed {cfg.episode} "
         f"(styles: {', '.join(session.styles)}); Ctrl-C to stop")
    t0 = time.monotonic()
    try:
        while (cfg.seconds is None or time.monotonic() - t0 < cfg.seconds) and session.error is None:
            time.sleep(0.2)
    finally:
        stop_policy_viewer(v, view)
    if session.error is not None:
        raise session.error
    if json_out:
        snap = session.snapshot
        emit_json({"url": v.url, "policy": str(cfg.policy), "task": cfg.task,
                   "robot": session.rollout.env.profile.name, "seed": snap.seed, "style": snap.style,
                   "episodes": snap.episodes, "ended": len(session.results),
                   "successes": sum(r.success for r in session.results), "t": round(snap.t, 3)})
    return 0
