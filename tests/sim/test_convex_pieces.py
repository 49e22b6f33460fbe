"""Real scans on MuJoCo's C core: a reconstructed bird scan is decomposed into convex pieces once (CoACD), the
pieces are stored in its bundle and reused, an edited mesh makes them stale, and a cube dropped on them comes to
rest on the scan's own surface.

The scan is the bird capture reconstructed from its reference poses at low resolution (8 depth frames at 200
px, about 20 s): a 21k-triangle TSDF mesh of the figurine on its desk, not a union of convex parts.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import trimesh

SCALE = 0.0566                 # metres per unit of the bird reconstruction (the figurine ~10 cm tall)
CUBE = 0.02                    # half side (m): the 4 cm, 64 g cube


def fast_cfg():
    """Coarse CoACD settings (a second or so here) for the bookkeeping tests; the physics test uses the defaults."""
    from spatial import ConvexConfig

    return ConvexConfig(threshold=0.2, preprocess_resolution=30)


@pytest.fixture(scope="module")
def bird_scan(bird_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "bird"
    r = subprocess.run([sys.executable, "-m", "twin_cli", "reconstruct", str(bird_dir / "sparse" / "0"), "--out",
                        str(out), "--max-side", "320", "--depth-frames", "8", "--depth-max-side", "200",
                        "--mesh-triangles", "20000", "--quiet", "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture
def spy_coacd(monkeypatch):
    """Count CoACD runs: a wrapper that calls the real run_coacd."""
    import coacd

    calls = []
    real = coacd.run_coacd

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(coacd, "run_coacd", counted)
    return calls


def surface_z(mesh: trimesh.Trimesh, xy: np.ndarray) -> np.ndarray:
    """Height of the first surface straight down at each xy (NaN where the rays miss)."""
    xy = np.atleast_2d(xy)
    origins = np.c_[xy, np.full(len(xy), mesh.bounds[1, 2] + 1.0)]
    loc, idx, _ = mesh.ray.intersects_location(origins, np.tile([0, 0, -1.0], (len(xy), 1)), multiple_hits=False)
    z = np.full(len(xy), np.nan)
    z[idx] = loc[:, 2]
    return z


def flat_desk_spots(scene, mesh: trimesh.Trimesh, count: int = 8) -> list[tuple[np.ndarray, float]]:
    """`count` xy spots 5-15 cm around the support centre (the bird), 7 cm apart, where the cube's whole footprint
    is flat scan (within 1 mm), with the scan's height there."""
    corners = np.array([[0, 0], [1, 1], [-1, 1], [1, -1], [-1, -1]]) * CUBE
    candidates = []
    for r in np.linspace(0.05, 0.15, 11):
        for a in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            p = scene.support_center + r * np.array([np.cos(a), np.sin(a)])
            z = surface_z(mesh, p + corners)
            if np.isfinite(z).all() and np.ptp(z) < 0.001:
                candidates.append((p, float(z.max())))
    spots = []
    for i in np.random.default_rng(0).permutation(len(candidates)):
        if all(np.linalg.norm(candidates[i][0] - q) > 0.07 for q, _ in spots):
            spots.append(candidates[i])
    assert len(spots) >= count, f"only {len(spots)} separate flat desk spots"
    return spots[:count]


def test_cube_rests_on_the_decomposed_scan(bird_scan, tmp_path):
    """`--solver auto` takes mujoco_cpu for the scan (the prisms it used to need are far beyond the limit), the
    pieces are computed once with CoACD's defaults, and 8 cubes dropped 4 cm onto the desk come to rest within
    5 mm of the original mesh's surface (a ray cast down at each cube's final xy), all at one height: a box on
    a desk piece whose top was left as many slightly tilted facets got a single contact point and sank by up
    to 4 mm, by a different amount at every spot."""
    import mujoco

    from sim.physics.mujoco_batch import AUTO_MAX_PIECES, scene_piece_count
    from sim.physics.scene_mesh import load_scene
    from sim.physics.world import BoxObject, WorldConfig, body_poses, build_world, step
    from twin_kit import qrot

    bundle = shutil.copytree(bird_scan, tmp_path / "bird")
    scene = load_scene(bundle, SCALE)
    assert scene_piece_count(scene.vertices, scene.faces) > AUTO_MAX_PIECES     # non-convex: a prism a triangle
    mesh = scene.trimesh()
    drops = flat_desk_spots(scene, mesh)
    cubes = [BoxObject(half=(CUBE,) * 3, pos=(p[0], p[1], z + CUBE + 0.04), mass=0.064) for p, z in drops]
    w = build_world(WorldConfig(scene=str(bundle), scale=SCALE, robot=None, objects=cubes))
    assert w.cfg.solver == "mujoco_cpu" and w.scene.pieces_origin == "computed"
    assert 1 <= len(w.scene.pieces) <= 50
    m = mujoco.MjModel.from_xml_string(w.solver.mjcf)
    assert sum(m.geom(g).name.startswith("scene_piece") for g in range(m.ngeom)) == len(w.scene.pieces)
    step(w, 100)                                                          # 1 s: fallen and settled
    settled = body_poses(w)[0, w.object_bodies, :3].astype(np.float64)
    step(w, 50)
    poses = body_poses(w)[0].astype(np.float64)
    moved = np.linalg.norm(poses[w.object_bodies, :3] - settled, axis=1)
    assert moved.max() < 0.001, moved                                     # at rest: < 1 mm in the last 0.5 s
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * CUBE
    gaps = []
    for body, (start, _) in zip(w.object_bodies, drops):
        pos, quat = poses[body, :3], poses[body, 3:]
        bottom = (pos + qrot(np.broadcast_to(quat, (8, 4)), corners))[:, 2].min()
        below = surface_z(mesh, pos[:2])[0]
        assert abs(bottom - below) < 0.005, (start, pos, bottom, below)
        assert np.linalg.norm(pos[:2] - start) < 0.01                     # landed where dropped, did not slide off
        gaps.append(bottom - below)
    assert np.ptp(gaps) < 0.0005, gaps                                    # one resting height on the flat desk


def test_pieces_stored_reused_and_recomputed_when_stale(bird_scan, tmp_path, spy_coacd, capfd):
    """The first load computes and stores the pieces (one CoACD run, one info line); a second load, at another
    scale, reads them back without CoACD and without rewriting the file; an edited collision mesh, or a damaged
    pieces file, makes them recomputed, and the new pieces cover the edit."""
    from sim.physics.scene_mesh import load_scene
    from spatial import BundlePaths, read_bundle, read_collision_pieces

    bundle = shutil.copytree(bird_scan, tmp_path / "bird")
    paths = BundlePaths(bundle)
    first = load_scene(bundle, SCALE)
    pieces = first.convex_pieces(fast_cfg())
    assert first.pieces_origin == "computed" and len(spy_coacd) == 1
    err = capfd.readouterr().err
    assert "decomposing" in err and "CoACD" in err and "stored in" in err
    assert paths.collision_pieces.name in read_bundle(bundle).manifest["files"]
    stat = paths.collision_pieces.stat()
    stored = read_collision_pieces(paths.collision_pieces)
    assert stored.params == fast_cfg().params() and stored.method_version and len(stored.pieces) == len(pieces)

    again = load_scene(bundle, 2 * SCALE)
    assert len(again.convex_pieces(fast_cfg())) == len(pieces)
    assert again.pieces_origin == "stored" and len(spy_coacd) == 1
    assert "decomposing" not in capfd.readouterr().err
    assert all(np.allclose(a, 2 * b) for a, b in zip(again.pieces, pieces))   # stored in scene units
    assert paths.collision_pieces.stat().st_ino == stat.st_ino                 # not rewritten

    mesh = trimesh.load(paths.collision, process=False)
    lo, hi = mesh.bounds
    post = trimesh.creation.box(extents=(0.3, 0.3, 4.0))                       # a post far taller than the bird
    post.apply_translation((lo[0] + 0.3, lo[1] + 0.3, 2.0))
    trimesh.util.concatenate([mesh, post]).export(paths.collision)
    edited = load_scene(bundle, SCALE)
    assert len(edited.convex_pieces(fast_cfg())) >= 1
    assert edited.pieces_origin == "computed" and len(spy_coacd) == 2
    assert "changed" in capfd.readouterr().err
    assert max(p[:, 2].max() for p in edited.pieces) > 3.5 * SCALE                # the post is in the pieces
    assert read_collision_pieces(paths.collision_pieces).mesh_sha256 != stored.mesh_sha256

    paths.collision_pieces.write_bytes(b"not an npz")
    damaged = load_scene(bundle, SCALE)
    damaged.convex_pieces(fast_cfg())
    assert damaged.pieces_origin == "computed" and len(spy_coacd) == 3
    assert load_scene(bundle, SCALE).convex_pieces(fast_cfg()) and len(spy_coacd) == 3


def test_plain_mesh_file_pieces_go_to_the_user_cache(bird_scan, tmp_path, spy_coacd, monkeypatch):
    """A mesh file outside a bundle gets its pieces cached under $TWIN_CACHE (keyed by its geometry), nothing is
    written beside it, and a convex-parts mesh (a box table) needs no CoACD at all."""
    from sim.physics.scene_mesh import load_scene

    monkeypatch.setenv("TWIN_CACHE", str(tmp_path / "cache"))
    mesh = trimesh.load(bird_scan / "collision.ply", process=False)
    mesh.apply_scale(SCALE)
    (tmp_path / "scan").mkdir()
    ply = tmp_path / "scan" / "desk.ply"
    mesh.export(ply)
    first = load_scene(ply)
    first.convex_pieces(fast_cfg())
    assert first.pieces_origin == "computed" and len(spy_coacd) == 1
    assert [p.name for p in (tmp_path / "scan").iterdir()] == ["desk.ply"]
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1
    second = load_scene(ply)
    second.convex_pieces(fast_cfg())
    assert second.pieces_origin == "stored" and len(spy_coacd) == 1
    assert all(np.allclose(a, b) for a, b in zip(first.pieces, second.pieces))

    table = trimesh.creation.box(extents=(1.2, 0.8, 0.75))
    table.export(tmp_path / "table.ply")
    boxy = load_scene(tmp_path / "table.ply")
    assert len(boxy.convex_pieces()) == 1 and boxy.pieces_origin == "convex" and len(spy_coacd) == 1


def test_a_thin_ragged_slab_is_made_flat_and_thick_for_mujoco():
    """What CoACD makes of a scanned desk, a 3 mm slab whose top wobbles by 0.1 mm: in MuJoCo a 4 cm box resting
    on it gets one contact and sinks ~4 mm; `physical_pieces` flattens the top (raised to its highest point)
    and sweeps the slab down to 2 cm, and the box gets its four corners and rests on the top."""
    import mujoco

    from sim.physics.mujoco_batch import PRISM_DEPTH, physical_pieces

    rng = np.random.default_rng(0)
    xy = np.vstack([rng.uniform(-0.15, 0.15, (40, 2)), [[-0.15, -0.15], [0.15, -0.15], [-0.15, 0.15], [0.15, 0.15]]])
    top = np.c_[xy, 0.003 + rng.uniform(0, 1e-4, len(xy))]
    slab = np.vstack([top, np.c_[xy, np.zeros(len(xy))]])
    (ready,) = physical_pieces([slab])
    assert ready[:, 2].max() == top[:, 2].max() and ready[:, 2].min() < top[:, 2].max() - 0.95 * PRISM_DEPTH

    def rest(piece: np.ndarray, x: float, y: float) -> tuple[int, float]:
        z = piece[:, 2].max() + CUBE
        xml = (f'<mujoco><option timestep="0.005"><flag multiccd="enable"/></option><asset><mesh name="s" '
               f'vertex="{" ".join(map(repr, piece.ravel().tolist()))}"/></asset><worldbody><geom type="mesh" '
               f'mesh="s"/><body pos="{x} {y} {z}"><freejoint/><geom type="box" size="{CUBE} {CUBE} {CUBE}" '
               f'mass="0.064"/></body></worldbody></mujoco>')
        m = mujoco.MjModel.from_xml_string(xml)
        d = mujoco.MjData(m)
        mujoco.mj_step(m, d, 200)
        return d.ncon, d.qpos[2] - z

    for x, y in [(0.05, 0.02), (-0.08, 0.07), (0.1, -0.1)]:
        n_raw, sink_raw = rest(slab, x, y)
        n, sink = rest(ready, x, y)
        assert n_raw == 1 and sink_raw < -0.003                            # the failure this guards against
        assert n == 4 and abs(sink) < 0.0005


def test_pieces_file_round_trip_and_refusals(tmp_path):
    """The bundle's pieces file reads back what was written; another layout version or a damaged file is a
    BundleError (which load_scene answers by recomputing)."""
    import io
    import json

    from spatial import BundleError, CollisionPieces, read_collision_pieces, write_collision_pieces

    rng = np.random.default_rng(0)
    pieces = [rng.normal(size=(k, 3)) for k in (4, 9, 30)]
    path = tmp_path / "pieces.npz"
    write_collision_pieces(path, CollisionPieces(pieces=pieces, mesh_sha256="ab" * 32, params={"threshold": 0.1},
                                                 method_version="1.0.14", seconds=2.5))
    back = read_collision_pieces(path)
    assert [p.shape for p in back.pieces] == [(4, 3), (9, 3), (30, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(back.pieces, pieces))
    assert (back.mesh_sha256, back.params, back.method_version, back.seconds) == ("ab" * 32, {"threshold": 0.1},
                                                                                 "1.0.14", 2.5)
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["meta"] = np.array(json.dumps({**json.loads(str(arrays["meta"])), "version": 99}))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    with pytest.raises(BundleError, match="layout version 99"):
        read_collision_pieces(path)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(BundleError, match="damaged convex pieces"):
        read_collision_pieces(path)
    with pytest.raises(BundleError, match="no convex pieces"):
        read_collision_pieces(tmp_path / "missing.npz")
