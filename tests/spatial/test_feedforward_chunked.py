"""Long videos through the network in overlapping windows: window layout, the robust Sim(3) that joins them,
joining windows whose predictions are exactly consistent (a synthetic capture's true cameras and depth, each
window in its own first-camera world at its own scale, with noise and corrupted pixels) against the one-pass
answer, a chunked `twin reconstruct --method vggt` run against an unchunked one, and the precision paths."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from spatial.feedforward.align import robust_sim3, transform_points, weighted_umeyama
from spatial.feedforward.chunked import Predictions, confidence_ranks, join, windows
from twin_kit import torch_threads


def _sim3(seed: int, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    S = np.eye(4)
    S[:3, :3] = scale * Rotation.from_rotvec(rng.normal(0, 1.0, 3)).as_matrix()
    S[:3, 3] = rng.normal(0, 2.0, 3)
    return S


def test_windows_cover_the_sequence_with_the_asked_overlap():
    assert windows(10, 0, 8) == [(0, 10)] and windows(10, 12, 4) == [(0, 10)]
    assert windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    spans = windows(200, 24, 8)
    assert spans[0] == (0, 24) and spans[-1] == (176, 200) and all(b - a == 24 for a, b in spans)
    assert all(a2 <= b1 - 8 for (_, b1), (a2, _) in zip(spans, spans[1:]))   # every join shares >= 8 frames
    assert windows(11, 4, 2)[-1] == (7, 11)                                    # the last window moved back, full
    with pytest.raises(ValueError):
        windows(10, 4, 4)


def test_robust_sim3_recovers_a_known_similarity_despite_outliers():
    rng = np.random.default_rng(0)
    src = rng.uniform(-1, 1, (2000, 3))
    for seed, scale in [(1, 0.37), (2, 4.2)]:
        S = _sim3(seed, scale)
        dst = transform_points(S, src) + rng.normal(0, 0.002 * scale, src.shape)
        bad = rng.random(len(src)) < 0.35                                      # 35 % gross outliers
        dst[bad] += rng.normal(0, 1.5 * scale, (bad.sum(), 3))
        fit = robust_sim3(src, dst, weights=rng.uniform(0.5, 1.0, len(src)))
        assert np.abs(fit.S - S).max() < 2e-3 * max(1, scale), seed
        assert abs(fit.scale - scale) / scale < 1e-3
        assert fit.inliers[~bad].mean() > 0.98 and fit.inliers[bad].mean() < 0.05
        # the plain least-squares fit is pulled away by the same outliers
        assert np.abs(weighted_umeyama(src, dst) - S).max() > 20 * np.abs(fit.S - S).max()


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    from spatial.capture.synth import SynthConfig, load_ground_truth, synthesize_capture

    out = synthesize_capture(SynthConfig(frames=14, width=96, height=72, seed=5),
                             tmp_path_factory.mktemp("cap") / "c")
    return load_ground_truth(out)


def _truth(gt) -> Predictions:
    ext = np.stack([c.world_to_cam[:3] for c in gt.cameras])
    K = np.stack([c.K for c in gt.cameras])
    depth = np.stack([gt.depth(i) for i in range(len(gt.cameras))]).astype(np.float32)
    conf = 1 + (depth > 0).astype(np.float32) + np.random.default_rng(0).random(depth.shape).astype(np.float32)
    return Predictions(ext, K, depth, conf, confidence_ranks(conf))


def _as_window(truth: Predictions, a: int, b: int, scale: float, rng) -> Predictions:
    """What an exactly consistent network says about frames a..b-1: its world is frame a's camera, its unit
    1/scale metres; plus depth noise and a patch of wrong depth on every frame."""
    first = np.eye(4)
    first[:3] = truth.extrinsics[a]
    S = np.diag([scale, scale, scale, 1.0]) @ first                  # world -> window world
    win = truth.take(slice(a, b)).transformed(S)
    depth = win.depth * (1 + rng.normal(0, 0.002, win.depth.shape)).astype(np.float32)
    depth[:, 5:15, 5:25] *= 1.6                                       # confidently wrong pixels
    return Predictions(win.extrinsics, win.intrinsics, depth.astype(np.float32), win.confidence, win.rank)


def _centres(ext):
    return -np.einsum("sji,sj->si", ext[:, :, :3], ext[:, :, 3])


def test_joined_windows_agree_with_the_one_pass_cameras(capture):
    truth = _truth(capture)
    rng = np.random.default_rng(1)
    spans = windows(len(truth), 6, 2)
    assert len(spans) == 3
    scales = [0.7, 2.5, 0.2]
    placed = _as_window(truth, *spans[0], scales[0], rng)
    one_pass = truth.transformed(np.diag([scales[0]] * 3 + [1.0]) @ np.vstack([truth.extrinsics[0], [0, 0, 0, 1]]))
    records = []
    for (a, b), s in zip(spans[1:], scales[1:]):
        placed, rec = join(placed, _as_window(truth, a, b, s, rng), a, len(placed))
        records.append(rec)
    assert len(placed) == len(truth)
    assert [r["frames"] for r in records] == [list(s) for s in spans[1:]]
    # the joins undo each window's scale relative to the first: 0.7 / 2.5 and 0.7 / 0.2
    assert records[0]["scale"] == pytest.approx(0.7 / 2.5, rel=3e-3)
    assert records[1]["scale"] == pytest.approx(0.7 / 0.2, rel=3e-3)
    assert all(r["inlier_fraction"] > 0.8 for r in records)
    # every camera lands where the one-pass answer has it (same world: frame 0's camera, first window's unit)
    extent = np.ptp(_centres(one_pass.extrinsics), axis=0).max()
    err_c = np.linalg.norm(_centres(placed.extrinsics) - _centres(one_pass.extrinsics), axis=1).max() / extent
    R, R1 = placed.extrinsics[:, :, :3], one_pass.extrinsics[:, :, :3]
    err_r = np.degrees(np.arccos(np.clip((np.einsum("sij,sij->s", R, R1) - 1) / 2, -1, 1))).max()
    assert err_c < 3e-3 and err_r < 0.1, (err_c, err_r)
    # depth is in that unit too
    valid = one_pass.depth > 0
    assert np.median(np.abs(placed.depth[valid] / one_pass.depth[valid] - 1)) < 0.01


def test_precision_paths_cpu_fp32_and_the_autocast_trunk_with_fp32_heads():
    from spatial.feedforward import build_vggt, tiny_config
    from spatial.feedforward.runtime import attention_kernels, infer, trunk_autocast, trunk_dtype

    assert trunk_dtype("cpu") == torch.float32 and trunk_dtype("cuda", "fp32") == torch.float32
    assert trunk_dtype("cpu", "bf16") == torch.bfloat16
    assert attention_kernels("cpu") == "SDPA cpu float32"
    if torch.cuda.is_available():
        assert trunk_dtype("cuda") in (torch.bfloat16, torch.float16)
    torch.manual_seed(0)
    with torch_threads(1):
        model = build_vggt(tiny_config(enable_track=False)).eval()
        x = torch.rand(3, 3, 28, 42)
        seen = {}

        def record(name):
            return lambda module, args, out: seen.setdefault(name, set()).add(out.dtype)

        hooks = [model.aggregator.frame_blocks[0].attn.qkv.register_forward_hook(record("trunk")),
                 model.aggregator.global_blocks[-1].mlp.fc2.register_forward_hook(record("trunk")),
                 model.camera_head.pose_branch.fc2.register_forward_hook(record("heads")),
                 model.depth_head.scratch.output_conv2.register_forward_hook(record("heads"))]
        with torch.no_grad():
            ref = model(x)
            assert seen == {"trunk": {torch.float32}, "heads": {torch.float32}}
            seen.clear()
            with trunk_autocast("cpu", "bf16"):            # the CUDA path's autocast, on the CPU
                half = model(x)
        for h in hooks:
            h.remove()
        auto = infer(model, x, device="cpu")              # auto on the CPU: fp32 throughout
    assert seen == {"trunk": {torch.bfloat16}, "heads": {torch.float32}}   # bf16 trunk, fp32 heads
    assert half["depth"].dtype == half["pose_enc"].dtype == torch.float32
    assert torch.allclose(half["depth"], ref["depth"], rtol=0.1) and not torch.equal(half["depth"], ref["depth"])
    assert torch.equal(auto["depth"], ref["depth"]) and torch.equal(auto["pose_enc"], ref["pose_enc"])
