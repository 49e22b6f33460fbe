"""Real data: the 184-frame bird capture reconstructs with >= 95 % registered and AUC@30 >= 90 vs its reference."""
import json
import subprocess
import sys

import pytest
import trimesh

from spatial.bundle import read_bundle


@pytest.fixture(scope="module")
def bird_bundle(bird_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bird") / "bird"
    r = subprocess.run([sys.executable, "-m", "twin_cli", "reconstruct", str(bird_dir / "images"), "--out", str(out),
                        "--quiet", "--json"], capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_bird_registers_and_matches_reference(bird_bundle, bird_dir):
    out, summary = bird_bundle
    assert summary["frames"] == 184 and summary["registered"] >= 0.95 * 184
    r = subprocess.run([sys.executable, "-m", "twin_cli", "eval-poses", str(out), "--reference",
                        str(bird_dir / "sparse" / "0"), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["registered_fraction"] >= 0.95
    assert m["rra_auc30"] >= 90 and m["rta_auc30"] >= 90, m


def test_bird_mesh_holds_desk_and_bird(bird_bundle):
    """Rays from the capture cameras towards the scene centre hit the bird, standing above the desk plane z = 0;
    rays cast straight down beside it hit the desk."""
    import numpy as np

    out, _ = bird_bundle
    b = read_bundle(out)
    assert not b.metric and b.manifest["scale"]["source"] == "arbitrary"
    mesh = trimesh.load(out / "collision.ply")
    assert len(mesh.faces) > 5000
    pts = trimesh.load(out / "points.ply").vertices
    centre = np.median(pts, axis=0)
    height = np.percentile(pts[:, 2], 98)
    assert height > 0, "the bird stands above the support plane"
    cams = np.stack([c.center for c in b.cameras[::8]])
    dirs = centre - cams
    dist = np.linalg.norm(dirs, axis=1)
    hits, idx, _ = mesh.ray.intersects_location(cams, dirs / dist[:, None], multiple_hits=False)
    assert len(idx) >= 0.8 * len(cams)
    travelled = np.linalg.norm(hits - cams[idx], axis=1)
    assert (travelled < dist[idx]).mean() > 0.85 and (hits[:, 2] > 0.1 * height).mean() > 0.9
    radius = np.median(np.linalg.norm(cams[:, :2] - centre[:2], axis=1))
    top = height * 5 + 1.0
    origins = np.array([[centre[0] + 0.5 * radius * np.cos(a), centre[1] + 0.5 * radius * np.sin(a), top]
                        for a in np.linspace(0, 6, 6)])
    hits, idx, _ = mesh.ray.intersects_location(origins, np.tile([0, 0, -1.0], (len(origins), 1)),
                                                multiple_hits=False)
    assert len(idx) >= 5 and np.abs(hits[:, 2]).max() < 0.05 * height, hits
