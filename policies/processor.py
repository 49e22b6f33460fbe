"""Processors: raw observations (robot units, uint8 frames) -> model inputs, and model actions -> robot units.

They are torch modules whose constants are buffers (saved with the weights, exportable to ONNX with the model),
so training, evaluation and the robot runtime run the very same code. Normalisation follows LeRobot's modes:
mean_std (x - mean) / std; min_max and quantile map [min, max] or [q01, q99] to [-1, 1]; identity. Dimensions that
barely vary (scale below MIN_SCALE, e.g. a gripper that never moved) are centred but not amplified.

Action space: `absolute` models predict joint targets; `delta` models predict each chunk as offsets from the joint
positions observed at the chunk's start (every action dimension that names a state dimension; others stay
absolute), normalised with the statistics of those offsets (`ACTION_DELTA` in the features' stats, computed from
the training data by `delta_stats`). The processors add the observed joints back, so callers always see robot
units.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from policies.configuration import NORM_MODES
from policies.features import ACTION, ACTION_DELTA, ACTION_IS_PAD, IMAGES, OBJECTS, STATE, TWIN, PolicyFeatures
from policies.vision.preprocess import ImagePreprocess
from twin_kit import InputError

MIN_SCALE = 1e-4


def _offset_scale(stats: dict[str, list[float]], mode: str, dim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "identity":
        return np.zeros(dim), np.ones(dim)
    need = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "quantile": ("q01", "q99")}.get(mode)
    if need is None:
        raise InputError(f"normalisation {mode!r} is not one of {', '.join(NORM_MODES)}")
    missing = [s for s in need if s not in stats]
    if missing:
        raise InputError(f"{what}: {mode} normalisation needs the statistics {', '.join(missing)}")
    a, b = (np.asarray(stats[s], dtype=np.float64).reshape(-1) for s in need)
    if a.size != dim or b.size != dim:
        raise InputError(f"{what}: statistics have {a.size} values, the feature has {dim}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError(f"{what}: statistics are not finite")
    if mode == "mean_std":
        offset, scale = a, b
    else:
        offset, scale = (a + b) / 2, (b - a) / 2
    return offset, np.where(scale > MIN_SCALE, scale, 1.0)


class Normalize(nn.Module):
    """y = (x - offset) / scale over the last axis, with `inverse` undoing it; offset and scale are buffers."""

    def __init__(self, stats: dict[str, list[float]], mode: str, dim: int, what: str = "feature"):
        super().__init__()
        offset, scale = _offset_scale(stats, mode, dim, what)
        self.mode = mode
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.offset) / self.scale

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale + self.offset


def delta_columns(features: PolicyFeatures) -> tuple[list[int], list[bool]]:
    """Per action dimension: the state column of the same name (0 when none) and whether there is one (a delta
    dimension) or not (it stays absolute)."""
    names = features.state_names
    return ([names.index(n) if n in names else 0 for n in features.action_names],
            [n in names for n in features.action_names])


class DeltaActions(nn.Module):
    """Which action dimensions are offsets from which state dimension (by name), and the two conversions."""

    def __init__(self, features: PolicyFeatures):
        super().__init__()
        index, mask = delta_columns(features)
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))
        self.register_buffer("mask", torch.tensor(mask, dtype=torch.float32))

    def anchor(self, state: torch.Tensor) -> torch.Tensor:
        """(B, 1, A) the observed joint positions each action is measured from (0 for absolute dimensions)."""
        return (state.float()[..., self.index] * self.mask).unsqueeze(-2)

    def to_delta(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return actions.float() - self.anchor(state)

    def to_absolute(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return actions + self.anchor(state)


def _action_stats(features: PolicyFeatures, action_space: str) -> dict:
    if action_space == "absolute":
        return features.stats.get(ACTION, {})
    if action_space != "delta":
        raise InputError(f"action space {action_space!r} is not absolute or delta")
    if ACTION_DELTA not in features.stats:
        raise InputError(f"a delta-action policy needs the statistics of {ACTION_DELTA} (twin train computes them)")
    return features.stats[ACTION_DELTA]


class Preprocessor(nn.Module):
    """A batch of raw observations -> model inputs.

    In: `observation.state` (B, D) float; `observation.images.<camera>` (B, H, W, 3) uint8 per camera; and for
    training `action` (B, T, A) with optional `action_is_pad` (B, T). Out: normalised `observation.state`,
    `observation.images` (B, N, 3, S, S) in the features' camera order, normalised `action`, `action_is_pad`.
    """

    def __init__(self, features: PolicyFeatures, image_size: int, state_norm: str, action_norm: str,
                 action_space: str = "absolute", image_norm: str = "imagenet"):
        super().__init__()
        self.camera_keys = features.camera_keys
        self.state = Normalize(features.stats.get(STATE, {}), state_norm, features.state_dim, STATE)
        self.action = Normalize(_action_stats(features, action_space), action_norm, features.action_dim, ACTION)
        self.delta = DeltaActions(features) if action_space == "delta" else None
        self.image = ImagePreprocess(image_size, image_norm)

    def encode_action(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Robot-unit actions (B, T, A) seen from raw `state` (B, D) -> the model's normalised actions."""
        if self.delta is not None:
            actions = self.delta.to_delta(actions, state)
        return self.action(actions)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if STATE not in batch:
            raise InputError(f"observation has no {STATE!r}")
        missing = [k for k in self.camera_keys if k not in batch]
        if missing:
            raise InputError(f"observation lacks the camera(s) {', '.join(missing)}")
        out = {STATE: self.state(batch[STATE])}
        if self.camera_keys:
            out[IMAGES] = torch.stack([self.image(batch[k]) for k in self.camera_keys], dim=1)
        if ACTION in batch:
            out[ACTION] = self.encode_action(batch[ACTION], batch[STATE])
        if ACTION_IS_PAD in batch:
            out[ACTION_IS_PAD] = batch[ACTION_IS_PAD].bool()
        if OBJECTS in batch:   # auxiliary training targets, already standardised by the training data
            out[OBJECTS] = batch[OBJECTS].float()
        if TWIN in batch:   # which samples are restyled copies of which (the consistency loss's pairs)
            out[TWIN] = batch[TWIN].long()
        return out


class Postprocessor(nn.Module):
    """Normalised model actions (..., A) -> robot units (joint position targets, gripper included)."""

    def __init__(self, features: PolicyFeatures, action_norm: str, action_space: str = "absolute"):
        super().__init__()
        self.action = Normalize(_action_stats(features, action_space), action_norm, features.action_dim, ACTION)
        self.delta = DeltaActions(features) if action_space == "delta" else None

    def forward(self, actions: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """`state`: the raw observation.state (B, D) the chunk was predicted from (needed by delta actions)."""
        out = self.action.inverse(actions)
        if self.delta is not None:
            if state is None:
                raise InputError("a delta-action policy's actions need the observed state to become targets")
            out = self.delta.to_absolute(out, state)
        return out


def episode_pairs(view, episodes):
    """(observation.state (T, D), action (T, A)) of each of `episodes` of a dataset view."""
    for e in episodes:
        cols = view.episode_frames(e)
        yield cols[STATE], cols[ACTION]


def delta_stats(episodes, chunk_size: int, features: PolicyFeatures) -> dict[str, list[float]]:
    """Statistics (STAT_NAMES, computed as the dataset's own by `column_stats`) of the offsets a delta-action
    policy learns: for every frame t of every episode ((state (T, D), action (T, A)) pairs), actions
    t .. t + chunk - 1 minus the joints observed at t (padding left out), per action dimension."""
    from policies.datasets.stats import column_stats
    from policies.features import STAT_NAMES

    index, mask = delta_columns(features)
    rows = []
    for state, action in episodes:
        chunks, pad = action_chunks(action, chunk_size)
        anchor = np.asarray(state, dtype=np.float64)[:, index] * np.asarray(mask)
        rows.append((chunks - anchor[:, None, :])[~pad])
    x = np.concatenate(rows).astype(np.float64) if rows else np.empty((0, features.action_dim))
    if not len(x):
        raise InputError("no frames to compute delta-action statistics from")
    stats = column_stats(x)
    return {k: np.asarray(stats[k], dtype=np.float64).tolist() for k in STAT_NAMES}


def action_chunks(actions: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of one episode: for every frame t, actions t .. t + chunk_size - 1.

    actions (T, A) -> chunks (T, chunk_size, A) and is_pad (T, chunk_size), True past the episode's end where
    the last action is repeated (as LeRobot pads and masks its action windows).
    """
    actions = np.asarray(actions)
    n = actions.shape[0]
    idx = np.arange(n)[:, None] + np.arange(chunk_size)[None]
    return actions[np.minimum(idx, n - 1)], idx >= n
