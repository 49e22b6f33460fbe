"""Processors: raw observations (robot units, uint8 frames) -> model inputs, and model actions -> robot units.

They are torch modules whose constants are buffers (saved with the weights, exportable to ONNX with the model),
so training, evaluation and the robot runtime run the very same code. Normalisation follows LeRobot's modes:
mean_std (x - mean) / std; min_max and quantile map [min, max] or [q01, q99] to [-1, 1]; identity. Dimensions that
barely vary (scale below MIN_SCALE, e.g. a gripper that never moved) are centred but not amplified.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from policies.configuration import NORM_MODES
from policies.features import ACTION, ACTION_IS_PAD, IMAGES, STATE, PolicyFeatures
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


class Preprocessor(nn.Module):
    """A batch of raw observations -> model inputs.

    In: `observation.state` (B, D) float; `observation.images.<camera>` (B, H, W, 3) uint8 per camera; and for
    training `action` (B, T, A) with optional `action_is_pad` (B, T). Out: normalised `observation.state`,
    `observation.images` (B, N, 3, S, S) in the features' camera order, normalised `action`, `action_is_pad`.
    """

    def __init__(self, features: PolicyFeatures, image_size: int, state_norm: str, action_norm: str):
        super().__init__()
        self.camera_keys = features.camera_keys
        self.state = Normalize(features.stats.get(STATE, {}), state_norm, features.state_dim, STATE)
        self.action = Normalize(features.stats.get(ACTION, {}), action_norm, features.action_dim, ACTION)
        self.image = ImagePreprocess(image_size)

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
            out[ACTION] = self.action(batch[ACTION])
        if ACTION_IS_PAD in batch:
            out[ACTION_IS_PAD] = batch[ACTION_IS_PAD].bool()
        return out


class Postprocessor(nn.Module):
    """Normalised model actions (..., A) -> robot units (joint position targets, gripper included)."""

    def __init__(self, features: PolicyFeatures, action_norm: str):
        super().__init__()
        self.action = Normalize(features.stats.get(ACTION, {}), action_norm, features.action_dim, ACTION)

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.action.inverse(actions)


def action_chunks(actions: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of one episode: for every frame t, actions t .. t + chunk_size - 1.

    actions (T, A) -> chunks (T, chunk_size, A) and is_pad (T, chunk_size), True past the episode's end where
    the last action is repeated (as LeRobot pads and masks its action windows).
    """
    actions = np.asarray(actions)
    n = actions.shape[0]
    idx = np.arange(n)[:, None] + np.arange(chunk_size)[None]
    return actions[np.minimum(idx, n - 1)], idx >= n
