"""Each episode's appearance: its style drawn from its own seed, and the camera videos restyled from the control
maps the sensors made (procedural on the CPU, or Cosmos-Transfer through a loaded pipeline).

One style per episode, the same for every camera, so the views agree (table texture and light are fixed in the
world). Distractors are placed by the restyler from one camera's first frame, so they go on the first camera
only: placed per camera they would stand in different spots in each view.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from policies.restyle import VANILLA, CosmosConfig, Style, restyle, restyle_cosmos, sample_style

STYLE_STREAM = 0x57  # the style's random stream beside the episode's reset stream (same seed, other draws)


def episode_style(seed: int, mode: str, split: str = "train", families=None, count: int | None = None,
                  variant: int = 0) -> Style:
    """The style of the episode with reset seed `seed` (vanilla when not restyling); `count`: it varies only that
    many of `families`, a random choice per episode; `variant` k > 0 draws from a stream of its own, so one
    episode (the same reset, the same expert) can be recorded under several appearances."""
    if mode == "none":
        return VANILLA
    stream = [int(seed), STYLE_STREAM] + ([int(variant)] if variant else [])
    return sample_style(np.random.default_rng(stream), split, families, count)


def style_number(style: Style) -> int:
    """The style id as a per-frame integer: the 12 hex digits of `Style.style_id` (0 for vanilla)."""
    return 0 if style.is_vanilla else int(style.style_id.rsplit("-", 1)[1], 16)


@dataclass
class Restyler:
    """How camera videos get their appearance: `mode` none, procedural or cosmos (with a loaded `pipe`;
    `prompt_embeds` stand in for a pipeline without a text encoder)."""

    mode: str = "none"
    cosmos: CosmosConfig | None = None
    pipe: object | None = None
    prompt_embeds: torch.Tensor | None = None
    negative_prompt_embeds: torch.Tensor | None = None

    @property
    def needs_maps(self) -> bool:
        return self.mode != "none"

    def apply(self, rgb: np.ndarray, maps: dict, style: Style, first_camera: bool) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of one camera under `style`, from rgb (T, H, W, 3) uint8 and its maps."""
        if self.mode == "none" or style.is_vanilla:
            return rgb
        frames = torch.from_numpy(rgb).float() / 255.0
        if not first_camera and style.distractors is not None:
            style = dataclasses.replace(style, distractors=None)
        if self.mode == "procedural":
            out = restyle(frames, maps, style)
        else:
            out = restyle_cosmos(self.pipe, frames, maps, style, self.cosmos, self.prompt_embeds,
                                 self.negative_prompt_embeds)
        return (out.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def load_restyler(mode: str, weights: str | None = None, controlnet: str | None = None,
                  control: str = "auto") -> Restyler:
    """The restyler of a recording; cosmos loads its pipeline from local folders (never downloaded)."""
    if mode != "cosmos":
        return Restyler(mode)
    from policies.restyle import load_cosmos

    cfg = CosmosConfig(cosmos_weights=weights, cosmos_controlnet=controlnet, control=control)
    pipe = load_cosmos(cfg)
    pipe.set_progress_bar_config(disable=True)
    return Restyler("cosmos", cfg, pipe)
