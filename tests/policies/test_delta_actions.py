"""Delta actions (`action_space="delta"`): the model predicts each chunk as offsets from the joints observed at its
start; the processors convert both ways, so training targets, `infer`, the ONNX graph and real-time chunking's
prefix all stay in robot units outside the model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from support.policy_data import overfit_batch, training_batch, write_policy_dataset

from policies import export_onnx, make_policy, read_dataset
from policies.features import ACTION, ACTION_DELTA, STATE
from policies.processor import delta_stats
from twin_kit import InputError, torch_threads

CHUNK = 8
COMMON = dict(chunk_size=CHUNK, n_action_steps=4, image_size=64, backbone_width=0.25, dim=32, heads=2, ff_dim=64,
              dropout=0.0, action_space="delta")
TINY = {"act": {**COMMON, "n_encoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 8},
        "flow": {**COMMON, "n_layers": 2, "num_steps": 3}}
SAMPLES = [(0, 0), (0, 5), (0, 10), (1, 2), (1, 7), (1, 11)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_policy_dataset(tmp_path_factory.mktemp("delta") / "ds")


def test_the_offsets_statistics_are_of_actions_minus_the_observed_joints(dataset):
    view = read_dataset(dataset)
    policy = make_policy("act", TINY["act"], view)
    stats = policy.features.stats[ACTION_DELTA]
    cols = [view.episode_frames(e) for e in range(view.total_episodes)]
    offsets = []
    for c in cols:   # the toy dataset's state and action are the same 4 joints, in the same order
        for t in range(len(c[ACTION])):
            window = c[ACTION][t:t + CHUNK]
            offsets.append(window - c[STATE][t])
    x = np.concatenate(offsets)
    np.testing.assert_allclose(stats["mean"], x.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["std"], x.std(0), atol=1e-6)
    assert stats == delta_stats(((c[STATE], c[ACTION]) for c in cols), CHUNK, policy.features)
    with pytest.raises(InputError, match="action.delta"):   # without them a delta policy cannot normalise
        make_policy("act", TINY["act"], policy.features.__class__(**{**policy.features.__dict__, "stats": {
            k: v for k, v in policy.features.stats.items() if k != ACTION_DELTA}}))


@pytest.mark.parametrize("kind", ["act", "flow"])
def test_a_tiny_delta_policy_overfits_and_answers_in_robot_units(dataset, kind, tmp_path):
    with torch_threads(1):
        torch.manual_seed(1)
        policy = make_policy(kind, TINY[kind], read_dataset(dataset))
        raw = training_batch(dataset, CHUNK, SAMPLES)
        batch = policy.preprocessor(raw)
        # the training target is the chunk minus the state it starts from, normalised
        offsets = raw[ACTION] - raw[STATE][:, None, :]
        torch.testing.assert_close(batch[ACTION], policy.preprocessor.action(offsets))
        draws = [{}] if kind == "act" else [{"noise": torch.randn(6, CHUNK, 4, generator=torch.Generator()
                                                                   .manual_seed(i)), "tau": torch.full((6,), 0.5)}
                                             for i in range(3)]
        before, after = overfit_batch(policy, batch, 300, draws if kind == "flow" else None)
        assert after < before / 10, (before, after)
        policy.eval()
        obs = {k: v for k, v in raw.items() if k.startswith("observation.")}
        chunks = policy.infer(obs)
        # robot units: near the recorded chunk (what an absolute policy would give), far from the offsets
        err = (chunks - raw[ACTION]).abs().mean().item()
        assert err < 0.5 * (raw[ACTION] - raw[STATE][:, None, :]).abs().mean().item() + 0.02, err
        # the same arithmetic in ONNX, the observed state included
        onnx = export_onnx(policy, tmp_path / "p.onnx")
        assert onnx["max_abs_error"] < 1e-4, onnx
