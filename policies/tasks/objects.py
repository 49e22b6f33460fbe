"""Task objects from `assets/objects/`: each MJCF file read into a `sim.BoxObject` with its own mass, friction
and colour, plus the footprint and height that resets and success predicates need.

The MJCF is the source (Newton's URDF importer drops the URDF's PyBullet `<contact>` friction): every geom of an
asset is a box, its body's `<inertial>` gives the mass, `contype="0" conaffinity="0"` marks a visual-only object
(the target zone). Origins are the centre of the bottom face, so an object placed at z = h rests on a surface
at height h.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from sim import BoxObject
from twin_kit import InputError, asset_path

OBJECTS = ("cube", "target_zone", "bin")


@dataclass(frozen=True)
class TaskObject:
    """One asset as the tasks use it: the sim object (at the origin) and its size."""

    name: str
    sim: BoxObject
    half_xy: tuple[float, float]     # half extents of the footprint in the object frame (m)
    height: float                    # top above the origin (m)

    @property
    def radius(self) -> float:
        """Radius of the footprint's circumscribed circle: clear of it at any yaw."""
        return float(np.hypot(*self.half_xy))

    def placed(self, pos, yaw: float = 0.0) -> BoxObject:
        """The sim object with its origin (bottom centre) at `pos` and turned by `yaw` about +Z."""
        return replace(self.sim, pos=tuple(float(v) for v in pos), yaw=float(yaw))


def _floats(text: str | None, n: int, default: float = 0.0) -> tuple[float, ...]:
    vals = [float(v) for v in (text or "").split()]
    return tuple(vals[:n] + [default] * (n - len(vals[:n])))


def parse_mjcf_object(path, name: str) -> TaskObject:
    """A box-only single-body MJCF asset as a TaskObject (geom defaults of its classes applied)."""
    root = ET.parse(path).getroot()
    defaults = {d.get("class"): d.find("geom").attrib for d in root.iter("default")
                if d.get("class") and d.find("geom") is not None}
    body = root.find("worldbody/body")
    if body is None:
        raise InputError(f"{path}: no body in the object's MJCF")
    inertial = body.find("inertial")
    if inertial is None or inertial.get("mass") is None:
        raise InputError(f"{path}: the object's body has no <inertial mass=...>")
    parts, friction, rgba, collide = [], None, None, False
    for g in body.findall("geom"):
        a = {**defaults.get(g.get("class") or body.get("childclass"), {}), **g.attrib}
        if a.get("type", "sphere") != "box":
            raise InputError(f"{path}: geom {a.get('name')!r} is not a box (task objects are built from boxes)")
        parts.append((_floats(a.get("size"), 3), _floats(a.get("pos"), 3)))
        if "friction" in a:
            friction = _floats(a["friction"], 3)
        if "rgba" in a:
            rgba = _floats(a["rgba"], 4, 1.0)
        collide = collide or not (a.get("contype") == "0" and a.get("conaffinity") == "0")
    if not parts:
        raise InputError(f"{path}: the object has no geoms")
    lo = np.min([np.subtract(c, h) for h, c in parts], 0)
    hi = np.max([np.add(c, h) for h, c in parts], 0)
    half_xy = tuple(float(v) for v in np.maximum(np.abs(lo[:2]), np.abs(hi[:2])))
    sim = BoxObject(mass=float(inertial.get("mass")), parts=tuple(parts), friction=friction,
                    color=None if rgba is None else tuple(rgba[:3]),
                    opacity=None if rgba is None or rgba[3] >= 1.0 else rgba[3], collide=collide, name=name)
    return TaskObject(name=name, sim=sim, half_xy=half_xy, height=float(hi[2]))


@cache
def load_object(name: str) -> TaskObject:
    """The task object `name` (cube, target_zone, bin) from Twin's assets."""
    if name not in OBJECTS:
        raise InputError(f"unknown task object {name!r}; known: {', '.join(OBJECTS)}")
    return parse_mjcf_object(asset_path(f"objects/{name}/{name}.xml"), name)
