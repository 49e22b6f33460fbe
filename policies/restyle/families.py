"""Style families: what may change in an episode's appearance, with disjoint train and held-out ranges.

A `Style` holds one optional parameter set per family (None = that family unchanged; all None = vanilla). Every
parameter has its train values and a disjoint held-out set (numeric bands or names), so a policy trained on
train styles is evaluated on appearances it never saw. A few parameters are marked `shared` (a pattern's kind,
an orientation): the same in both splits, never the only difference. The `train_wide` split is the train values
plus `outer` bands (and palettes) past the held-out ones, so most held-out values fall between values it trains
on (interpolation, as in domain randomisation over a wide range) rather than past its edge; it never touches a
held-out value, so held-out evaluation is the same whichever train split a policy learnt from. Sampling is
deterministic given the seed, and each family draws from its own stream, so choosing fewer families leaves the
others' values unchanged (and the train split draws what it drew before train_wide existed).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin_kit import InputError

SPLITS = ("train", "held_out", "train_wide")

# Colours are linear-ish RGB in [0, 1] (Twin's tensor convention). Palettes of one family have disjoint names
# per split; a table palette is (base, accent).
TABLE_PALETTES = {
    "train": {
        "oak": ((0.62, 0.45, 0.28), (0.45, 0.30, 0.17)), "walnut": ((0.38, 0.25, 0.15), (0.24, 0.15, 0.08)),
        "birch": ((0.80, 0.70, 0.55), (0.66, 0.55, 0.40)), "slate": ((0.40, 0.42, 0.44), (0.27, 0.29, 0.31)),
        "sand": ((0.78, 0.72, 0.60), (0.64, 0.58, 0.47)), "laminate": ((0.86, 0.85, 0.82), (0.74, 0.73, 0.70)),
    },
    "train_wide": {  # added to the train palettes by the train_wide split
        "burgundy": ((0.45, 0.08, 0.12), (0.30, 0.04, 0.07)), "forest": ((0.15, 0.35, 0.15), (0.08, 0.22, 0.08)),
        "cobalt": ((0.12, 0.22, 0.60), (0.20, 0.32, 0.75)), "terracotta": ((0.72, 0.36, 0.22), (0.55, 0.25, 0.15)),
        "lilac": ((0.70, 0.60, 0.80), (0.55, 0.45, 0.68)), "charcoal": ((0.06, 0.06, 0.07), (0.20, 0.20, 0.22)),
    },
    "held_out": {
        "cherry": ((0.56, 0.17, 0.12), (0.36, 0.08, 0.06)), "teal": ((0.10, 0.45, 0.45), (0.05, 0.28, 0.30)),
        "granite": ((0.13, 0.13, 0.14), (0.34, 0.34, 0.36)), "mint": ((0.62, 0.85, 0.70), (0.45, 0.70, 0.55)),
        "navy": ((0.10, 0.14, 0.35), (0.22, 0.27, 0.52)), "mustard": ((0.80, 0.62, 0.12), (0.60, 0.42, 0.05)),
    },
}
SURFACE_PALETTES = {  # robot links and task objects
    "train": {"white": (0.90, 0.90, 0.88), "light_grey": (0.68, 0.69, 0.70), "silver": (0.78, 0.80, 0.83),
              "cream": (0.92, 0.87, 0.76), "pale_blue": (0.70, 0.79, 0.90), "graphite": (0.28, 0.28, 0.30)},
    "train_wide": {"blue": (0.15, 0.30, 0.75), "yellow": (0.92, 0.80, 0.15), "teal": (0.10, 0.50, 0.50),
                   "maroon": (0.50, 0.08, 0.12), "charcoal": (0.12, 0.12, 0.13), "pink": (0.92, 0.55, 0.70)},
    "held_out": {"red": (0.80, 0.12, 0.10), "orange": (0.95, 0.50, 0.10), "black": (0.05, 0.05, 0.06),
                 "gold": (0.85, 0.66, 0.24), "green": (0.15, 0.60, 0.25), "purple": (0.46, 0.20, 0.62)},
}
OBJECT_PALETTES = {
    "train": {"red": (0.78, 0.10, 0.08), "green": (0.12, 0.58, 0.18), "blue": (0.10, 0.25, 0.80),
              "yellow": (0.92, 0.80, 0.10)},
    "held_out": {"violet": (0.50, 0.20, 0.70), "orange": (0.95, 0.45, 0.05), "cyan": (0.10, 0.75, 0.80),
                 "pink": (0.95, 0.50, 0.70)},
}
DISTRACTOR_PALETTES = {
    "train": {"cardboard": (0.62, 0.47, 0.30), "grey": (0.50, 0.50, 0.50), "white": (0.88, 0.88, 0.86),
              "wood": (0.55, 0.38, 0.22), "blue_grey": (0.40, 0.46, 0.55)},
    "train_wide": {"red": (0.75, 0.10, 0.10), "navy": (0.10, 0.15, 0.40), "green": (0.20, 0.55, 0.20),
                   "yellow": (0.90, 0.80, 0.15), "purple": (0.45, 0.20, 0.60)},
    "held_out": {"lime": (0.55, 0.85, 0.15), "magenta": (0.85, 0.15, 0.65), "black": (0.06, 0.06, 0.07),
                 "sky": (0.35, 0.65, 0.95), "crimson": (0.70, 0.05, 0.15)},
}
TEXTURE_KINDS = ("wood", "noise", "checker", "marble")
SHAPES = ("box", "cylinder")


@dataclass(frozen=True)
class Param:
    """The values one style parameter takes per split: numeric bands ((lo, hi), ...) or a tuple of names."""

    train: tuple
    held_out: tuple
    kind: str = "float"    # float | int | name
    shared: bool = False   # the same values in both splits (held_out = train)
    outer: tuple = ()      # what train_wide adds to train: bands past the held-out ones, or more names

    def values(self, split: str) -> tuple:
        if self.shared or split == "train":
            return self.train
        return self.train + self.outer if split == "train_wide" else self.held_out


# ---------------------------------------------------------------------------------------------- families


@dataclass(frozen=True)
class LightIntensity:
    """The key light's strength and direction; the original frame is the albedo it shades (Lambert)."""

    gain: float            # overall multiplier of the lit image
    ambient: float         # share of the light that does not depend on the surface normal
    elevation_deg: float   # key light's angle above the world XY plane
    azimuth_deg: float     # key light's direction in the world XY plane, from +X towards +Y


@dataclass(frozen=True)
class LightColour:
    """The light's colour: a blackbody colour temperature and a green (-) / magenta (+) tint."""

    kelvin: float
    tint: float


@dataclass(frozen=True)
class Background:
    """The scene behind the workspace (scene pixels off the table, and empty pixels): a colour grade."""

    hue_deg: float         # hue rotation
    saturation: float      # chroma multiplier
    exposure_ev: float     # brightness in stops
    contrast: float        # slope about mid grey


@dataclass(frozen=True)
class TableTexture:
    """A procedural texture on the support plane, fixed to world coordinates."""

    kind: str              # wood | noise | checker | marble (shared by both splits)
    palette: str           # a TABLE_PALETTES name of the split
    scale_m: float         # pattern period on the table, metres
    rotation_deg: float    # pattern orientation in the table plane (shared)
    detail: float          # how much of the original table's light and shade is kept (0 = flat texture)


@dataclass(frozen=True)
class SurfaceTexture:
    """A new colour for robot links or task objects, with solid noise of the world point (speckle)."""

    palette: str
    speckle: float         # noise amplitude
    scale_cm: float        # noise feature size


@dataclass(frozen=True)
class CameraEffects:
    """The sensor: white balance, vignetting, optical blur and pixel noise."""

    wb_red: float
    wb_blue: float
    vignette: float        # darkening at the image corners (0 = none)
    blur_px: float         # Gaussian blur sigma in pixels
    noise_std: float       # Gaussian pixel noise


@dataclass(frozen=True)
class Distractors:
    """Extra boxes and cylinders standing on the table (one entry per distractor in each tuple)."""

    count: int
    shapes: tuple[str, ...]
    palettes: tuple[str, ...]
    sizes_cm: tuple[float, ...]       # footprint width
    height_ratios: tuple[float, ...]  # height / width (shared)
    yaws_deg: tuple[float, ...]       # (shared)


@dataclass(frozen=True)
class Family:
    """A family's dataclass and the splits of its parameters (`per_item`: sampled `count` times)."""

    cls: type
    params: dict[str, Param]
    per_item: tuple[str, ...] = ()


def _names(table: dict) -> Param:
    """A palette parameter: the table's train and held-out names; train_wide adds its own names."""
    return Param(tuple(table["train"]), tuple(table["held_out"]), "name", outer=tuple(table.get("train_wide", ())))


def _bands(train, held_out, kind="float", outer=()) -> Param:
    return Param(tuple(map(tuple, train)), tuple(map(tuple, held_out)), kind, outer=tuple(map(tuple, outer)))


FAMILIES: dict[str, Family] = {
    "light_intensity": Family(LightIntensity, {
        "gain": _bands([(0.75, 1.3)], [(0.55, 0.7), (1.5, 1.8)], outer=[(0.4, 0.5), (1.9, 2.1)]),
        "ambient": _bands([(0.35, 0.6)], [(0.15, 0.28)], outer=[(0.05, 0.12)]),
        "elevation_deg": _bands([(40.0, 80.0)], [(20.0, 34.0)], outer=[(10.0, 17.0)]),
        "azimuth_deg": _bands([(0.0, 170.0)], [(190.0, 350.0)]),
    }),
    "light_colour": Family(LightColour, {
        "kelvin": _bands([(3500.0, 6500.0)], [(2000.0, 3000.0), (8000.0, 10000.0)],
                         outer=[(1700.0, 1900.0), (10500.0, 14000.0)]),
        "tint": _bands([(-0.02, 0.02)], [(-0.08, -0.04), (0.04, 0.08)], outer=[(-0.12, -0.09), (0.09, 0.12)]),
    }),
    "background": Family(Background, {
        "hue_deg": _bands([(-30.0, 30.0)], [(-180.0, -70.0), (70.0, 180.0)]),
        "saturation": _bands([(0.75, 1.25)], [(0.0, 0.4), (1.6, 2.0)], outer=[(2.1, 2.4)]),
        "exposure_ev": _bands([(-0.4, 0.4)], [(-0.9, -0.6), (0.6, 0.9)], outer=[(-1.2, -1.0), (1.0, 1.2)]),
        "contrast": _bands([(0.85, 1.15)], [(0.55, 0.7), (1.3, 1.45)], outer=[(0.4, 0.5), (1.5, 1.6)]),
    }),
    "table_texture": Family(TableTexture, {
        "kind": Param(TEXTURE_KINDS, TEXTURE_KINDS, "name", shared=True),
        "palette": _names(TABLE_PALETTES),
        "scale_m": _bands([(0.05, 0.15)], [(0.22, 0.4)], outer=[(0.45, 0.6)]),
        "rotation_deg": Param(((0.0, 180.0),), ((0.0, 180.0),), shared=True),
        "detail": _bands([(0.3, 0.6)], [(0.0, 0.15)]),
    }),
    "robot_texture": Family(SurfaceTexture, {
        "palette": _names(SURFACE_PALETTES),
        "speckle": _bands([(0.0, 0.12)], [(0.25, 0.4)], outer=[(0.45, 0.55)]),
        "scale_cm": _bands([(1.0, 4.0)], [(6.0, 12.0)], outer=[(13.0, 18.0)]),
    }),
    "object_texture": Family(SurfaceTexture, {
        "palette": _names(OBJECT_PALETTES),
        "speckle": _bands([(0.0, 0.12)], [(0.25, 0.4)], outer=[(0.45, 0.55)]),
        "scale_cm": _bands([(0.5, 2.0)], [(3.0, 6.0)], outer=[(6.5, 9.0)]),
    }),
    "camera": Family(CameraEffects, {
        "wb_red": _bands([(0.92, 1.08)], [(0.7, 0.82), (1.18, 1.3)], outer=[(0.6, 0.68), (1.32, 1.4)]),
        "wb_blue": _bands([(0.92, 1.08)], [(0.7, 0.82), (1.18, 1.3)], outer=[(0.6, 0.68), (1.32, 1.4)]),
        "vignette": _bands([(0.0, 0.15)], [(0.3, 0.5)], outer=[(0.55, 0.7)]),
        "blur_px": _bands([(0.0, 0.7)], [(1.2, 2.2)], outer=[(2.4, 3.0)]),
        "noise_std": _bands([(0.0, 0.015)], [(0.03, 0.06)], outer=[(0.065, 0.08)]),
    }),
    "distractors": Family(Distractors, {
        "count": _bands([(1, 3)], [(4, 6)], "int", outer=[(7, 8)]),
        "shapes": Param(SHAPES, SHAPES, "name", shared=True),
        "palettes": _names(DISTRACTOR_PALETTES),
        "sizes_cm": _bands([(3.0, 6.0)], [(8.0, 12.0)], outer=[(13.0, 15.0)]),
        "height_ratios": Param(((0.6, 2.0),), ((0.6, 2.0),), shared=True),
        "yaws_deg": Param(((0.0, 90.0),), ((0.0, 90.0),), shared=True),
    }, per_item=("shapes", "palettes", "sizes_cm", "height_ratios", "yaws_deg")),
}
STYLE_FAMILIES: tuple[str, ...] = tuple(FAMILIES)


@dataclass(frozen=True)
class Style:
    """One episode's appearance: a parameter set per family (None = unchanged). Vanilla changes nothing.

    Frozen and JSON-serialisable (`to_json` / `from_json`); `style_id` is a stable name of its content, to be
    recorded with the episode. `seed` drives the texture noise, distractor placement and camera noise.
    """

    split: str = "vanilla"
    seed: int = 0
    light_intensity: LightIntensity | None = None
    light_colour: LightColour | None = None
    background: Background | None = None
    table_texture: TableTexture | None = None
    robot_texture: SurfaceTexture | None = None
    object_texture: SurfaceTexture | None = None
    camera: CameraEffects | None = None
    distractors: Distractors | None = None

    @property
    def families(self) -> tuple[str, ...]:
        """The families this style changes."""
        return tuple(f for f in STYLE_FAMILIES if getattr(self, f) is not None)

    @property
    def is_vanilla(self) -> bool:
        return not self.families

    @property
    def style_id(self) -> str:
        """'vanilla', or '<split>-<12 hex digits of the SHA-1 of the canonical JSON>' (stable across runs)."""
        if self.is_vanilla:
            return "vanilla"
        digest = hashlib.sha1(self.to_json().encode()).hexdigest()[:12]
        return f"{self.split}-{digest}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Style:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InputError(f"style: unknown fields {sorted(unknown)}")
        kw: dict[str, Any] = {"split": d.get("split", "vanilla"), "seed": int(d.get("seed", 0))}
        for name in STYLE_FAMILIES:
            v = d.get(name)
            if v is not None:
                fam = FAMILIES[name].cls
                try:
                    kw[name] = fam(**{k: tuple(x) if isinstance(x, list) else x for k, x in v.items()})
                except TypeError as e:
                    raise InputError(f"style: family {name}: {e}") from None
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> Style:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise InputError(f"style: not JSON ({e})") from None


VANILLA = Style()


def _draw(rng: np.random.Generator, p: Param, split: str):
    """One value of parameter p for the split: a name, or uniform over the union of its bands."""
    vals = p.values(split)
    if p.kind == "name":
        return str(vals[int(rng.integers(len(vals)))])
    widths = np.array([hi - lo + (1 if p.kind == "int" else 0) for lo, hi in vals], dtype=float)
    lo, hi = vals[int(rng.choice(len(vals), p=widths / widths.sum()))]
    if p.kind == "int":
        return int(rng.integers(lo, hi + 1))
    return round(float(rng.uniform(lo, hi)), 4)  # 4 decimals: short JSON; the band ends have fewer


def sample_family(name: str, rng: np.random.Generator, split: str):
    """One parameter set of family `name` for the split."""
    fam = FAMILIES[name]
    kw = {}
    n = _draw(rng, fam.params["count"], split) if "count" in fam.params else None
    for pname, p in fam.params.items():
        if pname == "count":
            kw[pname] = n
        elif pname in fam.per_item:
            kw[pname] = tuple(_draw(rng, p, split) for _ in range(n))
        else:
            kw[pname] = _draw(rng, p, split)
    return fam.cls(**kw)


def sample_style(rng: np.random.Generator | int, split: str = "train", families=None,
                 count: int | None = None) -> Style:
    """A random style of the split ("train" or "held_out") changing `families` (None = all of STYLE_FAMILIES),
    or with `count` only that many of them, chosen at random (a style close to vanilla, as evaluation's
    one-family-at-a-time styles are).

    Deterministic given the generator's state (or an int seed); each family has its own stream, and the choice of
    `count` families its own, so a family's values do not depend on which others were chosen.
    """
    if split not in SPLITS:
        raise InputError(f"style split must be one of {', '.join(SPLITS)}, got {split!r}")
    chosen = STYLE_FAMILIES if families is None else tuple(families)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise InputError(f"unknown style families {unknown} (known: {', '.join(STYLE_FAMILIES)})")
    if count is not None and not 1 <= count <= len(chosen):
        raise InputError(f"a style may vary 1 to {len(chosen)} of its families, not {count}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(int(rng))
    seed = int(rng.integers(2**31))
    streams = rng.integers(2**63, size=len(STYLE_FAMILIES))
    if count is not None:
        pick = np.random.default_rng([seed, 1]).choice(len(chosen), count, replace=False)
        chosen = tuple(chosen[i] for i in sorted(pick))
    kw = {name: sample_family(name, np.random.default_rng(int(s)), split)
          for name, s in zip(STYLE_FAMILIES, streams) if name in chosen}
    return Style(split=split, seed=seed, **kw)


def param_values(style: Style) -> dict[str, dict[str, list]]:
    """family -> parameter -> its values in `style` (a list: per-item parameters have several)."""
    out: dict[str, dict[str, list]] = {}
    for name in style.families:
        fam, v = FAMILIES[name], getattr(style, name)
        out[name] = {p: list(getattr(v, p)) if p in fam.per_item else [getattr(v, p)] for p in fam.params}
    return out
