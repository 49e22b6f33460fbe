"""Training the small geometry network on synthetic captures: VGGT's losses on analytic cases, the ground
truth's normalisation, a few optimiser steps that lower the loss, and `twin train-geometry` end to end (a
checkpoint `load_vggt` and `twin reconstruct --method vggt` read, resume, held-out scoring, bad inputs)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from spatial.feedforward.data import load_capture_frames, make_batch, normalise_sequence, sample_indices
from spatial.feedforward.geometry import encode_pose, unproject_depth
from spatial.feedforward.losses import LossWeights, camera_loss, geometry_loss, regression_loss
from twin_kit import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    from spatial.capture.synth import SynthConfig, synthesize_capture

    root = tmp_path_factory.mktemp("caps")
    return [synthesize_capture(SynthConfig(frames=8, width=96, height=72, seed=s), root / f"cap{s}") for s in (1, 2, 3)]


def test_camera_loss_is_zero_at_the_truth_and_weighs_late_rounds_more():
    target = torch.randn(2, 3, 9)
    w = LossWeights()
    assert float(camera_loss([target.clone()] * 4, target, w)["camera"]) == 0.0
    off = target + torch.tensor([0.1] * 3 + [0.0] * 6)                   # translation off by 0.1 everywhere
    late = camera_loss([target, target, target, off], target, w)          # only the last round wrong
    early = camera_loss([off, target, target, target], target, w)         # only the first round wrong
    assert float(late["translation"]) == pytest.approx(0.1 / 4)
    assert float(early["translation"]) == pytest.approx(0.1 * 0.6 ** 3 / 4)
    assert float(late["rotation"]) == float(late["fov"]) == 0.0


def test_confidence_term_is_smallest_where_confidence_matches_the_error():
    """|e| c - alpha log c is minimised at c = alpha / |e|: the network is paid for admitting uncertainty."""
    w = LossWeights(alpha=0.2)
    target = torch.ones(1, 1, 8, 8, 1)
    mask = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    pred = target + 0.05                                                  # |e| = 0.05 -> best c = 4
    losses = {c: float(regression_loss(pred, target, mask, torch.full((1, 1, 8, 8), c), w)["conf"])
              for c in (1.5, 4.0, 10.0)}
    assert losses[4.0] < losses[1.5] and losses[4.0] < losses[10.0]
    assert losses[4.0] == pytest.approx(0.05 * 4 - 0.2 * math.log(4), abs=1e-6)
    # the gradient term sees only how the error varies between neighbours: a constant offset costs nothing
    # beyond its confidence penalty, a checkerboard error does cost
    conf = torch.full((1, 1, 8, 8), 1.0)
    flat = regression_loss(pred, target, mask, conf, w)["grad"]
    board = target + 0.05 * ((torch.arange(8)[:, None] + torch.arange(8)) % 2).float()[None, None, ..., None]
    assert float(flat) == pytest.approx(0.0, abs=1e-7)
    assert float(regression_loss(board, target, mask, conf, w)["grad"]) > 0.01


def test_sequences_are_normalised_to_the_first_camera_and_unit_scale(captures):
    cap = load_capture_frames(captures[0], size=112)
    assert cap.images.shape == (8, 3, 84, 112) and cap.depth.shape == (8, 84, 112)
    seq = normalise_sequence(cap.extrinsics[[2, 4, 6]], cap.intrinsics[[2, 4, 6]], cap.depth[[2, 4, 6]])
    assert torch.allclose(seq["extrinsics"][0], torch.eye(3, 4), atol=1e-5)
    pts, mask = seq["world_points"], seq["mask"]
    assert float(pts[mask].norm(dim=-1).mean()) == pytest.approx(1.0, rel=1e-4)
    # the normalised points are the normalised depth unprojected with the normalised cameras
    again = unproject_depth(seq["depth"].double(), seq["extrinsics"].double(), seq["intrinsics"].double())
    assert torch.allclose(again[mask].float(), pts[mask], atol=1e-4)
    # and the same surface point seen by two frames lands in one place: frame 1's points, seen from frame 0's
    # camera (the world now), keep frame 0's depth scale
    assert float(seq["depth"][0][mask[0]].mean()) == pytest.approx(float(pts[0][mask[0]][:, 2].mean()), rel=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = sample_indices(8, 4, 3, rng)
        assert len(idx) == 4 and idx[0] >= 0 and idx[-1] < 8 and len(set(np.diff(idx))) == 1


def test_a_few_steps_lower_the_loss(captures):
    from spatial.feedforward import build_vggt, tiny_config
    from spatial.feedforward.train import evaluate_loss, learning_rate, train_step

    caps = [load_capture_frames(c, size=56) for c in captures]
    torch.manual_seed(0)
    model = build_vggt(tiny_config(enable_track=False))
    held = make_batch(caps, 2, 4, 2, np.random.default_rng(123))
    before = evaluate_loss(model, held)
    terms = geometry_loss(model.eval()(held["images"]), held)
    assert {"camera", "depth_conf", "depth_grad", "point_conf", "total"} <= set(terms)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    for step in range(12):
        for g in optimiser.param_groups:
            g["lr"] = learning_rate(step, 12, 2e-3, 2)
        out = train_step(model, optimiser, make_batch(caps, 2, 4, 2, rng), LossWeights(), "cpu")
        assert math.isfinite(out["total"])
    after = evaluate_loss(model, held)
    assert after < 0.8 * before, (before, after)


def _twin(*args):
    return subprocess.run([sys.executable, "-m", "twin_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_train_geometry_writes_weights_reconstruct_reads_and_scores_holdout(captures, tmp_path):
    from spatial.feedforward import load_vggt

    out = tmp_path / "runs" / "geometry" / "t"
    r = _twin("train-geometry", "--captures", captures[0], captures[1], "--out", out, "--steps", "4", "--size",
              "56", "--frames", "3", "--log-every", "2", "--save-every", "2", "--holdout", captures[2], "--no-sfm",
              "--threads", "1", "--quiet", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4 and summary["weights"] == str(out / "model.safetensors")
    model = load_vggt(out / "model.safetensors")
    assert model.cfg.img_size == 56 and model.track_head is None
    log = json.loads((out / "train.json").read_text())
    assert [h["step"] for h in log["history"]] == [2, 4] and log["image_size"] == [56, 42]
    held = summary["heldout"]["captures"]["cap3"]
    assert set(held) == {"vggt"} and "error" not in held["vggt"], held
    assert held["vggt"]["registered"] == 8 and math.isfinite(held["vggt"]["depth_absrel"])
    assert 0 <= held["vggt"]["auc30"] <= 100
    assert json.loads((out / "heldout.json").read_text())["mean"]["vggt"]["captures"] == 1
    # resume continues from step 4 to 6; without --resume or --overwrite the folder is refused
    r = _twin("train-geometry", "--captures", captures[0], "--out", out, "--steps", "6", "--size", "56",
              "--frames", "3", "--log-every", "2", "--resume", "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((out / "train.json").read_text())
    assert [h["step"] for h in log["history"]] == [2, 4, 6] and log["step"] == 6
    r = _twin("train-geometry", "--captures", captures[0], "--out", out, "--steps", "2", "--quiet")
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr


def test_train_geometry_refuses_bad_inputs_in_one_line(captures, tmp_path):
    from spatial.commands import TrainGeometryConfig
    from spatial.feedforward.train import run_train_geometry
    from twin_kit import InputError

    not_capture = tmp_path / "photos"
    not_capture.mkdir()
    out = tmp_path / "run"
    cases = [
        (dict(captures=[not_capture]), "not a synthetic capture"),
        (dict(captures=[captures[0]], frames=9), "fewer than --frames 9"),
        (dict(captures=[captures[0]], resume=True, out=not_capture), "not a geometry run"),
    ]
    for extra, message in cases:
        with pytest.raises(InputError, match=message):
            run_train_geometry(TrainGeometryConfig(**{"out": out, "steps": 1, "quiet": True, **extra}))
        assert not out.exists()                                   # refused before anything was written
    with pytest.raises(InputError, match="--size must be"):
        TrainGeometryConfig(captures=[captures[0]], out=out, size=50)
    r = _twin("train-geometry", "--captures", not_capture, "--out", out, "--quiet")
    assert r.returncode == 2 and "not a synthetic capture" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_encoded_truth_round_trips(captures):
    """The camera loss compares against encode_pose of the normalised truth: decoded again it gives the truth."""
    from spatial.feedforward.geometry import decode_pose

    cap = load_capture_frames(captures[1], size=112)
    seq = normalise_sequence(cap.extrinsics[:4], cap.intrinsics[:4], cap.depth[:4])
    enc = encode_pose(seq["extrinsics"], seq["intrinsics"], (84, 112))
    ext, K = decode_pose(enc.double(), (84, 112))
    assert torch.allclose(ext.float(), seq["extrinsics"], atol=1e-5)
    assert torch.allclose(K[:, 0, 0].float(), seq["intrinsics"][:, 0, 0], rtol=1e-5)
