"""Dense plane-sweep depth: accuracy on a ray-cast room, consistency filtering, source selection, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from support import box_room

from spatial.dense.mvs import (
    DepthConfig,
    _backproject,
    consistency_filter,
    depth_range,
    estimate_depths,
    select_sources,
)
from twin_kit.errors import InputError

CFG = DepthConfig(max_side=160, num_planes=48, threads=1)


@pytest.fixture(scope="module")
def room():
    return box_room.scene(n=6, width=160, height=120)


def _sparse(cams, depths, n=150):
    rng = np.random.default_rng(0)
    return np.concatenate([_backproject(c, d)[rng.choice(d.size, n)] for c, d in zip(cams, depths)])


def _abs_rel(results, gts):
    rel = np.concatenate([np.abs(r.depth - g)[r.depth > 0] / g[r.depth > 0] for r, g in zip(results, gts)])
    cov = np.mean([(r.depth > 0).mean() for r in results])
    return float(rel.mean()), float(cov)


def test_depth_matches_ray_cast_truth(room):
    _, cams, images, gts = room
    results = estimate_depths(images, cams, CFG, _sparse(cams, gts))
    assert len(results) == len(images)
    for r in results:
        assert r.depth.shape == (120, 160) and r.depth.dtype == np.float32
        assert r.confidence.min() >= 0 and r.confidence.max() <= 1
        assert np.all(r.confidence[r.depth == 0] == 0)
    abs_rel, coverage = _abs_rel(results, gts)
    assert abs_rel < 0.02, abs_rel
    assert coverage > 0.4, coverage


def test_depth_without_sparse_points_uses_geometry(room):
    _, cams, images, gts = room
    results = estimate_depths(images[:4], cams[:4], CFG, None)
    abs_rel, coverage = _abs_rel(results, gts[:4])
    assert abs_rel < 0.03, abs_rel
    assert coverage > 0.15, coverage


def test_ranges_cover_truth_and_sources_exclude_self(room):
    _, cams, _, gts = room
    pts = _sparse(cams, gts)
    ranges = [depth_range(c, pts, cams, i, CFG) for i, c in enumerate(cams)]
    for (near, far), g in zip(ranges, gts):
        assert near <= np.percentile(g, 2) and far >= np.percentile(g, 98)
    sources = select_sources(cams, CFG, pts, ranges)
    for i, s in enumerate(sources):
        assert i not in s and len(s) == min(CFG.num_sources, len(cams) - 1) and len(set(s)) == len(s)
    assert set(sources[0][:2]) == {1, 2}  # the nearest views along the arc overlap most


def test_consistency_filter_removes_injected_errors(room):
    _, cams, _, gts = room
    depths = [g.copy() for g in gts]
    depths[2][30:70, 40:100] *= 1.25  # a wrong patch that no other view supports
    sources = [[j for j in range(len(cams)) if j != i] for i in range(len(cams))]
    out, agree = consistency_filter(depths, cams, sources, CFG)
    assert (out[2][30:70, 40:100] > 0).mean() < 0.02  # (a wrong depth may hit another surface by chance)
    keep = np.ones_like(gts[2], bool)
    keep[25:75, 35:105] = False
    assert (out[2][keep] > 0).mean() > 0.5
    assert np.allclose(out[0][out[0] > 0], gts[0][out[0] > 0], rtol=0.01)
    assert agree[0].max() <= 1


def test_bad_inputs_raise_input_error(room):
    _, cams, images, gts = room
    with pytest.raises(InputError):
        estimate_depths([], [], CFG)
    with pytest.raises(InputError):
        estimate_depths(images[:1], cams[:1], CFG)
    with pytest.raises(InputError):
        estimate_depths(images[:3], cams[:2], CFG)
    with pytest.raises(InputError):
        estimate_depths(images[:2], cams[:2], CFG, np.array([[0.0, np.nan, 1.0]]))
    bad = [images[0].astype(np.float32), images[1]]
    with pytest.raises(InputError):
        estimate_depths(bad, cams[:2], CFG)
    from dataclasses import replace
    with pytest.raises(InputError):
        estimate_depths(images[:2], [replace(cams[0], fx=float("nan")), cams[1]], CFG)
    with pytest.raises(InputError):
        estimate_depths([images[0][:-1], images[1]], cams[:2], CFG)
