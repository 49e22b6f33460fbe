"""A picture of styles: one frame restyled under several styles, tiled in rows with a caption under each tile."""
from __future__ import annotations

import numpy as np
import torch

from policies.restyle.families import Style
from policies.restyle.procedural import restyle

CAPTION_PX = 14


def style_grid(rgb: torch.Tensor, maps: dict, rows: list[list[tuple[str, Style]]]) -> np.ndarray:
    """(rows * (H + caption), columns * W, 3) uint8 image: rgb (1, H, W, 3) under each (caption, style).

    maps are `restyle`'s for that one frame. Shorter rows are padded with black tiles.
    """
    from PIL import Image, ImageDraw, ImageFont

    H, W = rgb.shape[1:3]
    cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (cols * W, len(rows) * (H + CAPTION_PX)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, row in enumerate(rows):
        for j, (caption, style) in enumerate(row):
            img = restyle(rgb, maps, style)[0]
            tile = Image.fromarray((img.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
            x, y = j * W, i * (H + CAPTION_PX)
            canvas.paste(tile, (x, y))
            draw.text((x + 3, y + H + 1), caption, fill=(235, 235, 235), font=font)
    return np.asarray(canvas)
