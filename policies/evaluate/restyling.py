"""Restyling in closed loop: the recorder's procedural restyler applied to one frame at a time.

The recorder restyles a finished episode in one call; a policy needs each frame as it is rendered. The
procedural restyler's per-call work (`prepare_call`: luminance references, distractor placement from the first
frame, a fixed camera's rays and shadows, the table texture) is done here once, on the episode's first frame,
and every later frame goes through the same per-frame pass (`restyle_chunk`) with its own frame index, so the camera
noise changes per frame as recorded. Distractors go on the first camera only, as the recorder places them.
What differs from a recorded episode: the luminance references and the table texture's filter footprint come
from the first frame alone rather than from up to eight frames spread over the whole episode (a future the
policy has not made yet). For a fixed camera whose first frame shows what later ones do, frames are identical.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from twin_kit import torch_threads


class FrameRestyler:
    """One camera of one episode: `__call__(rgb, depth, seg, world_to_cam)` -> the frame under `style`.

    rgb (H, W, 3) uint8; depth (H, W, 1) metres; seg (H, W) classes; world_to_cam (4, 4) OpenCV. `moving`: a
    mounted camera (its rays are cast per frame); K (3, 3) intrinsics; support_height: the table's world z.
    """

    def __init__(self, style, K: np.ndarray, support_height: float, moving: bool, first_camera: bool):
        if not first_camera and style.distractors is not None:
            style = dataclasses.replace(style, distractors=None)
        self.style = style
        self.K = torch.as_tensor(np.asarray(K), dtype=torch.float32)
        self.support_height = float(support_height)
        self.moving = moving
        self.call = None
        self.t = 0

    def __call__(self, rgb: np.ndarray, depth, seg, world_to_cam: np.ndarray) -> np.ndarray:
        from policies.restyle.procedural import prepare_call, restyle_chunk

        if self.style.is_vanilla:
            return rgb
        frame = torch.from_numpy(np.ascontiguousarray(rgb))[None].float() / 255.0
        depth = torch.as_tensor(depth)[None].float()
        seg = torch.as_tensor(seg)[None].long()
        w2c = torch.as_tensor(np.asarray(world_to_cam), dtype=torch.float32)[None]
        with torch_threads(1):
            if self.call is None:
                self.call = prepare_call(frame, depth, seg, None, self.K, w2c, self.support_height, self.style)
                if self.moving:  # one frame looks fixed; a mounted camera is not: no shared rays, hits or shadows
                    self.call = dataclasses.replace(self.call, fixed=False, centres=None, dirs=None, hits=None,
                                                    lit=None)
            out, _, _ = restyle_chunk(frame, depth, seg, None, w2c, self.style, self.call, self.t)
        self.t += 1
        return (out[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
