"""A passer-by for a synthetic capture: a large textured panel that crosses the frames, with its exact masks.

The hardest case for structure from motion on a moving scene: a mover that is big, richly textured and moves
smoothly, so its features match well from frame to frame and can outvote the static scene. Drawn in 2D over
the rendered frames (like a person walking close past the phone), which keeps the static scene's ground truth
(cameras, depth) valid everywhere else.
"""
from __future__ import annotations

import cv2
import numpy as np


def add_passer_by(images: list[np.ndarray], width_frac: float = 0.19, height_frac: float = 0.5,
                  seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(frames with the panel, its masks): the panel walks left to right over the capture with a vertical bob."""
    h, w = images[0].shape[:2]
    pw, ph = max(4, round(width_frac * w)), max(4, round(height_frac * h))
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (max(2, ph // 5), max(2, pw // 5), 3), dtype=np.uint8)
    panel = cv2.resize(cells, (pw, ph), interpolation=cv2.INTER_NEAREST)
    n = len(images)
    out, masks = [], []
    for i, im in enumerate(images):
        x0 = round(0.03 * w + 0.78 * w * i / max(n - 1, 1))
        y0 = round((h - ph) / 2 + 0.05 * h * np.sin(i / 2))
        x1, y1 = min(x0 + pw, w), min(y0 + ph, h)
        frame, mask = im.copy(), np.zeros((h, w), bool)
        frame[y0:y1, x0:x1] = panel[: y1 - y0, : x1 - x0]
        mask[y0:y1, x0:x1] = True
        out.append(frame)
        masks.append(mask)
    return out, masks
