"""`twin view BUNDLE --dataset datasets/NAME`: a recorded episode replayed over the scene in the browser viewer.

The robot's link meshes are sent once, under a robot frame that sits at the episode's recorded base; showing a
frame moves the link frames to their forward-kinematics poses (`ReplayEpisode.link_poses`), the task objects
to their recorded poses, and each camera's image (in the GUI panel beside the 3D view) to its recorded video
frame. A time slider picks the frame, Play advances it at the dataset's rate, the episode number picks the
episode. Poses are metres; the viewer shows the scene in its own units, so they are divided by the recording's
metres per scene unit. Sending the robot, posing, the play clock's thread, starting and stopping are sim's live
viewer's (`add_bodies`, `draw_bodies`, `ticker`, `start_view`, `serve_view`).
"""
from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from policies.replay.episodes import ReplayEpisode, ReplaySource, base_transform
from sim import add_bodies, add_goal, draw_bodies, look_from, serve_view, set_pose, start_view, ticker
from twin_kit import InputError, info, one_line, qrot

OBJECT_COLOR = (240, 140, 40)
IMAGE_WIDTH = 256   # camera images are enlarged (whole pixels repeated) to about this width in the GUI panel


def display_image(frame: np.ndarray) -> np.ndarray:
    """A video frame as the GUI panel shows it: each pixel repeated k x k times (k = IMAGE_WIDTH // width, >= 1),
    since the browser draws an image at its own size and recorded frames are small (32-128 px)."""
    k = max(1, IMAGE_WIDTH // frame.shape[1])
    return frame if k == 1 else np.repeat(np.repeat(frame, k, axis=0), k, axis=1)


def _rgb(color) -> tuple[int, int, int]:
    return OBJECT_COLOR if color is None else tuple(int(round(255 * float(c))) for c in color[:3])


@dataclass
class ReplayView:
    """Draws the episodes of a `ReplaySource` into a running scenes viewer (see the module doc)."""

    source: ReplaySource
    viewer: object
    handles: dict = field(default_factory=dict)
    gui: dict = field(default_factory=dict)

    def __post_init__(self):
        self.episode: ReplayEpisode | None = None
        self.frame = 0
        self.playing = False
        self.mpu = 1.0
        self._lock = threading.RLock()
        self._clock = ticker(1.0 / self.source.fps, self._tick, "twin-replay-clock")

    # ------------------------------------------------------------------ lifecycle

    def attach(self, episode: int) -> None:
        """Send the robot and objects, add the Replay and Cameras panels, show `episode`, start the play clock."""
        server = self.viewer.server
        ep = self.source.load(episode)
        self.mpu = self.source.metres_per_unit(episode)
        s = 1.0 / self.mpu
        h = self.handles
        h["robot"] = server.scene.add_frame("/replay/robot", show_axes=False)
        h["links"] = add_bodies(server, self.source.world, "/replay/robot", s)
        h["objects"] = [self._add_object(server, k, name, s) for k, name in enumerate(self.source.object_names)]
        if ep.goal is not None:
            h["goal"] = add_goal(server, "/replay/goal", s)
        self._add_gui(server, ep)
        self._show_episode(ep)
        self._frame_robot()
        self._clock.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._clock.stop(timeout)

    def _add_object(self, server, k: int, name: str, s: float):
        """A frame per task object holding its boxes (in the object's body frame), coloured as the asset."""
        from policies.tasks.objects import OBJECTS, load_object

        fh = server.scene.add_frame(f"/replay/objects/{k}_{name}", show_axes=False)
        if name not in OBJECTS:
            server.scene.add_icosphere(f"/replay/objects/{k}_{name}/marker", radius=0.02 * s, color=OBJECT_COLOR)
            return fh
        ob = load_object(name).sim
        for j, (half, centre) in enumerate(ob.boxes()):
            server.scene.add_box(f"/replay/objects/{k}_{name}/box_{j}", color=_rgb(ob.color),
                                 dimensions=tuple(2 * float(v) * s for v in half),
                                 position=tuple(float(v) * s for v in centre),
                                 opacity=ob.opacity, cast_shadow=False, receive_shadow=False)
        return fh

    # ------------------------------------------------------------------ GUI

    def _add_gui(self, server, ep: ReplayEpisode) -> None:
        g, src = self.gui, self.source
        n = src.total_episodes
        with server.gui.add_folder("Replay", order=0.5):
            g["dataset"] = server.gui.add_markdown(
                f"**{src.root.name}**: {src.task or 'no task text'}  \n{src.robot}, {n} episode{'s' * (n != 1)} "
                f"at {src.fps} fps")
            g["episode"] = server.gui.add_number("Episode", ep.index, min=0, max=max(n - 1, 0), step=1)
            g["episode"].on_update(lambda _: self.set_episode(int(g["episode"].value)))
            g["status"] = server.gui.add_markdown("")
            g["time"] = server.gui.add_slider("Time (s)", min=0.0, max=self._slider_max(ep), step=1.0 / ep.fps,
                                              initial_value=0.0)
            g["time"].on_update(lambda _: self.show_frame(int(round(float(g["time"].value) * self.episode.fps))))
            g["play"] = server.gui.add_button("Play")
            g["play"].on_click(lambda _: self.set_playing(not self.playing))
            g["clock"] = server.gui.add_markdown("")
        g["images"] = {}
        if ep.images:
            with server.gui.add_folder("Cameras", order=0.6):
                for cam, frames in ep.images.items():
                    g["images"][cam] = server.gui.add_image(display_image(frames[0]), label=cam, format="png")

    @staticmethod
    def _slider_max(ep: ReplayEpisode) -> float:
        return max(ep.length - 1, 1) / ep.fps

    def _status(self, ep: ReplayEpisode, error: str | None = None) -> str:
        ok = {True: "**succeeded**", False: "**failed**", None: "success not recorded"}[ep.success]
        style = ep.style_id or "unknown"
        if ep.style_families:
            style += f" ({', '.join(ep.style_families)})"
        seed = f" · seed {ep.seed}" if ep.seed is not None else ""
        text = f"Episode {ep.index}: {ok} · style {style}{seed} · {ep.length} frames ({ep.length / ep.fps:.1f} s)"
        return text + (f"  \n**{error}**" if error else "")

    # ------------------------------------------------------------------ showing

    def set_episode(self, i: int) -> None:
        """Show episode i from its first frame (an episode that cannot be read is reported on the page)."""
        with self._lock:
            if self.episode is not None and i == self.episode.index:
                return
            try:
                ep = self.source.load(i)
                self.source.metres_per_unit(i)
            except InputError as e:
                self.gui["status"].content = self._status(self.episode, one_line(e))
                self.gui["episode"].value = self.episode.index
                return
            self.playing = False
            self.gui["play"].label = "Play"
            self._show_episode(ep)

    def _show_episode(self, ep: ReplayEpisode) -> None:
        with self._lock:
            self.episode = ep
            self.frame = -1
            set_pose(self.handles["robot"], base_transform(ep.base), 1.0 / self.mpu)
            g = self.gui
            g["status"].content = self._status(ep)
            if int(g["episode"].value) != ep.index:
                g["episode"].value = ep.index
            for cam, handle in g["images"].items():
                handle.visible = cam in ep.images
            if float(g["time"].value) != 0.0:
                g["time"].value = 0.0          # its callback shows frame 0 (before the range may shrink)
            g["time"].max = self._slider_max(ep)
            g["time"].step = 1.0 / ep.fps
            self.show_frame(0)

    def show_frame(self, k: int) -> None:
        """Pose the robot, objects and goal, and show the camera images, at frame k of the current episode."""
        with self._lock:
            ep = self.episode
            k = int(np.clip(k, 0, ep.length - 1))
            if k == self.frame:
                return
            self.frame = k
            s = 1.0 / self.mpu
            with self.viewer.server.atomic():
                draw_bodies(self.handles["links"], ep.link_poses[k], s)
                for j, fh in enumerate(self.handles["objects"]):
                    set_pose(fh, ep.object_poses[k, j], s)
                if ep.goal is not None and "goal" in self.handles:
                    self.handles["goal"].position = ep.goal[k] * s
            for cam, handle in self.gui["images"].items():
                if cam in ep.images:
                    handle.image = display_image(ep.images[cam][k])
            self.gui["clock"].content = f"t = {k / ep.fps:.2f} s · frame {k + 1} of {ep.length}"

    def set_playing(self, on: bool) -> None:
        """Play from the current frame (from the start when at the end), or pause."""
        with self._lock:
            if on and self.frame >= self.episode.length - 1:
                self.gui["time"].value = 0.0
            self.playing = bool(on)
            self.gui["play"].label = "Pause" if self.playing else "Play"

    def _tick(self) -> None:
        """The play clock (every 1/fps seconds): while playing, the next frame; it pauses at the episode's end."""
        with self._lock:
            if not self.playing:
                return
            k = self.frame + 1
            if k >= self.episode.length:
                self.set_playing(False)
                return
            self.gui["time"].value = k / self.episode.fps   # its callback shows frame k

    def _frame_robot(self) -> None:
        """Open new clients looking at the robot's workspace from its front-right, from a distance that grows with
        its height (its highest link at the first frame, at least 0.5 m: 1.3 m for the G1's upper body)."""
        base = base_transform(self.episode.base)
        size = max(float(self.episode.link_poses[0, :, 2].max()), 0.5)
        target = base[:3] + qrot(base[3:], np.array([0.35, 0.0, 0.45]) * size)
        look_from(self.viewer, target + qrot(base[3:], np.array([1.5, -1.15, 0.7]) * size), target, 1.0 / self.mpu)

    # ------------------------------------------------------------------ reading back (tests, scripts)

    def link_world_poses(self) -> np.ndarray:
        """(links, 7) world poses (metres, xyzw) of the drawn link frames, composed from the scene handles."""
        from twin_kit import tmul

        r = self.handles["robot"]
        robot = np.concatenate([np.asarray(r.position) * self.mpu, np.asarray(r.wxyz)[[1, 2, 3, 0]]])
        out = []
        for b, fh in self.handles["links"]:
            if b >= 0:
                link = np.concatenate([np.asarray(fh.position) * self.mpu, np.asarray(fh.wxyz)[[1, 2, 3, 0]]])
                out.append(tmul(robot, link))
        return np.array(out)


# ---------------------------------------------------------------------- starting


def start_replay_viewer(bundle, dataset, opts, episode: int = 0, robot: str | None = None,
                        scale: float | None = None, announce: bool = True):
    """Check the dataset and episode, build the robot, start the viewer (URL first on stdout when announced) and
    draw the episode. Returns (viewer, replay view). Bad input raises InputError before anything is served."""
    from scenes import check_port_free, start_viewer
    from spatial import read_bundle
    from twin_kit import quiet_warp

    source = ReplaySource(dataset, robot, scale)
    source.check_episode(episode)
    source.metres_per_unit(episode)
    read_bundle(bundle)                       # a damaged bundle is refused before the robot is built
    check_port_free(opts.host, opts.port)
    quiet_warp()
    with contextlib.redirect_stdout(sys.stderr):  # stdout: the URL first, the JSON last
        source.build()
    v = start_viewer(bundle, opts, announce=announce)
    view = ReplayView(source, v)
    start_view(v, view, attach=(episode,))
    return v, view


def run_replay(cfg, json_out: bool = False) -> int:
    """`twin view BUNDLE --dataset DIR [--episode K]`: serve the replay until Ctrl-C or `cfg.seconds`."""
    from twin_kit import emit_json

    v, view = start_replay_viewer(cfg.bundle, cfg.dataset, cfg.viewer_options(), episode=cfg.episode, robot=cfg.robot,
                                  scale=cfg.scale)
    src, ep = view.source, view.episode
    info(f"serving {v.bundle.root} with episode {ep.index} of {src.root} ({src.total_episodes} episodes, "
         f"{src.robot}, {len(src.cameras)} cameras); Ctrl-C to stop")
    serve_view(v, view, cfg.seconds)
    if json_out:
        emit_json({"url": v.url, "dataset": str(src.root), "episode": ep.index, "episodes": src.total_episodes,
                   "frames": ep.length, "robot": src.robot, "cameras": src.cameras})
    return 0
