"""ACT on a tiny real LeRobotDataset: shapes, the CVAE loss, overfitting a small batch, temporal ensembling,
save/load, processors built from the dataset's statistics, and a trace with no data-dependent branches."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.policy_data import overfit_batch, training_batch, write_policy_dataset

from policies import (
    ACTConfig,
    ACTPolicy,
    Normalize,
    PretrainedPolicy,
    TemporalEnsembler,
    load_policy,
    make_config,
    make_policy,
    policy_features,
    read_dataset,
)
from twin_kit import InputError, torch_threads

CHUNK = 8
TINY = dict(chunk_size=CHUNK, n_action_steps=4, image_size=64, backbone_width=0.25, dim=32, heads=2, ff_dim=64,
            dropout=0.0, n_encoder_layers=1, n_vae_encoder_layers=1, latent_dim=8)
SAMPLES = [(0, 0), (0, 5), (0, 10), (1, 2), (1, 7), (1, 11)]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):  # tiny tensors: one thread beats a contended pool by far
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_policy_dataset(tmp_path_factory.mktemp("act") / "ds")


@pytest.fixture(scope="module")
def trained(dataset):
    """A tiny ACT overfitted on six samples of the dataset: (policy, raw batch, eval loss before, after)."""
    with torch_threads(1):
        torch.manual_seed(0)
        policy = make_policy("act", TINY, read_dataset(dataset))
        raw = training_batch(dataset, CHUNK, SAMPLES)
        before, after = overfit_batch(policy, policy.preprocessor(raw), 250)  # eval: latent 0, L1 only
    return policy.eval(), raw, before, after


def test_forward_shapes_and_loss_parts(dataset):
    torch.manual_seed(0)
    policy = make_policy("act", TINY, read_dataset(dataset))
    raw = training_batch(dataset, CHUNK, SAMPLES[:3])
    batch = policy.preprocessor(raw)
    assert batch["observation.images"].shape == (3, 2, 3, 64, 64)
    loss, logs = policy.train()(batch)
    assert set(logs) == {"l1", "kld", "loss"} and math.isclose(logs["loss"], logs["l1"] + 10 * logs["kld"],
                                                               rel_tol=1e-5)
    loss.backward()
    assert policy.images.backbone.conv1.weight.grad is not None and policy.vae_out.weight.grad is not None
    chunk = policy.eval().infer(raw)
    assert chunk.shape == (3, CHUNK, 4) and chunk.dtype == torch.float32
    with pytest.raises(InputError, match="action chunk is"):
        policy(policy.preprocessor({**raw, "action": raw["action"][:, :5]}))
    with pytest.raises(InputError, match="lacks the camera"):
        policy.infer({k: v for k, v in raw.items() if k != "observation.images.wrist"})


def test_padded_actions_do_not_count(dataset):
    torch.manual_seed(0)
    policy = make_policy("act", {**TINY, "use_vae": False}, read_dataset(dataset)).eval()
    raw = training_batch(dataset, CHUNK, [(0, 12)])  # 2 frames left in the episode: 6 padded actions
    assert raw["action_is_pad"].sum() == CHUNK - 2
    batch = policy.preprocessor(raw)
    base = policy(batch)[0]
    batch["action"][:, 2:] += 100.0
    assert torch.equal(policy(batch)[0], base)


def test_tiny_act_overfits_a_small_batch(trained):
    policy, raw, before, after = trained
    assert after < before / 10, (before, after)
    pred = policy.infer(raw)  # inference reproduces the demonstrated chunks
    real = ~raw["action_is_pad"]
    assert (pred - raw["action"]).abs()[real].mean() < 0.1 * raw["action"][real].abs().mean()


def test_save_load_round_trip_is_exact(trained, tmp_path):
    policy, raw, _, _ = trained
    path = policy.save_pretrained(tmp_path / "run" / "policy")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "stats.json"]
    again = load_policy(path)
    assert isinstance(again, ACTPolicy) and again.config == policy.config and not again.training
    assert torch.equal(again.infer(raw), policy.infer(raw))
    assert torch.equal(ACTPolicy.from_pretrained(path).preprocessor.state.scale, policy.preprocessor.state.scale)
    policy.save_pretrained(path)  # a later save replaces the earlier one
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a saved policy"):
        policy.save_pretrained(tmp_path / "other")
    with pytest.raises(InputError, match="not a saved Twin policy"):
        PretrainedPolicy.from_pretrained(tmp_path / "other")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match="model.safetensors: cannot read"):
        load_policy(path)


def test_temporal_ensembling_weights():
    coeff, t = 0.5, 4
    ens = TemporalEnsembler(coeff, t)
    # chunk k predicts value 10 k + j for step k + j: step s collects 10 k + (s - k) from chunks k <= s.
    chunks = [torch.tensor([[[10.0 * k + j] for j in range(t)]], dtype=torch.float64) for k in range(6)]
    w = [math.exp(-coeff * i) for i in range(t)]
    for s, chunk in enumerate(chunks):
        got = ens.update(chunk).item()
        preds = [10.0 * k + (s - k) for k in range(max(0, s - t + 1), s + 1)]  # oldest first
        want = sum(wi * p for wi, p in zip(w, preds, strict=False)) / sum(w[:len(preds)])
        assert got == pytest.approx(want, abs=1e-9), s
    ens.reset()
    assert ens.update(chunks[3]).item() == 30.0  # fresh: only the new chunk's first action
    both = TemporalEnsembler(0.0, 2)  # coeff 0: plain mean; environments reset one at a time
    both.update(torch.tensor([[[1.0], [2.0]], [[5.0], [6.0]]]))
    both.reset(torch.tensor([False, True]))
    assert both.update(torch.tensor([[[4.0], [9.0]], [[7.0], [8.0]]]))[:, 0].tolist() == [3.0, 7.0]


def test_normalisers_from_dataset_stats(dataset):
    feats = policy_features(read_dataset(dataset), cameras=["front"])
    assert feats.camera_keys == ["observation.images.front"] and feats.state_dim == 4
    st = feats.stats["observation.state"]
    x = torch.tensor(np.array([st["mean"], st["max"]]), dtype=torch.float32)
    for mode in ("mean_std", "min_max", "quantile", "identity"):
        n = Normalize(st, mode, 4)
        assert torch.allclose(n.inverse(n(x)), x, atol=1e-6), mode
    assert torch.allclose(Normalize(st, "min_max", 4)(x)[1], torch.ones(4))
    const = Normalize({"mean": [2.0], "std": [0.0]}, "mean_std", 1)  # never amplified
    assert const(torch.tensor([2.5])).item() == 0.5
    with pytest.raises(InputError, match="no camera 'top'"):
        policy_features(read_dataset(dataset), cameras=["top"])
    with pytest.raises(InputError, match="needs the statistics q01"):
        Normalize({"mean": [0.0]}, "quantile", 1)


def test_configs_are_registered_and_checked():
    cfg = make_config("act", dim=64, heads=4)
    assert isinstance(cfg, ACTConfig) and cfg.dim == 64 and cfg.chunk_size == ACTConfig().chunk_size
    with pytest.raises(InputError, match="unknown ACTConfig field"):
        make_config("act", dimension=64)
    with pytest.raises(InputError, match="multiple of heads"):
        ACTConfig(dim=36, heads=8)
    with pytest.raises(InputError, match="unknown policy"):
        make_config("diffusion")
    with pytest.raises(InputError, match="backbone_width 1.0"):
        ACTConfig(backbone_weights="resnet18.pth")


def test_inference_traces_without_data_dependent_branches(trained):
    policy, raw, _, _ = trained
    keys = ["observation.state", "observation.images.front", "observation.images.wrist"]

    class Infer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.policy = policy

        def forward(self, *xs):
            return self.policy.infer(dict(zip(keys, xs, strict=True)))

    args = tuple(raw[k][:2] for k in keys)
    exported = torch.export.export(Infer(), args, strict=False)
    other = tuple(raw[k][3:5] for k in keys)
    assert torch.allclose(exported.module()(*other), policy.infer({k: raw[k][3:5] for k in keys}), atol=1e-5)


def test_aux_object_head_learns_where_the_objects_are(dataset, tmp_path):
    """aux_weight: training adds the object queries' loss on the standardised object xy that the training data
    gives (the front square's centre here), the head learns to locate the square from the frames, and neither
    validation's eval-mode loss nor inference depends on it; without recorded objects it is refused."""
    from policies import TrainConfig
    from policies.train.data import ChunkDataset, frame_table, open_sources
    from policies.train.dist import Processes
    from policies.train.frames import cache_frames

    root = write_policy_dataset(tmp_path / "ds", objects=True)
    sources, feats = open_sources(TrainConfig(dataset=[str(root)], out=str(tmp_path / "run"), val_episodes=0))
    assert feats.objects == ["square"]
    table = frame_table(sources, CHUNK, objects=True)
    assert table.objects.shape == (len(table), 1, 2)
    np.testing.assert_allclose(table.objects.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(table.objects.std(0), 1.0, atol=1e-4)
    cache_frames(table, sources, feats.camera_keys, tmp_path / "cache", Processes())
    raw = ChunkDataset(table, np.arange(len(table))).batch(np.arange(0, len(table), 2))
    torch.manual_seed(0)
    policy = make_policy("act", {**TINY, "aux_weight": 2.0}, feats)
    batch = policy.preprocessor(raw)
    _, logs = policy.train()(batch)
    assert set(logs) == {"l1", "kld", "aux", "loss"}
    assert math.isclose(logs["loss"], logs["l1"] + 10 * logs["kld"] + 2 * logs["aux"], rel_tol=1e-5)
    before = logs["aux"]
    overfit_batch(policy, batch, 200)   # leaves the policy in train mode
    with torch.no_grad():
        assert policy(batch)[1]["aux"] < before / 10, before
        policy.eval()
        loss, logs = policy(batch)
        assert "aux" not in logs and math.isclose(float(loss), logs["l1"], rel_tol=1e-6)
        chunk = policy.infer(raw)
        policy.aux_head.weight.add_(1.0)
        assert torch.equal(policy.infer(raw), chunk)
    with pytest.raises(InputError, match="needs a dataset that records privileged.object_poses"):
        make_policy("act", {**TINY, "aux_weight": 1.0}, read_dataset(dataset))
    plain = TrainConfig(dataset=[str(dataset)], out=str(tmp_path / "run2"), val_episodes=0)
    with pytest.raises(InputError, match="has no privileged.object_poses"):
        frame_table(open_sources(plain)[0], CHUNK, objects=True)


def test_state_dropout_hides_the_state_in_training_only(dataset):
    """state_dropout: a dropped sample is decoded from the learned 'unknown' token, not its state (with every
    sample dropped, the training loss ignores the state), and inference always reads the state."""
    torch.manual_seed(0)
    policy = make_policy("act", {**TINY, "state_dropout": 1.0, "use_vae": False, "dropout": 0.0},
                         read_dataset(dataset))
    raw = training_batch(dataset, CHUNK, SAMPLES)
    moved = {**raw, "observation.state": raw["observation.state"] + 0.5}
    policy.train()
    loss = policy(policy.preprocessor(raw))[0]
    assert torch.equal(policy(policy.preprocessor(moved))[0], loss)
    loss.backward()
    assert policy.state_unknown.grad.abs().sum() > 0 and not policy.state_in.weight.grad.any()
    policy.eval()
    with torch.no_grad():
        assert not torch.allclose(policy.infer(moved), policy.infer(raw))
