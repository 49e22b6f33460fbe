"""Reset distribution: where task objects and reach targets may go around the robot, sampled per world.

`Workspace` is built once per environment from the scan and the robot's home pose: a 1 cm height map of the
scan's topmost surface around the base (ray cast down), from which a cell is free when the surface there is
the support plane (within `FLAT_TOL`) and no part of the robot stands over it. An object of footprint radius r
may go where every cell within r + `GAP` is free: it then rests on the support, clear of the scan (nothing of
the scan rises inside its footprint, nothing hangs over it) and of the robot. Objects are kept apart by the
sum of their radii plus `GAP`. Reach targets must be `TARGET_CLEARANCE` from the scan's surface.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim import penetrating
from twin_kit import InputError

CELL = 0.01              # m: height-map resolution
FLAT_TOL = 0.006         # m: a cell is on the support when its top surface is this close to the support height
GAP = 0.02               # m: clearance between objects, and between an object and anything blocked
TARGET_CLEARANCE = 0.06  # m: reach targets keep this far from the scan's surface
ROBOT_LOW = 0.25         # m: robot parts lower than this above the support block the cells under them
LIFT = 0.001             # m: objects start this far above the highest surface under their footprint
ROBOT_TOL = 0.01         # m: robot points may dip this far below the scan's surface (scan noise)
MAX_CHECKS = 40          # base candidates tested against the scan's surface before giving up


@dataclass
class Workspace:
    """Free support cells around one robot base, and the scan near it for target clearance checks."""

    base: np.ndarray            # (4,) base x, y, z (support height) and yaw
    support_z: float
    origin: np.ndarray          # (2,) xy of cell (0, 0)
    height: np.ndarray          # (H, W) top surface height (nan: no surface; the floor when there is no scan)
    clearance: np.ndarray       # (H, W) distance (m) from each cell to the nearest blocked cell
    ring: tuple[float, float]
    sector: float               # radians either side of forward
    surface: object | None      # cKDTree of points on the scan near the base (None: no scan)

    def cell_xy(self, ij: np.ndarray) -> np.ndarray:
        return self.origin + ij[..., ::-1] * CELL

    def to_world(self, local: np.ndarray) -> np.ndarray:
        """Base-frame points (..., 3) to world points (x forward, z up from the support)."""
        c, s = np.cos(self.base[3]), np.sin(self.base[3])
        x, y, z = local[..., 0], local[..., 1], local[..., 2]
        return np.stack([self.base[0] + c * x - s * y, self.base[1] + s * x + c * y, self.support_z + z], -1)

    def spots(self, radius: float) -> np.ndarray:
        """(K, 2) cell indices in the ring and sector where an object of footprint `radius` fits."""
        ii, jj = np.nonzero(self.clearance >= radius + GAP)
        xy = self.origin + np.stack([jj, ii], 1) * CELL
        d = xy - self.base[:2]
        r = np.hypot(d[:, 0], d[:, 1])
        ang = np.angle(np.exp(1j * (np.arctan2(d[:, 1], d[:, 0]) - self.base[3])))
        ok = (r >= self.ring[0]) & (r <= self.ring[1]) & (np.abs(ang) <= self.sector)
        return np.stack([ii[ok], jj[ok]], 1)

    def rest_height(self, xy: np.ndarray, radius: float) -> np.ndarray:
        """z at which an object of footprint `radius` centred at each xy (K, 2) rests: the highest surface in
        the disc of that radius (plus half a cell)."""
        r = int(np.ceil(radius / CELL))
        di, dj = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
        disc = np.hypot(di, dj) * CELL <= radius + 0.5 * CELL
        di, dj = di[disc], dj[disc]
        n = self.height.shape[0]
        ij = np.round((xy - self.origin) / CELL).astype(int)[:, ::-1]
        ii, jj = ij[:, :1] + di[None], ij[:, 1:] + dj[None]
        inside = (ii >= 0) & (ii < n) & (jj >= 0) & (jj < n)
        h = np.where(inside, self.height[np.clip(ii, 0, n - 1), np.clip(jj, 0, n - 1)], np.nan)
        h = np.where(np.isfinite(h), h, -np.inf).max(1)
        return np.where(np.isfinite(h), h, self.support_z) + LIFT

    def target_clear(self, p: np.ndarray) -> np.ndarray:
        """Whether points (K, 3) keep TARGET_CLEARANCE from the scan."""
        if self.surface is None:
            return p[:, 2] - self.support_z >= TARGET_CLEARANCE
        d, _ = self.surface.query(p)
        return d >= TARGET_CLEARANCE


def collision_scene(scene, solver: str):
    """The scene as `solver` collides with it: mujoco_cpu collides with the scan's convex pieces, whose hulls
    bulge above the scan where it is concave; the other solvers with its triangles. Resets sample on this
    surface, so objects start where the physics has them rest (None stays None)."""
    if scene is None or solver != "mujoco_cpu":
        return scene
    import trimesh

    hulls = trimesh.util.concatenate([trimesh.convex.convex_hull(np.asarray(p)) for p in scene.convex_pieces()])
    return replace(scene, vertices=np.asarray(hulls.vertices, np.float32), faces=np.asarray(hulls.faces, np.int32),
                   file_mesh=None)


def _heights(scene, xy: np.ndarray) -> np.ndarray:
    """Topmost scan surface height at each xy (nan where the scan has none)."""
    import trimesh

    mesh = trimesh.Trimesh(scene.vertices, scene.faces, process=False)
    top = float(scene.vertices[:, 2].max()) + 1.0
    o = np.column_stack([xy, np.full(len(xy), top)])
    loc, idx, _ = mesh.ray.intersects_location(o, np.tile([0.0, 0.0, -1.0], (len(o), 1)), multiple_hits=False)
    h = np.full(len(xy), np.nan)
    h[idx] = loc[:, 2]
    return h


def _surface_tree(scene, centre: np.ndarray, radius: float):
    """KD-tree of points ~5 mm apart on the scan's triangles within `radius` of `centre`."""
    import trimesh
    from scipy.spatial import cKDTree

    tri = scene.vertices[scene.faces]
    near = np.linalg.norm(tri.mean(1) - centre, axis=1) < radius
    if not near.any():
        return None
    sub = trimesh.Trimesh(scene.vertices, scene.faces[near], process=False)
    n = int(np.clip(sub.area / 0.005 ** 2, 1000, 500_000))
    pts, _ = trimesh.sample.sample_surface(sub, n, seed=0)
    return cKDTree(np.concatenate([pts, sub.vertices]))


def height_map(scene, centre: np.ndarray, radius: float, support_z: float, plane: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """(origin xy, (H, W) heights): the scan's topmost surface on a CELL grid around `centre`. Without a scan,
    or with `plane` (the support continues beyond the scan), cells the scan does not cover are support."""
    n = int(np.ceil(2 * radius / CELL)) + 1
    origin = np.asarray(centre, dtype=np.float64)[:2] - radius
    jj, ii = np.meshgrid(np.arange(n), np.arange(n))
    xy = origin + np.stack([jj.ravel(), ii.ravel()], 1) * CELL
    h = np.full(n * n, support_z) if scene is None else _heights(scene, xy)
    if plane:
        h = np.where(np.isnan(h), support_z, h)
    return origin, h.reshape(n, n)


def build_workspace(scene, base: np.ndarray, robot_points: np.ndarray, ring: tuple[float, float],
                    sector_deg: float, plane: bool = False, reach: float = 1.2) -> Workspace:
    """The workspace of a robot whose base stands at `base` (x, y, support z, yaw) in `scene` (None: floor).

    `robot_points` are points on the robot's collision shapes at its home pose (world frame); `plane`: the
    support continues where the scan has no surface (sim's `support_plane`)."""
    from scipy.ndimage import distance_transform_edt

    sz = float(base[2])
    origin, h = height_map(scene, base[:2], ring[1] + 0.25, sz, plane)
    n = h.shape[0]
    free = np.abs(h - sz) <= FLAT_TOL
    low = robot_points[robot_points[:, 2] < sz + ROBOT_LOW]
    if len(low) >= 3:                           # the robot's footprint: the hull of its low points
        from scipy.spatial import Delaunay

        jj, ii = np.meshgrid(np.arange(n), np.arange(n))
        cells = origin + np.stack([jj.ravel(), ii.ravel()], 1) * CELL
        try:
            inside = Delaunay(low[:, :2]).find_simplex(cells) >= 0
        except Exception:  # noqa: BLE001  (degenerate hull: fall back to the points' own cells)
            inside = np.zeros(len(cells), bool)
        free &= ~inside.reshape(n, n)
        ij = np.round((low[:, :2] - origin) / CELL).astype(int)
        ok = ((ij >= 0) & (ij < n)).all(1)
        free[ij[ok, 1], ij[ok, 0]] = False
    clearance = distance_transform_edt(free) * CELL - 0.5 * CELL
    tree = None if scene is None else _surface_tree(scene, np.array([*base[:2], sz]), reach + 0.5)
    return Workspace(base=np.asarray(base, float), support_z=sz, origin=origin, height=h, clearance=clearance,
                     ring=ring, sector=np.radians(sector_deg), surface=tree)


def sample_objects(ws: Workspace, rng: np.random.Generator, radii: list[float],
                   pair_dist: tuple[float, float] | None = None, tries: int = 200) -> np.ndarray:
    """(len(radii), 4) object poses x, y, z, yaw: on free support cells, apart by their radii plus GAP.

    `pair_dist` bounds the distance between the first two objects (e.g. a cube and the zone it is pushed to)."""
    cand = [ws.spots(r) for r in radii]
    for k, c in enumerate(cand):
        if not len(c):
            raise InputError(f"no room for a {2 * radii[k]:.2f} m object on the support surface within "
                             f"{ws.ring[1]:.2f} m of the robot; choose another --robot-pose or widen --ring")
    for _ in range(tries):
        xy = []
        for k, c in enumerate(cand):
            p = ws.cell_xy(c[rng.integers(len(c))]) + rng.uniform(-0.3, 0.3, 2) * CELL
            far = all(np.linalg.norm(p - q) >= radii[k] + radii[i] + GAP for i, q in enumerate(xy))
            if k == 1 and pair_dist is not None:
                far = far and pair_dist[0] <= np.linalg.norm(p - xy[0]) <= pair_dist[1]
            if not far:
                break
            xy.append(p)
        if len(xy) == len(radii):
            xy = np.array(xy)
            z = np.array([ws.rest_height(xy[k:k + 1], radii[k])[0] for k in range(len(radii))])
            yaw = rng.uniform(-np.pi, np.pi, len(radii))
            return np.column_stack([xy, z, yaw])
    raise InputError("could not place the task objects apart from each other within reach of the robot; "
                     "choose another --robot-pose or widen --ring")


def sample_target(ws: Workspace, rng: np.random.Generator, box: tuple[tuple[float, float], ...],
                  tries: int = 200) -> np.ndarray:
    """A reach target (3,) in the base-frame `box`, clear of the scan."""
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    p = ws.to_world(rng.uniform(lo, hi, (tries, 3)))
    ok = ws.target_clear(p)
    if not ok.any():
        raise InputError("no reach target clear of the scan in front of the robot; choose another --robot-pose")
    return p[np.argmax(ok)]


def segment_clearance(ws: Workspace, a: np.ndarray, b: np.ndarray) -> float:
    """Smallest clearance (m) of the free-cell map along the segment a -> b (xy)."""
    k = int(np.ceil(np.linalg.norm(b - a) / (0.5 * CELL))) + 1
    pts = a + np.linspace(0.0, 1.0, k)[:, None] * (b - a)
    ij = np.round((pts - ws.origin) / CELL).astype(int)
    n = ws.clearance.shape[0]
    if ((ij < 0) | (ij >= n)).any():
        return 0.0
    return float(ws.clearance[ij[:, 1], ij[:, 0]].min())


def max_height(ws: Workspace, a: np.ndarray, b: np.ndarray, radius: float) -> float:
    """Highest scan surface (or support) within `radius` of the segment a -> b (xy)."""
    k = int(np.ceil(np.linalg.norm(b - a) / CELL)) + 1
    pts = a + np.linspace(0.0, 1.0, k)[:, None] * (b - a)
    h = ws.rest_height(pts, radius) - LIFT
    return float(np.max(h))


def choose_base(scene, robot_points: np.ndarray, ring: tuple[float, float], sector_deg: float,
                base_radius: float, object_radius: float, plane: bool, collision=None, search: float = 1.0):
    """Base poses (x, y, z, yaw) on the support, best first (a generator): near its centre, with the most room
    for objects in front.

    Candidates lie on a 5 cm grid within `search` of the support centre where a disc of `base_radius` is free
    support, facing 8 directions; `robot_points` (the robot's collision surface at its home pose, base at the
    origin, yaw 0) must all stay above the height map of `collision` (the scene as the solver collides with
    it, see `collision_scene`; default the scan), so nothing of the robot is inside it or under a table top.
    Each scores the free spots for an object of `object_radius` in its ring and sector; among those within
    90 % of the best, the one nearest the centre and facing it most wins, once sim's own test (the one
    build_world applies) finds the robot clear of the scan and no robot point is inside a convex piece."""
    from scipy.ndimage import distance_transform_edt

    collision = scene if collision is None else collision
    sz, centre = float(scene.support_height), np.asarray(scene.support_center, dtype=np.float64)
    radius = search + ring[1] + 0.1
    origin, h = height_map(collision, centre, radius, sz, plane)
    free = np.abs(h - sz) <= FLAT_TOL
    clearance = distance_transform_edt(free) * CELL - 0.5 * CELL
    n = h.shape[0]
    spot = clearance >= object_radius + GAP
    step = int(round(0.05 / CELL))
    ii, jj = np.meshgrid(np.arange(0, n, step), np.arange(0, n, step), indexing="ij")
    ok = clearance[ii, jj] >= base_radius
    xy = origin + np.stack([jj[ok], ii[ok]], 1) * CELL
    near = np.linalg.norm(xy - centre, axis=1) <= search
    xy, bij = xy[near], np.stack([ii[ok][near], jj[ok][near]], 1)
    if not len(xy):
        raise InputError("no free spot for the robot on the scene's support surface near its centre; "
                         "pass --robot-pose x y z yaw")
    r = np.arange(ring[0], ring[1] + 1e-9, 2 * CELL)
    a = np.radians(np.linspace(-sector_deg, sector_deg, 31))
    R, A = np.meshgrid(r, a)
    rng = np.random.default_rng(0)
    pts = robot_points if len(robot_points) <= 400 else robot_points[rng.choice(len(robot_points), 400, False)]
    top = np.where(np.isnan(h), -np.inf, h)
    best = None
    for yaw in np.arange(8) * np.pi / 4:
        c, s_ = np.cos(yaw), np.sin(yaw)
        px = xy[:, :1] + c * pts[None, :, 0] - s_ * pts[None, :, 1]
        py = xy[:, 1:] + s_ * pts[None, :, 0] + c * pts[None, :, 1]
        pi_ = np.clip(np.round((py - origin[1]) / CELL).astype(int), 0, n - 1)
        pj_ = np.clip(np.round((px - origin[0]) / CELL).astype(int), 0, n - 1)
        clear = (sz + pts[None, :, 2] >= top[pi_, pj_] - ROBOT_TOL).all(1)
        di = np.round(R * np.sin(A + yaw) / CELL).astype(int).ravel()
        dj = np.round(R * np.cos(A + yaw) / CELL).astype(int).ravel()
        pi, pj = bij[:, :1] + di[None], bij[:, 1:] + dj[None]
        inside = (pi >= 0) & (pi < n) & (pj >= 0) & (pj < n)
        score = np.where(clear, (spot[np.clip(pi, 0, n - 1), np.clip(pj, 0, n - 1)] & inside).mean(1), -1.0)
        face = np.abs(np.angle(np.exp(1j * (np.arctan2(*(centre - xy).T[::-1]) - yaw))))
        rows = np.column_stack([score, np.linalg.norm(xy - centre, axis=1) + 0.1 * face / np.pi,
                                xy, np.full(len(xy), yaw)])
        best = rows if best is None else np.concatenate([best, rows])
    if best[:, 0].max() >= 0:
        good = best[best[:, 0] >= 0.9 * best[:, 0].max()]
        halfspaces = _halfspaces(collision) if collision is not scene else []
        for x, y, yaw in good[np.argsort(good[:, 1])][:MAX_CHECKS, 2:]:  # sim's own test, as build_world's
            c, s_ = np.cos(yaw), np.sin(yaw)
            p = robot_points @ np.array([[c, s_, 0.0], [-s_, c, 0.0], [0.0, 0.0, 1.0]]) + [x, y, sz]
            bad = penetrating(scene, p)
            in_piece = any(((p @ eq[:, :3].T + eq[:, 3]) < -ROBOT_TOL).all(1).any() for eq in halfspaces)
            if bad.sum() < max(3, 0.002 * len(bad)) and not in_piece:
                yield float(x), float(y), sz, float(yaw)
    raise InputError("no spot near the support's centre where the robot stands clear of the scan; "
                     "pass --robot-pose x y z yaw")


def _halfspaces(collision) -> list[np.ndarray]:
    """(F, 4) outward face planes (n . x + d <= 0 inside) of each convex piece of a `collision_scene`."""
    from scipy.spatial import ConvexHull, QhullError

    out = []
    for p in getattr(collision, "pieces", None) or []:
        try:
            out.append(ConvexHull(np.asarray(p, dtype=np.float64)).equations)
        except (QhullError, ValueError):
            continue
    return out
