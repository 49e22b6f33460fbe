"""The chunk broker of asynchronous inference: which action to execute at each control step, from action chunks
[H, D] that arrive late.

A chunk is stamped with the control step its observation was taken at (`obs_step`); its action i is meant for
step obs_step + i, and it arrives d steps later (d, the inference delay, is measured per chunk). Three modes:

- `sync`: request a chunk, hold while it is computed, execute it from its first action, then ask again.

In the asynchronous modes a chunk's actions for steps that passed while it was computed are skipped (LeRobot's
async inference and RTC do the same), so the first chunk starts at its action d.
- `ensemble` (ACT's temporal ensembling, Zhao et al. 2023): the action at step t averages every chunk that
  predicted t, with weights w_i = exp(-m i), i = 0 for the oldest; a new chunk is requested as soon as the last
  one arrived, and joins the average where it is aligned by its observation step.
- `rtc` (real-time chunking, Black et al. 2025): each request carries the prefix, the actions the current plan
  will execute from the observation step on (the first d, d the delay estimate, are committed). The flow policy
  inpaints its new chunk onto that prefix (policies.flow.rtc), and the broker switches to the new chunk at
  step obs_step + d, where the two agree: no jump at the seam.

The delay estimate is the largest of the recent measured delays (a late chunk would make the seam jump, an
early one only waits). Pure NumPy; the policy call itself is the caller's (a thread, a websocket client).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from policies.runtime.policy import PREFIX, PREFIX_LEN
from twin_kit import InputError

MODES = ("sync", "ensemble", "rtc")


@dataclass
class BrokerConfig:
    """How chunks are requested and spliced."""

    mode: str = "rtc"            # sync | ensemble | rtc
    chunk_size: int = 50         # H, actions per chunk (the policy's chunk_size)
    execute_steps: int = 0       # rtc/sync: steps executed from a chunk before the next request (rtc: >= delay);
                                 # 0: half a chunk
    request_every: int = 1       # ensemble: at most one request per this many steps
    ensemble_coeff: float = 0.01  # ensemble: m in w_i = exp(-m i), i = 0 the oldest chunk (ACT's default)
    delay_window: int = 8        # measured delays kept for the estimate (their max)
    initial_delay: int = 2       # delay estimate (steps) before any chunk was measured

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"chunking must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {self.chunk_size}")
        self.execute_steps = self.execute_steps or max(1, self.chunk_size // 2)
        if not 1 <= self.execute_steps <= self.chunk_size:
            raise InputError(f"execute_steps must be in [1, chunk_size={self.chunk_size}], got {self.execute_steps}")
        if self.request_every < 1 or self.delay_window < 1 or self.initial_delay < 0:
            raise InputError("request_every and delay_window must be >= 1, initial_delay >= 0")


@dataclass(frozen=True, eq=False)
class ChunkRequest:
    """Ask the policy for a chunk from the observation taken at `obs_step`; rtc: with this prefix (P, D) of
    which `prefix_len` actions are committed (None: the policy plans freely)."""

    obs_step: int
    prefix: np.ndarray | None = None
    prefix_len: int = 0

    def extras(self) -> dict:
        """The request's keys for the policy server (openpi observation dict): the rtc prefix, if any."""
        if self.prefix is None:
            return {}
        return {PREFIX: self.prefix.astype(np.float32), PREFIX_LEN: int(self.prefix_len)}


@dataclass
class Chunk:
    """Actions (H, D); action i executes at step `start + i` (`start`: the observation step, or the arrival step
    for a chunk that starts a fresh plan)."""

    actions: np.ndarray
    obs_step: int
    start: int
    switch: int = 0  # rtc: the step from which it replaces the current chunk

    def at(self, step: int) -> np.ndarray | None:
        i = step - self.start
        return self.actions[i] if 0 <= i < len(self.actions) else None


@dataclass
class ChunkBroker:
    """State machine between the control loop and the policy: `due(step)` -> `request(step)` -> (inference) ->
    `receive(actions, obs_step, step)`; `action(step)` each control step (None: nothing to execute, hold)."""

    config: BrokerConfig = field(default_factory=BrokerConfig)

    def __post_init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget every chunk and request (a new episode)."""
        self.current: Chunk | None = None
        self.pending: Chunk | None = None
        self.chunks: list[Chunk] = []            # ensemble: every chunk still covering a future step, oldest first
        self.delays: deque[int] = deque(maxlen=self.config.delay_window)
        self.in_flight: ChunkRequest | None = None
        self.last_request: int | None = None
        self.seams: list[int] = []               # steps at which a new chunk took over (rtc, sync) or joined

    @property
    def delay(self) -> int:
        """Delay estimate in steps: the largest recent measured delay."""
        return max(self.delays) if self.delays else self.config.initial_delay

    def due(self, step: int) -> bool:
        """Whether a new chunk should be requested at `step` (never while one is in flight)."""
        if self.in_flight is not None:
            return False
        c = self.config
        if c.mode == "ensemble":
            return self.last_request is None or step - self.last_request >= c.request_every
        plan = self.pending or self.current
        if plan is None or plan.at(step) is None:
            return True
        if c.mode == "sync":
            return False
        return step - self.last_request >= c.execute_steps

    def request(self, step: int) -> ChunkRequest:
        """Start a request for the observation taken at `step` (rtc: with the prefix of the current plan)."""
        if self.in_flight is not None:
            raise InputError(f"a chunk requested at step {self.in_flight.obs_step} is still in flight")
        prefix, n = None, 0
        if self.config.mode == "rtc":
            prefix = self._planned(step)
            if prefix is not None:
                n = min(self.delay, len(prefix))
        self.in_flight = ChunkRequest(step, prefix, n)
        self.last_request = step
        return self.in_flight

    def cancel(self) -> None:
        """Drop the request in flight (the server failed): the next `due` may ask again."""
        self.in_flight = None

    def receive(self, actions, obs_step: int, step: int) -> None:
        """A chunk computed from the observation of `obs_step` arrived at `step` (its delay is measured here)."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or len(a) != self.config.chunk_size:
            raise InputError(f"action chunk of shape {a.shape}, expected ({self.config.chunk_size}, D)")
        if not np.isfinite(a).all():
            raise InputError("action chunk holds NaN or inf")
        known = self.current or self.pending or (self.chunks[-1] if self.chunks else None)
        if known is not None and known.actions.shape[1] != a.shape[1]:
            raise InputError(f"action chunk has {a.shape[1]} dimensions, the previous ones {known.actions.shape[1]}")
        req = self.in_flight
        if req is None or req.obs_step != obs_step:
            raise InputError(f"no request in flight for the observation of step {obs_step}")
        self.in_flight = None
        self.delays.append(step - obs_step)
        mode = self.config.mode
        if mode == "sync":  # the robot waited: execute from the first action, now
            self.current = Chunk(a[:self.config.execute_steps], obs_step, step, step)
            self.seams.append(step)
        elif mode == "ensemble":
            self.chunks.append(Chunk(a, obs_step, obs_step))
            self.seams.append(step)
        elif (self.pending or self.current) is None:  # rtc, first chunk: its actions from now on
            self.current = Chunk(a, obs_step, obs_step, step)
            self.seams.append(step)
        else:  # rtc: take over where the committed prefix ends (the plans agree there), or now if later
            self.pending = Chunk(a, obs_step, obs_step, max(step, obs_step + req.prefix_len))

    def action(self, step: int) -> np.ndarray | None:
        """The action to execute at `step`, or None when no chunk covers it (the caller holds)."""
        if self.config.mode == "ensemble":
            return self._ensembled(step)
        if self.pending is not None and step >= self.pending.switch:
            self.current, self.pending = self.pending, None
            self.seams.append(step)
        return None if self.current is None else self.current.at(step)

    def _planned(self, step: int) -> np.ndarray | None:
        """rtc prefix: the actions the current plan executes from `step` to its end (None: no plan)."""
        rows = []
        k = step
        while True:
            plan = self.pending if self.pending is not None and k >= self.pending.switch else self.current
            a = None if plan is None else plan.at(k)
            if a is None or len(rows) == self.config.chunk_size:
                break
            rows.append(a)
            k += 1
        return np.stack(rows) if rows else None

    def _ensembled(self, step: int) -> np.ndarray | None:
        """Weighted mean of every chunk's prediction for `step`, oldest weight exp(0)."""
        self.chunks = [c for c in self.chunks if step - c.start < len(c.actions)]
        preds = [a for a in (c.at(step) for c in self.chunks) if a is not None]
        if not preds:
            return None
        w = np.exp(-self.config.ensemble_coeff * np.arange(len(preds)))
        return (w[:, None] * np.stack(preds)).sum(0) / w.sum()
