"""`--refine`: image tracks seeded by the network's geometry and pycolmap bundle adjustment. On a synthetic
capture whose true depth stands in for the network's and whose true cameras are disturbed (about 2 degrees
of relative rotation), the adjustment lowers the reprojection error and brings the cameras back towards the
truth; tracks avoid occlusion edges; too few tracks leave the network's cameras alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from spatial.evaluation.metrics import relative_pose_errors
from spatial.feedforward.align import similarity_scale, transform_points, weighted_umeyama
from spatial.feedforward.chunked import Predictions, confidence_ranks
from spatial.feedforward.refine import RefineConfig, build_tracks, refine_predictions, smooth_depth


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from spatial.capture.synth import SynthConfig, load_ground_truth, synthesize_capture

    gt = load_ground_truth(synthesize_capture(SynthConfig(frames=24, width=160, height=120, seed=2),
                                              tmp_path_factory.mktemp("cap") / "c"))
    n = 12
    images = torch.from_numpy(np.stack([gt.image(i) for i in range(n)])).permute(0, 3, 1, 2).float() / 255
    ext = np.stack([c.world_to_cam[:3] for c in gt.cameras[:n]])
    K = np.stack([c.K for c in gt.cameras[:n]])
    depth = np.stack([gt.depth(i) for i in range(n)]).astype(np.float32)
    return images, ext, K, depth


def _disturbed(ext: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = ext.copy()
    for i in range(1, len(ext)):
        out[i, :, :3] = Rotation.from_rotvec(rng.normal(0, np.radians(1.0), 3)).as_matrix() @ ext[i, :, :3]
        out[i, :, 3] = ext[i, :, 3] + rng.normal(0, 0.02, 3)
    return out


def _pose_errors(ext: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    def h(e):
        T = np.tile(np.eye(4), (len(e), 1, 1))
        T[:, :3] = e
        return T

    rot, trans = relative_pose_errors(h(ext), h(truth))
    return float(rot.mean()), float(trans.mean())


def _predictions(ext, K, depth) -> Predictions:
    conf = (1 + (depth > 0)).astype(np.float32)
    return Predictions(ext, K, depth, conf, confidence_ranks(conf))


def test_adjustment_lowers_the_reprojection_error_and_the_pose_error(scene):
    images, truth, K, depth = scene
    start = _disturbed(truth)
    refined, report = refine_predictions(images, _predictions(start, K, depth))
    assert "skipped" not in report and report["tracks"] > 300 and report["observations"] > 2 * report["tracks"]
    assert report["reprojection_px_after"] <= report["reprojection_px_before"]
    assert report["reprojection_px_after"] < 0.3 < 0.8 < report["reprojection_px_before"]
    rot0, trans0 = _pose_errors(start, truth)
    rot1, trans1 = _pose_errors(refined.extrinsics, truth)
    assert rot0 > 1.5 and trans0 > 3.0                        # what the disturbance did
    assert rot1 < 0.5 * rot0 and trans1 < 0.5 * trans0, (rot0, rot1, trans0, trans1)
    # intrinsics held, depth maps untouched, and the cameras kept at the depth maps' scale (metres here)
    assert np.array_equal(refined.intrinsics, K) and refined.depth is depth
    centres = lambda e: -np.einsum("sji,sj->si", e[:, :, :3], e[:, :, 3])  # noqa: E731
    fit = weighted_umeyama(centres(refined.extrinsics), centres(truth))
    assert abs(similarity_scale(fit) - 1) < 0.06              # what is left is the adjustment's own error
    residual = np.linalg.norm(transform_points(fit, centres(refined.extrinsics)) - centres(truth), axis=1)
    assert residual.max() < 0.04                              # metres, on a 1.5 m arc


def test_tracks_start_away_from_occlusion_edges(scene):
    images, truth, K, depth = scene
    edge = ~smooth_depth(depth[0], RefineConfig().edge_ratio)
    assert 0.02 < edge.mean() < 0.5                           # the table and walls give real edges
    tracks = build_tracks(images[:4], _predictions(truth[:4], K[:4], depth[:4]), RefineConfig(span=2))
    first = np.full(len(tracks), 99)
    np.minimum.at(first, tracks.track, tracks.frame)
    q = (tracks.frame == 0) & (first[tracks.track] == 0)
    px = np.round(tracks.uv[q]).astype(int)
    assert q.sum() > 50 and not edge[px[:, 1], px[:, 0]].any()
    assert np.bincount(tracks.track).min() >= 2               # every track is seen at least twice
    assert set(np.unique(tracks.frame)) == {0, 1, 2, 3}


def test_too_few_tracks_keep_the_network_cameras(scene):
    images, truth, K, depth = scene
    pred = _predictions(_disturbed(truth[:3]), K[:3], depth[:3])
    out, report = refine_predictions(images[:3], pred, RefineConfig(max_queries=3, min_tracks=20))
    assert out is pred and report["skipped"].startswith("only")
