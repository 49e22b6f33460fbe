"""The appearances an evaluation runs under, the style each episode gets, and the success statistics.

`vanilla` is the capture's own splat appearance (no restyling). A style family name stands for that family's
held-out split alone; `held_out` expands to every family, one at a time, so each row of the table isolates one
kind of appearance shift (Isaac Lab's robust evaluation). `train_<family>` (or `train`, every family) plays the
family's *train* split instead: the appearances a restyled policy learnt from, so a held-out row can be read
against its in-distribution twin (does the policy fail on the new values, or on the family at all?). Episode k
of a family takes the style the recorder would draw from seed `seed + k` in that split, restricted to that
family: deterministic, the same for every policy and every process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from twin_kit import InputError

VANILLA_NAME = "vanilla"
HELD_OUT = "held_out"
TRAIN = "train"
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


@dataclass(frozen=True)
class EvalStyle:
    """One row of the table: its name, the family restyled (None: vanilla) and the split its values come from."""

    name: str
    family: str | None = None
    split: str = HELD_OUT

    @property
    def vanilla(self) -> bool:
        return self.family is None


def parse_styles(text: str) -> list[EvalStyle]:
    """`vanilla,held_out` (or family names, `train`, `train_<family>`) -> the styles in order, each once; one-line
    error on an unknown name."""
    from policies.restyle import STYLE_FAMILIES

    out: list[EvalStyle] = []
    names = [s.strip() for s in str(text).split(",") if s.strip()]
    if not names:
        raise InputError("--styles: name at least one style (vanilla, held_out, train or a style family)")
    for name in names:
        if name == VANILLA_NAME:
            add = [EvalStyle(VANILLA_NAME)]
        elif name == HELD_OUT:
            add = [EvalStyle(f, f) for f in STYLE_FAMILIES]
        elif name == TRAIN:
            add = [EvalStyle(f"{TRAIN}_{f}", f, TRAIN) for f in STYLE_FAMILIES]
        elif name in STYLE_FAMILIES:
            add = [EvalStyle(name, name)]
        elif name.startswith(TRAIN + "_") and name[len(TRAIN) + 1:] in STYLE_FAMILIES:
            add = [EvalStyle(name, name[len(TRAIN) + 1:], TRAIN)]
        else:
            raise InputError(f"--styles: unknown style {name!r} (vanilla, held_out, train, a family or train_ and a "
                             f"family; families: {', '.join(STYLE_FAMILIES)})")
        out += [s for s in add if s not in out]
    return out


def episode_appearance(style: EvalStyle, seed: int):
    """The `policies.restyle.Style` of the episode with reset seed `seed` under `style`."""
    from policies.record.restyling import episode_style
    from policies.restyle import VANILLA

    if style.vanilla:
        return VANILLA
    return episode_style(seed, "procedural", style.split, (style.family,))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % by default): (centre -+ half) / (1 + z^2 / n) with
    centre p + z^2 / 2n and half z sqrt(p (1 - p) / n + z^2 / 4n^2). Sound at 0 % and 100 %, unlike p +- z SE."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)
