"""Per-frame exposure compensation: an RGB gain per training view, because a phone's auto exposure (and white
balance) drifts from frame to frame and no radiance model can represent that. Each time a view is trained on,
its gain is re-estimated in closed form (the least-squares scale of the current render onto the image); a
held-out frame's gain is unknown, so it is interpolated in time from the training frames' (the drift is smooth).
Gains and colours share one free common scale: after training it is moved into the colours, so that the saved
Gaussians show the capture's mean exposure.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scenes.splats.gaussians import SH_C0  # band-0 SH basis: colour = SH_C0 * sh_dc + (higher bands) + 0.5

SATURATED = 254.0 / 255.0  # pixels this bright were clipped by the sensor: they say nothing about the gain
MIN_ENERGY = 1e-6  # a channel darker than this over the whole render keeps its gain


@dataclass
class Exposure:
    """(views, 3) log-gains; a view's row stays 0 until it is first fitted (`seen`; held-out views never are)."""

    log_gains: torch.Tensor
    seen: torch.Tensor

    @staticmethod
    def make(n_views: int, device: torch.device | str = "cpu") -> Exposure:
        return Exposure(torch.zeros(n_views, 3, device=device), torch.zeros(n_views, dtype=torch.bool, device=device))

    def fork(self) -> Exposure:
        """An independent copy that trains on by itself."""
        return Exposure(self.log_gains.clone(), self.seen.clone())

    @torch.no_grad()
    def fit(self, image: torch.Tensor, ref: torch.Tensor, i: int) -> None:
        """Set view i's gain to the least-squares scale (per channel) from render `image` to its image `ref`,
        both (H,W,3) in [0,1]; saturated pixels are left out."""
        img = image.detach()
        keep = (ref < SATURATED).to(img.dtype)
        num = (img * ref * keep).sum((0, 1))
        den = (img * img * keep).sum((0, 1))
        ok = (den > MIN_ENERGY) & (num > 0)
        self.log_gains[i] = torch.where(ok, torch.log(num.clamp_min(1e-12) / den.clamp_min(1e-12)),
                                        self.log_gains[i])
        self.seen[i] = True

    @torch.no_grad()
    def fold_into(self, params: dict[str, torch.Tensor]) -> None:
        """Move the fitted gains' mean (per channel) into the Gaussians' colours: SH colours scaled by it (exact,
        as the rasterizer's colour is SH + 0.5 clamped at 0) and every log-gain shifted by it, so every
        render times its gain is unchanged (over a black background) while the colours now hold the capture's
        mean exposure."""
        if not bool(self.seen.any()):
            return
        mean = self.log_gains[self.seen].mean(0)
        k = torch.exp(mean).to(params["sh_dc"].dtype)
        params["sh_dc"].mul_(k).add_(0.5 * (k - 1.0) / SH_C0)
        params["sh_rest"].mul_(k)
        self.log_gains -= mean  # every view, seen or not: its exposed render stays the same

    def apply(self, image: torch.Tensor, i: int) -> torch.Tensor:
        """Training view i's render as its camera exposed it (the gain is a constant for the gradient)."""
        return image * torch.exp(self.log_gains[i])

    def table(self) -> np.ndarray:
        """(views, 3) log-gains."""
        return self.log_gains.detach().cpu().numpy().astype(np.float64)


def interpolate_gains(log_gains: np.ndarray, times: list[float], train: list[int]) -> np.ndarray:
    """(views, 3) log-gains where every view outside `train` takes the piecewise-linear interpolation in time
    of the training views' gains (held at the nearest one beyond the ends)."""
    out = np.array(log_gains, dtype=np.float64, copy=True)
    if not train:
        return np.zeros_like(out)
    order = sorted(train, key=lambda i: times[i])
    t = np.array([times[i] for i in order])
    trained = set(train)
    others = [i for i in range(len(out)) if i not in trained]
    for c in range(out.shape[1]):
        out[others, c] = np.interp([times[i] for i in others], t, out[order, c])
    return out
