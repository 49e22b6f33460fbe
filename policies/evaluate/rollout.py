"""Closed-loop rollouts of a policy in parallel worlds: every world plays one episode at a time and starts the next
job (a style and an episode number) as soon as its episode ends.

Each frame, as the recorder samples them (every `steps_per_frame` control steps): every world's cameras are
rendered (the recorder's rigs, sizes and splat compositor), restyled per episode as the recorder restyles
(`FrameRestyler`), and with the joint positions go through the policy (its processors inside) to an action
chunk. Chunks become joint targets held for the frame's control steps: temporally ensembled (a chunk every
frame, ACT's Algorithm 2), or executed `n_action_steps` at a time (optionally spliced onto the previous chunk by
real-time chunking). Success is the task's: latched when its predicate held for `hold_s`, else the episode ends
at its length limit.

Episode k of any style resets from seed `seed + k`, draws its style and its flow noise from the same seed, and
runs in a world of its own (worlds are independent), so its outcome does not depend on which world or process
plays it. Inference runs one episode per call at a fixed thread count by default, which keeps the policy's
arithmetic bit-identical across worlds and processes too (a batched matrix product rounds a row differently
depending on its place in the batch); `--inference batched` trades that for speed.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from policies.evaluate.config import PolicyEvalConfig
from policies.evaluate.restyling import FrameRestyler
from policies.evaluate.styles import EvalStyle, episode_appearance
from policies.evaluate.videos import Clip, VideoQuota, tile
from policies.features import IMAGE_PREFIX, STATE, PolicyFeatures
from twin_kit import InputError

NOISE_STREAM = 0x4E  # the flow noise's random stream beside the reset and style streams of an episode's seed


@dataclass(frozen=True)
class Job:
    """One episode to play: its style's index in the run's style list and its number k (seed = seed + k)."""

    style: int
    number: int


@dataclass
class EpisodeResult:
    """One played episode; `video` holds an mp4's bytes for a failure worth keeping."""

    style: str
    number: int
    seed: int
    success: bool
    steps: int          # control steps until the episode ended
    frames: int         # policy frames (observations)
    style_id: str
    digest: str         # SHA-1 of every joint target the policy sent: equal digests, equal trajectories
    video: bytes | None = field(default=None, repr=False)


def execution_mode(requested: str, kind: str, config) -> str:
    """ensemble, chunk or rtc for a policy of type `kind` ("auto": ensemble for ACT with an ensembling
    coefficient, else chunk)."""
    if requested == "auto":
        coeff = getattr(config, "temporal_ensemble_coeff", None)
        return "ensemble" if kind == "act" and coeff is not None else "chunk"
    if requested == "rtc" and kind != "flow":
        raise InputError(f"--execution rtc needs a flow policy (this one is {kind})")
    return requested


def frame_steps(fps: int, control_dt: float) -> int:
    """Control steps per policy frame, 1 / (fps * control_dt): what the recorder holds each action for."""
    k = 1.0 / (fps * control_dt)
    if k < 1 - 1e-6 or abs(k - round(k)) > 1e-6:
        raise InputError(f"the policy's {fps} fps does not divide the control rate ({1 / control_dt:g} steps/s at "
                         f"--control-dt {control_dt:g}); give the --control-dt it was recorded with")
    return int(round(k))


def camera_names(features: PolicyFeatures) -> list[str]:
    return [k.removeprefix(IMAGE_PREFIX) for k in features.camera_keys]


@dataclass
class _Slot:
    """One world's running episode."""

    job: Job
    seed: int
    style: EvalStyle
    style_id: str
    restylers: list[FrameRestyler] | None
    noise: np.random.Generator
    clip: Clip | None
    plan: np.ndarray | None = None  # chunk / rtc: the chunk being executed (T, A) and the next action's index
    index: int = 0
    frames: int = 0
    digest: object = field(default_factory=lambda: hashlib.sha1())


class PolicyRollout:
    """A TaskEnv with the policy's cameras over `worlds` worlds, playing jobs with a runtime (see module doc)."""

    def __init__(self, cfg: PolicyEvalConfig, runtime, features: PolicyFeatures, config, styles: list[EvalStyle],
                 worlds: int, films: bool = False):
        from policies.record.cameras import build_cameras
        from policies.record.rollout import joint_names
        from policies.tasks.env import TaskEnv
        from policies.tasks.spec import TaskConfig

        self.cfg, self.runtime, self.features, self.config, self.styles = cfg, runtime, features, config, styles
        self.mode = execution_mode(cfg.execution, runtime.kind, config)
        self.k = frame_steps(features.fps, cfg.control_dt)
        self.quota = VideoQuota(cfg.max_videos, cfg.success_videos)
        self.films = films and self.quota.any
        names = camera_names(features)
        size = next(iter(features.cameras.values()))[0] if features.cameras else 128
        tc = TaskConfig(task=cfg.task, bundle=cfg.bundle, robot=cfg.robot or features.robot_type, scale=cfg.scale,
                        robot_pose=cfg.robot_pose, worlds=worlds, seed=cfg.seed, control_dt=cfg.control_dt,
                        episode_s=cfg.episode_s, visuals=bool(names) or self.films)
        with contextlib.redirect_stdout(sys.stderr):  # building prints notes: stdout is for --json
            self.env = TaskEnv(tc)
        joints, states = joint_names(self.env.world), self.env.state_names()
        if states != list(features.state_names) or len(joints) != features.action_dim:
            raise InputError(f"the policy reads {', '.join(features.state_names[:3])}, ... ({features.state_dim}) "
                             f"and writes {features.action_dim} joint targets; {self.env.profile.name} in "
                             f"{cfg.task} has the state {', '.join(states[:3])}, ... ({len(states)}) and "
                             f"{len(joints)} joints")
        self.cameras = build_cameras(self.env, names, size)
        self.view = None  # the video's front view in the capture's appearance: the policy's front camera if any
        if self.films and "front" not in names:
            self.view = build_cameras(self.env, ["front"], size)[0]
        self.n = self.env.n
        self.chunk = int(config.chunk_size)
        self.steps_per_chunk = int(config.n_action_steps)
        self.ensembler = None
        if self.mode == "ensemble":
            from policies.act.ensemble import TemporalEnsembler

            coeff = getattr(config, "temporal_ensemble_coeff", None)
            self.ensembler = TemporalEnsembler(0.01 if coeff is None else coeff, self.chunk)

    # ------------------------------------------------------------------ episodes

    def run(self, jobs) -> Iterator[EpisodeResult]:
        """Play the jobs (in order, as worlds free up), yielding each episode's result when it ends."""
        env, n = self.env, self.n
        pending = deque(jobs)
        slots: list[_Slot | None] = [None] * n
        last = np.zeros((n, self.features.action_dim), np.float32)

        def start(worlds: list[int]) -> None:
            idx = sorted(worlds)[:len(pending)]
            if not idx:
                return
            new = [pending.popleft() for _ in idx]
            mask = np.zeros(n, dtype=bool)
            mask[idx] = True
            seeds = [self.cfg.seed + j.number for j in new]
            env.reset(seeds=seeds, mask=mask)
            if self.ensembler is not None:
                self.ensembler.reset(mask)
            for i, job, seed in zip(idx, new, seeds, strict=True):
                slots[i] = self._slot(job, seed)

        start(list(range(n)))
        if self.ensembler is not None:
            self.ensembler.reset()
        while any(s is not None for s in slots):
            live = [i for i in range(n) if slots[i] is not None]
            state = env.observe()["observation.state"].numpy()
            images, views = self._images(slots, live)
            action = self._actions(slots, live, state, images, last)
            last[live] = action[live]
            for i in live:
                s = slots[i]
                s.frames += 1
                s.digest.update(last[i].tobytes())
                if s.clip is not None:
                    s.clip.add(tile([images[k][i] for k in self.features.camera_keys] + [views[i]]))
            for _ in range(self.k):
                env.step(last)
            ended = [i for i in live if env.done[i]]
            for i in ended:
                yield self._finish(slots[i], bool(env.success[i]), int(env.steps[i]))
                slots[i] = None
            start(ended)

    def _slot(self, job: Job, seed: int) -> _Slot:
        style = self.styles[job.style]
        look = episode_appearance(style, seed)
        restylers = None
        if not look.is_vanilla:
            restylers = [FrameRestyler(look, cam.K, self.env.support_z, cam.mounted, first_camera=j == 0)
                         for j, cam in enumerate(self.cameras)]
        clip = Clip(self.features.fps) if self.films and self.quota.worth_filming(style.name, job.number) else None
        return _Slot(job, seed, style, look.style_id, restylers, np.random.default_rng([seed, NOISE_STREAM]), clip)

    def _finish(self, s: _Slot, success: bool, steps: int) -> EpisodeResult:
        video = None
        if s.clip is not None:
            if self.quota.wanted(s.style.name, s.job.number, success):
                video = s.clip.finish()
            else:
                s.clip.discard()
        self.quota.add(s.style.name, s.job.number, success)
        return EpisodeResult(s.style.name, s.job.number, s.seed, success, steps, s.frames, s.style_id,
                             s.digest.hexdigest(), video)

    # ------------------------------------------------------------------ one frame

    def _images(self, slots: list, live: list[int]) -> tuple[dict[str, np.ndarray], list | None]:
        """Every camera's frame of every world (restyled where the episode's style says), and for filming
        each world's front view in the capture's own appearance."""
        import torch

        images: dict[str, np.ndarray] = {}
        views = None
        styled = [i for i in live if slots[i].restylers is not None]
        for j, (key, cam) in enumerate(zip(self.features.camera_keys, self.cameras, strict=True)):
            f = cam.sensors.render()
            rgb = (f.rgb * 255 + 0.5).to(torch.uint8).numpy()
            if cam.name == "front" and self.films:
                views = list(rgb.copy())
            if styled:
                w2c = cam.world_to_cam()
                for i in styled:
                    rgb[i] = slots[i].restylers[j](rgb[i], f.depth[i], f.seg[i], w2c[i if cam.mounted else 0])
            images[key] = rgb
        if self.view is not None:
            views = list((self.view.sensors.render().rgb * 255 + 0.5).to(torch.uint8).numpy())
        return images, views

    def _actions(self, slots: list, live: list[int], state: np.ndarray, images: dict, last: np.ndarray) -> np.ndarray:
        """(N, A) joint targets for this frame; worlds without an episode hold their last targets."""
        action = last.copy()
        if self.mode == "ensemble":
            import torch

            chunks = np.zeros((self.n, self.chunk, self.features.action_dim), np.float32)
            chunks[live] = self._infer(slots, live, state, images)
            out = self.ensembler.update(torch.from_numpy(chunks)).numpy()
            action[live] = out[live]
            return action
        need = [i for i in live if slots[i].plan is None or slots[i].index >= self.steps_per_chunk]
        for i, chunk in zip(need, self._infer(slots, need, state, images), strict=True):
            slots[i].plan, slots[i].index = chunk, 0
        for i in live:
            s = slots[i]
            action[i] = s.plan[s.index]
            s.index += 1
        return action

    def _infer(self, slots: list, rows: list[int], state: np.ndarray, images: dict) -> np.ndarray:
        """(len(rows), T, A) new chunks for the worlds `rows`: one row per call (per-episode inference: the same
        arithmetic whatever world or process plays the episode), or all in one call (batched; with rtc, one call
        for the first chunks and one for the spliced ones)."""
        a, t = self.features.action_dim, self.chunk
        flow = self.runtime.kind == "flow"
        noise = {i: slots[i].noise.standard_normal((t, a), dtype=np.float32) for i in rows} if flow else {}
        prefix = {}
        if self.mode == "rtc":
            for i in rows:
                s = slots[i]
                if s.plan is not None and s.index < t:
                    prefix[i] = s.plan[s.index:]  # the rest of the last chunk: this chunk's first steps
        groups = [[i] for i in rows]
        if self.cfg.inference == "batched":
            groups = [g for g in ([i for i in rows if i not in prefix], [i for i in rows if i in prefix]) if g]
        out = {}
        for g in groups:
            obs = {STATE: state[g], **{k: v[g] for k, v in images.items()}}
            pre = np.stack([prefix[i] for i in g]) if g[0] in prefix else None
            committed = min(self.cfg.rtc_delay, pre.shape[1]) if pre is not None else 0
            chunks = self.runtime.chunks(obs, np.stack([noise[i] for i in g]) if flow else None, pre, committed)
            out.update(zip(g, chunks, strict=True))
        return np.stack([out[i] for i in rows]) if rows else np.zeros((0, t, a), np.float32)


def play(cfg: PolicyEvalConfig, runtime, features: PolicyFeatures, config, styles: list[EvalStyle], jobs,
         films: bool = False) -> Iterator:
    """Build a rollout with as many worlds as needed (at most cfg.worlds) and play `jobs`: yields the build's
    seconds, then every EpisodeResult as it ends. What a shard worker runs."""
    import time

    jobs = list(jobs)
    t0 = time.perf_counter()
    ro = PolicyRollout(cfg, runtime, features, config, styles, max(1, min(cfg.worlds, len(jobs))), films)
    yield time.perf_counter() - t0
    yield from ro.run(jobs)
