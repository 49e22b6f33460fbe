"""A trained policy playing its task live: one world stepped on its own thread at the control rate, paced to real time.

The episode is the one `twin eval` plays: `PolicyRollout` over one world, advanced a control step at a time
(`LiveRollout`). Seed s resets the task; every `k` control steps the recorder's cameras are rendered, restyled by
the episode's style (`episode_appearance`, `FrameRestyler`), and with the joint positions turned by the policy (its
processors inside) into an action chunk, executed as eval executes it (temporal ensembling or whole chunks). So
the episode of seed s in style X here sends the joint targets `twin eval --seed s` sends in that style (equal
`digest`s).

The physics thread is the only one that touches Warp and the policy. Commands (play/pause, next seed, style) come
from any thread and are applied between control steps. After every control step the thread publishes an
immutable `PolicySnapshot` to its subscribers, which is all a viewer or a test needs to read. Slower than real
time (a large policy on a small CPU) it runs as fast as it can. An ended episode stays shown for `next_after`
seconds of play, then the next seed starts. The thread, command queue, subscribers and pacing are sim's live
session's (`ThreadedSession`, `RealTimePacer`). This module imports no viewer code (`policies.live.viewer` draws).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from policies.evaluate.rollout import EpisodeResult, Job, PolicyRollout, camera_names
from sim import RealTimePacer, ThreadedSession
from twin_kit import InputError


@dataclass
class PlayConfig:
    """How the live episodes run (the policy and task come from `twin eval`'s config)."""

    seed: int = 0               # the first episode's reset seed; Reset (or an ended episode) moves to the next
    style: str = "vanilla"      # the first episode's style: vanilla or a style family (its held-out split)
    next_after: float = 2.0     # seconds of play an ended episode stays shown before the next seed (< 0: never)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class PolicySnapshot:
    """What the physics thread published after a control step: read-only copies, safe to keep on any thread."""

    published: int = 0                   # snapshots published so far
    episodes: int = 0                    # episodes started so far, this one included
    seed: int = 0                        # the episode's reset seed
    style: str = "vanilla"               # its evaluation style: vanilla or a style family
    style_id: str = "vanilla"            # the style drawn for it (as `twin eval` records it)
    t: float = 0.0                       # episode seconds
    steps: int = 0                       # control steps of the episode
    frames: int = 0                      # policy frames (observations) of the episode
    body_q: np.ndarray | None = None     # (bodies_per_world, 7) metres, xyzw: robot links and task objects
    joint_q: np.ndarray | None = None    # (robot coords,) joint positions, the policy's state
    goal: np.ndarray | None = None       # (3,) the task's goal point, metres
    images: dict = field(default_factory=dict)   # camera name -> (H, W, 3) uint8: the frame the policy saw last
    done: bool = False                   # the episode ended (success, or its time limit)
    success: bool = False                # the task's success latched
    playing: bool = True
    speed: float = 0.0                   # simulated seconds per wall second, over the last second
    digest: str = ""                     # SHA-1 of the joint targets sent so far (as in eval's results.json)


class LiveRollout(PolicyRollout):
    """`twin eval`'s rollout over one world, advanced by the caller: `begin` an episode, then `step`."""

    def begin(self, style: int, seed: int) -> None:
        """Reset the world from `seed` under the `style`-th style and let the policy make its first decision."""
        self.env.reset(seeds=[seed])
        if self.ensembler is not None:
            self.ensembler.reset()
        self.slot = self._slot(Job(style, seed), seed)
        self.last = np.zeros((1, self.features.action_dim), np.float32)
        self.images: dict[str, np.ndarray] = {}
        self._decide()

    @property
    def ended(self) -> bool:
        """Whether the episode is over: eval looks after each frame's control steps."""
        return self.left == 0 and bool(self.env.done[0])

    def step(self) -> None:
        """One control step with the frame's joint targets; at a frame's end the policy decides anew, as in eval
        (observe, decide, hold the targets `k` steps, then see whether the episode ended)."""
        self.env.step(self.last)
        self.left -= 1
        if self.left == 0 and not self.env.done[0]:
            self._decide()

    def result(self) -> EpisodeResult:
        """The episode as `twin eval` reports it (its results.json entry)."""
        s, env = self.slot, self.env
        return EpisodeResult(s.style.name, s.job.number, s.seed, bool(env.success[0]), int(env.steps[0]), s.frames,
                             s.style_id, s.digest.hexdigest())

    def _decide(self) -> None:
        s = self.slot
        state = self.env.observe()["observation.state"].numpy()
        images, _ = self._images([s], [0])
        self.last[0] = self._actions([s], [0], state, images, self.last)[0]
        s.frames += 1
        s.digest.update(self.last[0].tobytes())
        names = camera_names(self.features)
        self.images = {n: _frozen(images[k][0].copy()) for n, k in zip(names, self.features.camera_keys, strict=True)}
        self.left = self.k


class PolicySession(ThreadedSession):
    """A `LiveRollout` stepped on its own thread; commands from any thread, snapshots to subscribers after every
    control step (`subscribe`, `set_playing`, `start`, `stop`, `error`, `finished`: `ThreadedSession`'s)."""

    def __init__(self, rollout: LiveRollout, cfg: PlayConfig | None = None):
        self._setup("twin-policy", PolicySnapshot())
        self.rollout = rollout
        self.cfg = cfg or PlayConfig()
        self.styles = [s.name for s in rollout.styles]
        if self.cfg.style not in self.styles:
            raise InputError(f"style {self.cfg.style!r}: not one of {', '.join(self.styles)}")
        self.results: list[EpisodeResult] = []  # every ended episode, as `twin eval` reports it
        self.episodes = 0
        self.seed, self.style = self.cfg.seed, self.styles.index(self.cfg.style)
        self._begin(self.seed, self.style)      # on the caller's thread: the first frame is there before start()

    # ------------------------------------------------------------------ commands (any thread)

    def next_episode(self) -> None:
        """Reset: start the episode of the next seed, in the current style."""
        self._queue("seed")

    def set_style(self, name: str) -> None:
        """Play the current seed again from its start under style `name` (vanilla or a family): the episode eval
        plays for that seed and style. The current style: nothing happens."""
        if name not in self.styles:
            raise InputError(f"style {name!r}: not one of {', '.join(self.styles)}")
        self._queue("style", self.styles.index(name))

    # ------------------------------------------------------------------ thread

    def _begin(self, seed: int, style: int) -> None:
        self.rollout.begin(style, seed)
        self.seed, self.style = seed, style
        self.episodes += 1
        self._publish(0.0)

    def _apply_pending(self) -> bool:
        """Apply queued commands; whether an episode was (re)started."""
        began = False
        for kind, arg in self._take_pending():
            if kind == "seed":
                self._begin(self.seed + 1, self.style)
                began = True
            elif kind == "style" and arg != self.style:
                self._begin(self.seed, int(arg))
                began = True
        return began

    def _loop(self) -> None:
        ro = self.rollout
        dt = ro.env.dt
        sim = 0.0                                   # simulated seconds of play
        pace = RealTimePacer(sim, "the policy and physics run at {speed:.2f}x real time on this CPU (as fast as they "
                                  "can)")
        ended_at = None
        while not self._stop.is_set():
            if self._apply_pending():
                ended_at = None
            now = time.monotonic()
            if not self.playing or ro.ended:
                if ro.ended and self.playing:
                    if ended_at is None:
                        ended_at = now
                        self.results.append(ro.result())
                    if 0 <= self.cfg.next_after <= now - ended_at:
                        self._begin(self.seed + 1, self.style)
                        ended_at = None
                        continue
                pace.hold(sim, now)
                if self.snapshot.playing != self.playing or self.snapshot.speed:
                    self._publish(0.0)
                self._stop.wait(0.05)
                continue
            ro.step()
            sim += dt
            wait = pace.wait_after(sim)
            self._publish(pace.speed)
            if wait > 0:
                self._stop.wait(wait)

    def _publish(self, speed: float) -> None:
        """Read the world into a new snapshot and hand it to every subscriber."""
        from sim import body_poses, get_joint_positions

        ro = self.rollout
        env, s = ro.env, ro.slot
        w = env.world
        self._send(lambda: PolicySnapshot(
            published=self.snapshot.published + 1, episodes=self.episodes, seed=self.seed, style=s.style.name,
            style_id=s.style_id, t=int(env.steps[0]) * env.dt, steps=int(env.steps[0]), frames=s.frames,
            body_q=_frozen(body_poses(w)[0].astype(np.float64)),
            joint_q=_frozen(np.asarray(get_joint_positions(w))[0].astype(np.float64)),
            goal=_frozen(np.asarray(env.goal[0], np.float64).copy()), images=dict(ro.images), done=ro.ended,
            success=bool(env.success[0]), playing=self.playing, speed=speed, digest=s.digest.hexdigest()))


def build_session(cfg, spec: dict, play: PlayConfig | None = None) -> PolicySession:
    """The policy's runtime (`open_runtime` of `twin eval`'s config `cfg` and `check_eval`'s `spec`), one task
    world with its cameras, and the session over them, not started (Warp's and the build's notes on stderr)."""
    import contextlib
    import sys

    from policies.evaluate.run import open_runtime

    with contextlib.redirect_stdout(sys.stderr):
        runtime, features, config, styles = open_runtime(cfg, spec)
        rollout = LiveRollout(cfg, runtime, features, config, styles, worlds=1)
        return PolicySession(rollout, play)
