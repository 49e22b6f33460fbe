"""Distractor boxes and cylinders standing on the table, ray cast per pixel against the depth map.

Placement uses the first frame: a distractor stands where its whole footprint (as a square window in the image)
is visible table or, beside the task objects, the support plane seen in front of the scene (`standing_spots`),
apart from the others, so it never starts inside the robot or a task object, and where it hides none of the
task objects' region in that frame (`task_region`): a distractor changes what the camera sees around the task,
it does not take the task out of view (a policy cannot act on a target no pixel shows). Each pixel's
camera ray is intersected with every primitive (slab test for boxes, quadratic for cylinders); a hit nearer than
the pixel's depth replaces the pixel, so distractors occlude and are occluded by the scene correctly. Shadows
on the scene come from casting the same primitives along the key light from each scene point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from policies.restyle.families import DISTRACTOR_PALETTES, Distractors

_EPS = 1e-9
_MARGIN_M = 0.015  # clearance around a footprint


@dataclass
class Placed:
    """Primitives in the world: base centres on the table (D, 3), half extents (D, 3), yaw (D,), kind, colour."""

    base: torch.Tensor
    half: torch.Tensor         # box: half width, half depth, half height; cylinder: r, r, half height
    yaw: torch.Tensor
    cylinder: torch.Tensor     # (D,) bool
    colour: torch.Tensor       # (D, 3)

    def __len__(self) -> int:
        return int(self.base.shape[0])


def _colour(name: str) -> tuple:
    for split in DISTRACTOR_PALETTES.values():
        if name in split:
            return split[name]
    raise ValueError(f"unknown distractor palette {name!r}")


NEAR_OBJECTS_M = 0.35  # off the visible table, distractors stand this close to the task objects at most
_DEPTH_TOL_M = 0.02   # a plane point this far behind the rendered surface still counts as in front of it


def standing_spots(P0: torch.Tensor, table0: torch.Tensor, depth0: torch.Tensor, centre: torch.Tensor,
                   dirs0: torch.Tensor, free: torch.Tensor, objects: torch.Tensor, support_height: float):
    """Where frame 0 lets a distractor stand: ((H, W) mask, (H, W, 3) support-plane points, (H, W) their depth).

    The visible table, and near the task objects (within NEAR_OBJECTS_M of their centre) every free pixel (no
    robot, no object) whose ray meets the support plane in front of the rendered surface: a capture whose splats
    show no table under the objects (they stand on the collision plane alone) still gets distractors beside them.
    """
    t = (support_height - centre[2]) / dirs0[..., 2]          # the plane point's camera depth per pixel
    Q = centre + torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)[..., None] * dirs0
    surface = torch.nan_to_num(depth0, nan=float("inf"))
    stand = table0.clone()
    near = objects & torch.isfinite(P0).all(-1)
    if near.any():
        c = P0[near][:, :2].mean(0)
        plane = torch.isfinite(t) & (t > 0) & (t <= surface + _DEPTH_TOL_M) & free
        stand |= plane & ((Q[..., :2] - c).norm(dim=-1) <= NEAR_OBJECTS_M)
    Q = torch.where(table0[..., None], P0, Q)
    return stand, Q, torch.where(table0, depth0, t)


def task_region(objects: torch.Tensor, centre: torch.Tensor, dirs: torch.Tensor, depth: torch.Tensor,
                pad: float = 0.15):
    """Rays that must stay in view: (centre (3,), directions (M, 3), depths (M,)) of every pixel in the task
    objects' bounding rectangle in the image (objects (H, W) bool), grown by `pad` of its size and 2 pixels, so
    the ground between the objects (where a pushed or carried object travels) stays visible too; None when no
    object is in view."""
    ys, xs = torch.nonzero(objects, as_tuple=True)
    if len(ys) == 0:
        return None
    H, W = objects.shape
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    g = int(round(pad * max(y1 - y0, x1 - x0))) + 2
    y0, y1, x0, x1 = max(y0 - g, 0), min(y1 + g, H), max(x0 - g, 0), min(x1 + g, W)
    z = torch.nan_to_num(depth[y0:y1, x0:x1], nan=float("inf")).reshape(-1)
    return centre, dirs[y0:y1, x0:x1].reshape(-1, 3), z


_TRIES = 32  # candidate spots a distractor tries before it is left out for hiding the task region


def _hides(base: torch.Tensor, half: torch.Tensor, yaw: float, cylinder: bool, region) -> bool:
    """Whether one primitive would cover any ray of `region` (centre, directions, depths) in front of its depth."""
    centre, dirs, z = region
    one = Placed(base[None], half[None], torch.tensor([yaw]), torch.tensor([cylinder]), torch.zeros(1, 3))
    t, _, _ = intersect(centre.expand_as(dirs), dirs, one)
    return bool((t < z).any())


def place(spec: Distractors, P0: torch.Tensor, table0: torch.Tensor, depth0: torch.Tensor, fx: float,
          support_height: float, seed: int, candidates: int = 1024, keep_visible=None) -> Placed:
    """Positions for the distractors from frame 0's world points P0 (H, W, 3), table mask and depth (H, W);
    `keep_visible`: `task_region`'s rays, which no distractor may hide."""
    H, W = table0.shape
    g = torch.Generator().manual_seed(seed)
    integ = torch.zeros(H + 1, W + 1, dtype=torch.int64)
    integ[1:, 1:] = table0.long().cumsum(0).cumsum(1)
    idx = torch.nonzero(table0.reshape(-1))[:, 0]
    if len(idx) == 0:
        return _placed([], [], [], [], [])
    idx = idx[torch.randperm(len(idx), generator=g)[:candidates]]
    v, u = idx // W, idx % W
    pts = P0.reshape(-1, 3)[idx]
    z = depth0.reshape(-1)[idx]
    bases, halves, reaches, yaws, cyl, cols = [], [], [], [], [], []
    for i in range(spec.count):
        size = spec.sizes_cm[i] / 100.0
        reach = size / 2 * math.sqrt(2) + _MARGIN_M                     # footprint's corner plus clearance
        r = torch.ceil(reach * fx / z).long().clamp_min(1)
        y0, y1, x0, x1 = v - r, v + r + 1, u - r, u + r + 1
        inside = (y0 >= 0) & (x0 >= 0) & (y1 <= H) & (x1 <= W)
        y0c, y1c, x0c, x1c = y0.clamp(0, H), y1.clamp(0, H), x0.clamp(0, W), x1.clamp(0, W)
        count = integ[y1c, x1c] - integ[y0c, x1c] - integ[y1c, x0c] + integ[y0c, x0c]
        ok = inside & (count == (2 * r + 1) ** 2)
        for b, rb in zip(bases, reaches):
            ok &= (pts[:, :2] - b[:2]).norm(dim=-1) > reach + rb
        half = torch.tensor([size / 2, size / 2, size * spec.height_ratios[i] / 2])
        yaw, cylinder = math.radians(spec.yaws_deg[i]), spec.shapes[i] == "cylinder"
        base = None
        for j in torch.nonzero(ok)[:_TRIES, 0]:
            b = torch.tensor([float(pts[j, 0]), float(pts[j, 1]), support_height])
            if keep_visible is None or not _hides(b, half, yaw, cylinder, keep_visible):
                base = b
                break
        if base is None:
            continue
        bases.append(base)
        halves.append(half)
        reaches.append(reach)
        yaws.append(yaw)
        cyl.append(cylinder)
        cols.append(_colour(spec.palettes[i]))
    return _placed(bases, halves, yaws, cyl, cols)


def _placed(bases, halves, yaws, cyl, cols) -> Placed:
    if not bases:
        z = torch.zeros(0, 3)
        return Placed(z, z.clone(), torch.zeros(0), torch.zeros(0, dtype=torch.bool), z.clone())
    return Placed(torch.stack(bases), torch.stack(halves), torch.tensor(yaws, dtype=torch.float32),
                  torch.tensor(cyl), torch.tensor(cols, dtype=torch.float32))


def _local(o: torch.Tensor, d: torch.Tensor, pr: Placed):
    """Ray origins (..., 3) and directions (..., 3) in every primitive's frame: (..., D, 3) each, base at 0."""
    c, s = torch.cos(pr.yaw), torch.sin(pr.yaw)
    rel = o[..., None, :] - pr.base
    lo = torch.stack([c * rel[..., 0] + s * rel[..., 1], -s * rel[..., 0] + c * rel[..., 1], rel[..., 2]], -1)
    dd = d[..., None, :]
    ld = torch.stack([c * dd[..., 0] + s * dd[..., 1], -s * dd[..., 0] + c * dd[..., 1],
                      dd[..., 2].expand_as(c * dd[..., 0])], -1)
    return lo, ld


def intersect(o: torch.Tensor, d: torch.Tensor, pr: Placed):
    """Nearest hit of rays o + t d (..., 3) with the primitives: (t (...), index (...), world normal (..., 3)).

    t is inf where nothing is hit (or the origin is inside a primitive); t is in units of d.
    """
    lo, ld = _local(o, d, pr)
    inf = torch.tensor(float("inf"))
    safe = torch.where(ld.abs() < _EPS, torch.full_like(ld, _EPS), ld)
    lower = torch.stack([-pr.half[:, 0], -pr.half[:, 1], torch.zeros_like(pr.half[:, 2])], -1)
    upper = torch.stack([pr.half[:, 0], pr.half[:, 1], 2 * pr.half[:, 2]], -1)
    t1, t2 = (lower - lo) / safe, (upper - lo) / safe
    tmin, tmax = torch.minimum(t1, t2), torch.maximum(t1, t2)
    t_in, axis = tmin.max(-1)
    t_out = tmax.min(-1).values
    t_box = torch.where((t_in <= t_out) & (t_in > 0), t_in, inf)
    n_box = torch.zeros_like(lo).scatter_(-1, axis[..., None], 1.0)
    n_box = n_box * -torch.sign(torch.gather(ld, -1, axis[..., None]))
    # cylinder: side wall (quadratic in the local xy), then the top cap
    r, top = pr.half[:, 0], 2 * pr.half[:, 2]
    a = ld[..., 0] ** 2 + ld[..., 1] ** 2
    b = 2 * (lo[..., 0] * ld[..., 0] + lo[..., 1] * ld[..., 1])
    c = lo[..., 0] ** 2 + lo[..., 1] ** 2 - r**2
    disc = b * b - 4 * a * c
    t_side = (-b - disc.clamp_min(0).sqrt()) / (2 * a).clamp_min(_EPS)
    z_side = lo[..., 2] + t_side * ld[..., 2]
    side_ok = (disc >= 0) & (a > _EPS) & (t_side > 0) & (z_side >= 0) & (z_side <= top)
    t_cap = (top - lo[..., 2]) / safe[..., 2]
    xc, yc = lo[..., 0] + t_cap * ld[..., 0], lo[..., 1] + t_cap * ld[..., 1]
    cap_ok = (t_cap > 0) & (xc * xc + yc * yc <= r * r) & (ld[..., 2] < 0)
    t_s = torch.where(side_ok, t_side, inf)
    t_c = torch.where(cap_ok, t_cap, inf)
    t_cyl = torch.minimum(t_s, t_c)
    hit_side = (lo[..., :2] + t_side[..., None] * ld[..., :2]) / r[:, None]
    n_cyl = torch.where((t_s <= t_c)[..., None], torch.cat([hit_side, torch.zeros_like(t_s)[..., None]], -1),
                        torch.tensor([0.0, 0.0, 1.0]))
    t_all = torch.where(pr.cylinder, t_cyl, t_box)
    n_loc = torch.where(pr.cylinder[:, None], n_cyl, n_box)
    t, k = t_all.min(-1)
    n_loc = torch.gather(n_loc, -2, k[..., None, None].expand(*k.shape, 1, 3))[..., 0, :]
    cy, sy = torch.cos(pr.yaw)[k], torch.sin(pr.yaw)[k]
    n = torch.stack([cy * n_loc[..., 0] - sy * n_loc[..., 1], sy * n_loc[..., 0] + cy * n_loc[..., 1],
                     n_loc[..., 2]], -1)
    return t, k, n


def screen_box(pr: Placed, K: torch.Tensor, world_to_cam: torch.Tensor, height: int, width: int):
    """(y0, y1, x0, x1) pixel rectangle covering every primitive in every view (the whole image when one is
    behind a camera), or None when none can be seen."""
    if len(pr) == 0:
        return None
    ext = pr.half[:, :2].norm(dim=-1)                                       # bounding radius in xy
    corners = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            for sz in (0, 2):
                off = torch.stack([sx * ext, sy * ext, sz * pr.half[:, 2]], -1)
                corners.append(pr.base + off)
    X = torch.cat(corners)                                                   # (8D, 3)
    R, t = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
    Xc = torch.einsum("tij,nj->tni", R, X) + t[:, None]
    if (Xc[..., 2] <= 1e-3).any():
        return 0, height, 0, width
    uv = (Xc @ K.T)[..., :2] / Xc[..., 2:3]
    x0, y0 = uv[..., 0].min().floor() - 1, uv[..., 1].min().floor() - 1
    x1, y1 = uv[..., 0].max().ceil() + 2, uv[..., 1].max().ceil() + 2
    x0, x1 = int(x0.clamp(0, width)), int(x1.clamp(0, width))
    y0, y1 = int(y0.clamp(0, height)), int(y1.clamp(0, height))
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def shadow_candidates(P: torch.Tensor, pr: Placed, elevation_deg: float) -> torch.Tensor:
    """(...) bool: points near enough a primitive in xy to be in its shadow for a light at that elevation."""
    tallest = (2 * pr.half[:, 2]).max()
    reach = pr.half[:, :2].norm(dim=-1).max() + tallest / max(math.tan(math.radians(elevation_deg)), 0.05)
    near = torch.zeros(P.shape[:-1], dtype=torch.bool)
    xy = torch.nan_to_num(P[..., :2], nan=1e9, posinf=1e9, neginf=1e9)
    for b in pr.base:
        near |= (xy - b[:2]).norm(dim=-1) <= reach
    return near
