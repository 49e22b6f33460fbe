"""The flow-matching policy on a tiny real LeRobotDataset: shapes, overfitting a small batch, Euler sampling,
real-time chunking (the committed prefix is reproduced and the splice has no jump), save/load, and a trace of
inference with no data-dependent branches."""
from __future__ import annotations

import pytest
import torch
from support.policy_data import overfit_batch, training_batch, write_policy_dataset

from policies import ACTPolicy, FlowConfig, FlowPolicy, load_policy, make_policy, prefix_weights, read_dataset
from twin_kit import InputError, torch_threads

CHUNK = 8
TINY = dict(chunk_size=CHUNK, n_action_steps=4, image_size=64, backbone_width=0.25, dim=32, heads=2, ff_dim=64,
            n_layers=2, num_steps=10)
SAMPLES = [(0, 0), (0, 5), (0, 10), (1, 2), (1, 7), (1, 11)]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_policy_dataset(tmp_path_factory.mktemp("flow") / "ds")


@pytest.fixture(scope="module")
def trained(dataset):
    """A tiny flow policy overfitted on six samples: (policy, raw batch, loss before, loss after), the losses on
    one fixed draw of noise and training-distribution times."""
    with torch_threads(1):
        torch.manual_seed(0)
        policy = make_policy("flow", TINY, read_dataset(dataset))
        raw = training_batch(dataset, CHUNK, SAMPLES)
        batch = policy.preprocessor(raw)
        draws = [(torch.randn_like(batch["action"]), policy.sample_time(len(SAMPLES), "cpu")) for _ in range(8)]

        before, after = overfit_batch(policy, batch, 400, [{"noise": n, "tau": t} for n, t in draws])
    return policy.eval(), raw, before, after


def test_forward_and_sample_shapes(dataset):
    torch.manual_seed(0)
    policy = make_policy("flow", TINY, read_dataset(dataset))
    raw = training_batch(dataset, CHUNK, SAMPLES[:3])
    batch = policy.preprocessor(raw)
    loss, logs = policy.train()(batch)
    loss.backward()
    assert set(logs) == {"loss"} and policy.images.backbone.conv1.weight.grad is not None
    assert len(policy.encode_prefix(batch)) == 2 and policy.encode_prefix(batch)[0].shape == (3, 1 + 2 * 4, 32)
    policy.eval()
    g = torch.Generator().manual_seed(3)
    a = policy.infer(raw, generator=g)
    assert a.shape == (3, CHUNK, 4)
    assert torch.equal(policy.infer(raw, generator=torch.Generator().manual_seed(3)), a)  # seeded: repeatable
    assert not torch.equal(policy.infer(raw, generator=torch.Generator().manual_seed(4)), a)
    t = policy.sample_time(10_000, "cpu")
    assert 0.0 <= t.min() and t.max() <= 0.999 and 0.36 < t.mean() < 0.44  # 1 - (0.999 Beta(1.5, 1) + 0.001)


def test_tiny_flow_policy_overfits_a_small_batch(trained):
    policy, raw, before, after = trained
    assert after < before / 10, (before, after)
    batch = policy.preprocessor(raw)
    with torch.no_grad():
        chunk = policy.sample(batch, generator=torch.Generator().manual_seed(0))
    real = ~raw["action_is_pad"]
    assert (chunk - batch["action"]).abs()[real].mean() < 0.3  # normalised units: data spread is ~1


def test_prefix_weights_follow_the_rtc_schedule():
    w = prefix_weights(10, overlap=7, committed=2)
    assert w[:2].tolist() == [1.0, 1.0] and w[7:].tolist() == [0.0, 0.0, 0.0]
    assert bool((w[1:8].diff() < 0).all())  # strictly decaying across the soft part of the overlap
    c = 5 / 6
    assert w[2].item() == pytest.approx(c * (torch.tensor(c).exp().item() - 1) / (torch.e - 1), rel=1e-6)
    with pytest.raises(InputError, match="prefix_len"):
        prefix_weights(10, overlap=3, committed=4)


@pytest.mark.parametrize("vjp", [False, True])
def test_real_time_chunking_splices_without_a_jump(trained, vjp):
    policy, raw, _, _ = trained
    batch = policy.preprocessor(raw)
    committed, overlap, offset = 2, 7, 0.8
    with torch.no_grad():
        own = policy.sample(batch, generator=torch.Generator().manual_seed(1))
    # The previous chunk disagrees with what the policy would do now: offset in every dimension (normalised).
    previous = own[:, :overlap] + offset
    new = policy.sample(batch, generator=torch.Generator().manual_seed(1), prefix_actions=previous,
                        prefix_len=committed, vjp=vjp)
    assert (new[:, :committed] - previous[:, :committed]).abs().max() < 1e-4  # the committed actions stay
    # Steps beyond the policy's own motion: switching chunks outright jumps by the whole offset where the
    # committed actions end; the spliced chunk spreads it over the overlap.
    extra = ((new[:, 1:] - new[:, :-1]) - (own[:, 1:] - own[:, :-1])).abs()
    naive = (own[:, committed] - previous[:, committed - 1]) - (own[:, committed] - own[:, committed - 1])
    assert naive.abs().min() > offset - 1e-4
    assert extra.max() < 0.5 * offset, extra.amax(dim=(0, 2))
    # Past the overlap the chunk keeps to its own plan, bent a little toward the prefix (the model attends to it).
    assert (new[:, overlap:] - own[:, overlap:]).abs().max() < 0.4 * offset
    robot_units = policy.infer(raw, generator=torch.Generator().manual_seed(1),
                               prefix_actions=policy.postprocessor(previous), prefix_len=committed, vjp=vjp)
    assert torch.allclose(robot_units, policy.postprocessor(new), atol=1e-4)


def test_save_load_round_trip_is_exact(trained, tmp_path):
    policy, raw, _, _ = trained
    again = load_policy(policy.save_pretrained(tmp_path / "flow"))
    assert isinstance(again, FlowPolicy) and again.config == policy.config
    assert torch.equal(again.infer(raw, generator=torch.Generator().manual_seed(0)),
                       policy.infer(raw, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(InputError, match="holds a flow policy"):
        ACTPolicy.from_pretrained(tmp_path / "flow")
    assert FlowConfig(**TINY).to_json()["n_layers"] == 2


def test_inference_traces_without_data_dependent_branches(trained):
    policy, raw, _, _ = trained
    keys = ["observation.state", "observation.images.front", "observation.images.wrist"]

    class Infer(torch.nn.Module):  # noise and the committed prefix are inputs; RTC without the Jacobian term
        def __init__(self):
            super().__init__()
            self.policy = policy

        def forward(self, noise, prefix, *xs):
            return self.policy.infer(dict(zip(keys, xs, strict=True)), noise=noise, prefix_actions=prefix,
                                     prefix_len=2, vjp=False)

    def args(sl):
        n = sl.stop - sl.start
        return (torch.randn(n, CHUNK, 4), raw["action"][sl, :5]) + tuple(raw[k][sl] for k in keys)

    exported = torch.export.export(Infer(), args(slice(0, 2)), strict=False)
    other = args(slice(3, 5))
    assert torch.allclose(exported.module()(*other), Infer()(*other), atol=1e-4)


def test_aux_object_head_makes_the_prefix_locate_the_objects(tmp_path):
    """aux_weight: training adds the object queries' loss (read from the final prefix) on the standardised object
    xy, the head learns to locate the square from the frames, and neither validation's loss nor sampling depends
    on it; without recorded objects it is refused."""
    import math

    import numpy as np

    from policies import TrainConfig
    from policies.train.data import ChunkDataset, frame_table, open_sources
    from policies.train.dist import Processes
    from policies.train.frames import cache_frames

    root = write_policy_dataset(tmp_path / "ds", objects=True)
    sources, feats = open_sources(TrainConfig(dataset=[str(root)], out=str(tmp_path / "run"), val_episodes=0))
    table = frame_table(sources, CHUNK, objects=True)
    cache_frames(table, sources, feats.camera_keys, tmp_path / "cache", Processes())
    raw = ChunkDataset(table, np.arange(len(table))).batch(np.arange(0, len(table), 2))
    torch.manual_seed(0)
    policy = make_policy("flow", {**TINY, "aux_weight": 2.0}, feats)
    batch = policy.preprocessor(raw)
    draw = {"noise": torch.randn_like(batch["action"]), "tau": policy.sample_time(len(batch["action"]), "cpu")}
    _, logs = policy.train()(batch, **draw)
    assert set(logs) == {"flow", "aux", "loss"}
    assert math.isclose(logs["loss"], logs["flow"] + 2 * logs["aux"], rel_tol=1e-5)
    before = logs["aux"]
    overfit_batch(policy, batch, 200)   # leaves the policy in train mode
    with torch.no_grad():
        assert policy(batch, **draw)[1]["aux"] < before / 10, before
        policy.eval()
        loss, logs = policy(batch, **draw)
        assert set(logs) == {"loss"}
        chunk = policy.infer(raw, generator=torch.Generator().manual_seed(1))
        policy.aux_head.weight.add_(1.0)
        assert torch.equal(policy.infer(raw, generator=torch.Generator().manual_seed(1)), chunk)
    with pytest.raises(InputError, match="needs a dataset that records privileged.object_poses"):
        make_policy("flow", {**TINY, "aux_weight": 1.0}, read_dataset(write_policy_dataset(tmp_path / "plain")))


def test_state_dropout_hides_the_state_in_training_only(dataset):
    """state_dropout (shared with ACT): a dropped sample's prefix starts from the learned 'unknown' token, not its
    state (with every sample dropped, the training loss ignores the state), and sampling always reads the state."""
    torch.manual_seed(0)
    policy = make_policy("flow", {**TINY, "state_dropout": 1.0}, read_dataset(dataset))
    raw = training_batch(dataset, CHUNK, SAMPLES)
    moved = {**raw, "observation.state": raw["observation.state"] + 0.5}
    batch = policy.preprocessor(raw)
    draw = {"noise": torch.randn_like(batch["action"]), "tau": policy.sample_time(len(SAMPLES), "cpu")}
    policy.train()
    loss = policy(batch, **draw)[0]
    assert torch.equal(policy(policy.preprocessor(moved), **draw)[0], loss)
    loss.backward()
    assert policy.state_unknown.grad.abs().sum() > 0 and not policy.state_in.weight.grad.any()
    policy.eval()
    with torch.no_grad():
        g = [torch.Generator().manual_seed(2) for _ in range(2)]
        assert not torch.allclose(policy.infer(moved, generator=g[0]), policy.infer(raw, generator=g[1]))
