"""Loss curves of a run: curves.json (every logged point) and curves.png, drawn with PIL (matplotlib is not a
dependency): training loss and its parts against steps, validation loss as dots joined by a line, log-scaled y.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from twin_kit import atomic_output, atomic_write_file

W, H = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 40, 60
COLOURS = [(31, 119, 180), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]
VAL_COLOUR = (255, 127, 14)


@dataclass
class Curves:
    """train: {"step", "loss", <parts>..., "lr", "samples_per_s"} per logged point; val: {"step", "loss"}."""

    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)

    def until(self, step: int) -> Curves:
        """The points up to `step` (a resumed run drops what came after its checkpoint)."""
        return Curves([p for p in self.train if p["step"] <= step], [p for p in self.val if p["step"] <= step])

    def to_json(self) -> dict:
        return {"train": self.train, "val": self.val}

    @classmethod
    def read(cls, path: Path) -> Curves:
        try:
            data = json.loads(path.read_text())
            return cls(list(data.get("train", [])), list(data.get("val", [])))
        except (OSError, ValueError, AttributeError):
            return cls()

    def write(self, json_path: Path, png_path: Path, title: str = "") -> None:
        atomic_write_file(json_path, (json.dumps(self.to_json()) + "\n").encode())
        with atomic_output(png_path) as tmp:
            draw_curves(self, title).save(tmp, format="PNG")


def _series(curves: Curves) -> list[tuple[str, list[tuple[float, float]], tuple[int, int, int], bool]]:
    """(label, points, colour, is validation) of every curve worth drawing (positive values: log scale)."""
    keys: list[str] = ["loss"]
    for p in curves.train:
        keys += [k for k in p if k not in keys and k not in ("step", "lr", "samples_per_s")]
    out = []
    for i, k in enumerate(keys):
        pts = [(p["step"], p[k]) for p in curves.train if k in p and p[k] is not None and p[k] > 0]
        label = "train loss" if k == "loss" else f"train {k}"
        out.append((label, pts, COLOURS[i % len(COLOURS)], False))
    out.append(("validation loss", [(p["step"], p["loss"]) for p in curves.val if p["loss"] > 0], VAL_COLOUR,
                True))
    return [s for s in out if s[1]]


def _ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten (and 2x, 5x when the range is narrow) between lo and hi."""
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5) if math.log10(hi / lo) < 3 else (1,):
            v = m * 10.0 ** e
            if lo <= v <= hi:
                out.append(v)
    return out


def draw_curves(curves: Curves, title: str = ""):
    """A PIL image of the curves (an empty frame with a note when there is nothing yet)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.font = ImageFont.load_default(size=14)
    d.text((LEFT, 12), title or "loss", fill="black")
    d.rectangle([LEFT, TOP, W - RIGHT, H - BOTTOM], outline=(80, 80, 80))
    series = _series(curves)
    if not series:
        d.text((LEFT + 20, TOP + 20), "no points yet", fill="black")
        return img
    xs = [x for s in series for x, _ in s[1]]
    ys = [y for s in series for _, y in s[1]]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = math.log10(min(ys)), math.log10(max(ys))
    if y1 - y0 < 0.3:
        y0, y1 = y0 - 0.15, y1 + 0.15

    def px(x: float, y: float) -> tuple[float, float]:
        u = LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT)
        v = H - BOTTOM - (math.log10(y) - y0) / (y1 - y0) * (H - TOP - BOTTOM)
        return u, v

    for t in _ticks(10 ** y0, 10 ** y1):
        _, v = px(x0, t)
        d.line([LEFT, v, W - RIGHT, v], fill=(230, 230, 230))
        d.text((8, v - 8), f"{t:g}", fill="black")
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        u, _ = px(x, 10 ** y0)
        d.line([u, H - BOTTOM, u, H - BOTTOM + 5], fill="black")
        d.text((u - 12, H - BOTTOM + 8), f"{round(x)}", fill="black")
    d.text(((W - LEFT) // 2, H - 22), "step", fill="black")
    for k, (label, pts, colour, is_val) in enumerate(series):
        line = [px(x, y) for x, y in pts]
        if len(line) > 1:
            d.line(line, fill=colour, width=3 if is_val or k == 0 else 1)
        if is_val:
            for u, v in line:
                d.ellipse([u - 3, v - 3, u + 3, v + 3], fill=colour)
        ly = TOP + 8 + 20 * k
        d.line([W - RIGHT - 190, ly + 8, W - RIGHT - 165, ly + 8], fill=colour, width=3)
        d.text((W - RIGHT - 158, ly), label, fill="black")
    return img
