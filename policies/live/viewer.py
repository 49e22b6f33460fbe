"""`twin view BUNDLE --policy RUN --task T`: a trained policy playing its task live in the browser viewer.

The robot's links and the task objects (sim's link meshes of the task's world) are sent once, under a frame per
body; a drawing thread then moves the frames to each new `PolicySnapshot` (at most `ui_hz` times a second), shows
the frames the policy saw (restyled when the style says so) in the GUI panel beside the 3D view, and the episode's
status: seed, style, time, speed, and its outcome when it ends. Play/Pause, Reset (the next seed) and the style
dropdown (vanilla and each held-out style family, as `twin eval --styles vanilla,held_out` plays them) only queue
commands to the session; nothing here touches Warp or the policy. The viewer shows the scene in its own units, so
poses (metres) are divided by the scene's metres per unit. Sending the bodies, the drawing thread, starting and
stopping are sim's live viewer's (`add_bodies`, `SnapshotDrawer`, `start_view`, `serve_view`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policies.live.session import PlayConfig, PolicySession, PolicySnapshot
from policies.replay.viewer import display_image
from sim import (
    SnapshotDrawer,
    add_bodies,
    add_goal,
    draw_bodies,
    look_from,
    serve_view,
    speed_text,
    start_view,
    stop_view,
)
from twin_kit import info, qrot


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
        self._style_shown = ""              # the style of the last snapshot drawn
        self._seen = None                   # (episode, policy frame) whose camera images are shown
        self._drawer = SnapshotDrawer(self.session, self.ui_hz, self._draw_new, self._update_status,
                                      "twin-policy-draw")

    # ------------------------------------------------------------------ lifecycle

    def attach(self) -> None:
        """Send the bodies' meshes and the goal, add the Policy and Policy cameras panels, frame the robot, and
        start drawing."""
        server = self.viewer.server
        s = 1.0 / self.mpu
        h = self.handles
        h["root"] = server.scene.add_frame("/policy", show_axes=False)
        h["bodies"] = add_bodies(server, self.session.rollout.env.world, "/policy", s)
        snap = self.session.snapshot
        h["goal"] = add_goal(server, "/policy_goal", s)
        self._add_gui(server, snap)
        self._draw(snap, images=True)
        self._frame_robot()
        self._drawer.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop drawing (the session keeps running until its own stop)."""
        self._drawer.stop(timeout)

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
        rate = speed_text(snap.playing, 0.0 if snap.done else snap.speed, idle="…")
        style = snap.style if snap.style == snap.style_id else f"{snap.style} ({snap.style_id})"
        return (f"Episode {snap.episodes} · seed {snap.seed} · style {style}  \n"
                f"t = {snap.t:.1f} s · frame {snap.frames} · {rate}")

    # ------------------------------------------------------------------ drawing thread (`SnapshotDrawer`)

    def _draw_new(self, snap: PolicySnapshot) -> None:
        """A new snapshot: draw it, with the camera images when the policy saw a new frame."""
        frame = (snap.episodes, snap.frames)
        self._draw(snap, images=frame != self._seen)
        self._seen = frame

    def _update_status(self, snap: PolicySnapshot) -> None:
        self._show(self.gui["status"], self._status(snap))

    @staticmethod
    def _show(handle, text: str) -> None:
        if handle.content != text:
            handle.content = text

    def _draw(self, snap: PolicySnapshot, images: bool) -> None:
        s = 1.0 / self.mpu
        with self.viewer.server.atomic():
            draw_bodies(self.handles["bodies"], snap.body_q, s)
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
        look_from(self.viewer, target + qrot(q, np.array([1.3, -1.0, 0.6])), target, 1.0 / self.mpu)


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
    from scenes import check_port_free, start_viewer
    from twin_kit import quiet_warp

    ecfg = eval_config(cfg)
    spec = check_eval(ecfg)
    ecfg = dataclasses.replace(ecfg, robot=spec["robot"])
    check_port_free(cfg.host, cfg.port)        # before the world build, which takes seconds
    quiet_warp()
    session = build_session(ecfg, spec, play or PlayConfig(seed=cfg.episode))
    v = start_viewer(cfg.bundle, cfg.viewer_options(), announce=announce)
    policy = spec["policy"]
    title = f"**{policy.name}** policy `{Path(cfg.policy).name}` · **{cfg.task}** with {spec['robot']}"
    view = PolicyView(session, v, title)
    start_view(v, view, session)
    return v, view


def stop_policy_viewer(v, view: PolicyView) -> None:
    """Stop drawing, then the session, then the server (viser's farewell on stderr, not before the JSON)."""
    stop_view(v, view, view.session)


def run_policy_view(cfg, json_out: bool = False) -> int:
    """`twin view BUNDLE --policy RUN --task T`: serve the live policy until Ctrl-C or `cfg.seconds`."""
    from twin_kit import emit_json

    v, view = start_policy_viewer(cfg)
    session = view.session
    info(f"serving {v.bundle.root} with the policy of {cfg.policy} playing {cfg.task} from seed {cfg.episode} "
         f"(styles: {', '.join(session.styles)}); Ctrl-C to stop")
    serve_view(v, view, cfg.seconds, session)
    if json_out:
        snap = session.snapshot
        emit_json({"url": v.url, "policy": str(cfg.policy), "task": cfg.task,
                   "robot": session.rollout.env.profile.name, "seed": snap.seed, "style": snap.style,
                   "episodes": snap.episodes, "ended": len(session.results),
                   "successes": sum(r.success for r in session.results), "t": round(snap.t, 3)})
    return 0
