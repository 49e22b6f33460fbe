"""The consistency loss's pairs: restyled frames found beside their originals (same seed, same frame), paired
batches drawn as reproducibly as plain ones, pairs shifted alike by augmentation, and a tiny ACT trained with
`consistency_weight` whose encoder then sees a restyled frame much as it sees its original."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.train_data import TINY_ACT, record_reach, tiny_train_args, twin_json

from policies import RecordConfig, load_policy, read_dataset, run_record
from policies.features import IMAGES, TWIN
from policies.train.augment import random_shift
from policies.train.config import TrainConfig
from policies.train.data import ChunkDataset, frame_table, open_sources
from policies.train.dist import Processes
from policies.train.frames import cache_frames
from policies.train.pairs import PairSampler, twin_positions, twin_rows
from policies.vision.encoder import consistency_loss
from twin_kit import InputError, torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Two reach episodes (seeds 0, 1) in the capture's appearance, the same two restyled, and two other seeds."""
    root = tmp_path_factory.mktemp("pairs")
    bundle, vanilla = record_reach(root)
    out = {"vanilla": vanilla}
    for name, seed, restyle in (("restyled", 0, "procedural"), ("other", 2, "none")):
        out[name] = root / name
        assert run_record(RecordConfig(bundle=str(bundle), out=str(out[name]), task="reach", robot="franka",
                                       episodes=2, worlds=2, size=32, seed=seed, restyle=restyle)) == 0
    return out


def _table(paths: list[Path]):
    cfg = TrainConfig(dataset=[str(p) for p in paths], policy="act", out="unused", val_episodes=0)
    sources, features = open_sources(cfg)
    return frame_table(sources, 8), sources, features


def test_restyled_frames_pair_with_the_same_frame_of_the_same_seed(datasets):
    table, sources, _ = _table([datasets["vanilla"], datasets["restyled"], datasets["other"]])
    twins = twin_rows(table, sources)
    first, restyled, other = (table.dataset == d for d in range(3))
    assert (twins[first] == -1).all() and (twins[other] == -1).all()   # originals, and other seeds' trajectories
    assert (twins[restyled] >= 0).all()
    rows = np.flatnonzero(restyled)
    t = twins[rows]
    assert (table.dataset[t] == 0).all() and np.array_equal(table.episode[t], table.episode[rows])
    assert np.array_equal(table.state[t], table.state[rows]) and np.array_equal(table.action[t], table.action[rows])
    frame = rows - rows[0]   # both datasets hold the episodes in the same order and length
    assert np.array_equal(t - t[0], frame)
    # positions within a subset of rows: a twin outside the subset is no twin
    sub = np.concatenate([rows, np.flatnonzero(first)[:5]])
    pos = twin_positions(table, sources, sub)
    assert (pos[len(rows):] == -1).all()
    has = pos[:len(rows)] >= 0
    assert has.sum() == 5 and np.array_equal(sub[pos[:len(rows)][has]], t[has])


def test_paired_batches_are_reproducible_and_shared_by_processes(datasets):
    table, sources, _ = _table([datasets["vanilla"], datasets["restyled"]])
    rows = np.arange(len(table))
    twins = twin_positions(table, sources, rows)
    one = PairSampler(np.ones(len(rows)), twins, 8, seed=3)
    idx = one.indices(5)
    assert np.array_equal(idx, PairSampler(np.ones(len(rows)), twins, 8, seed=3).indices(5))   # (seed, step) alone
    assert (table.dataset[idx[:4]] == 1).all() and np.array_equal(twins[idx[:4]], idx[4:])
    ranks = [PairSampler(np.ones(len(rows)), twins, 8, seed=3, rank=r, world=2).indices(5) for r in range(2)]
    assert sorted(np.concatenate(ranks).tolist()) == sorted(idx.tolist())
    assert all(np.array_equal(twins[r[:2]], r[2:]) for r in ranks)   # each process holds whole pairs
    data = ChunkDataset(table, rows)
    cache_frames(table, sources, ["observation.images.front"], datasets["vanilla"].parent / "cache",
                 Processes(rank=0, world=1), quiet=True)
    batch = one.batch(data, 5)
    assert batch[TWIN].tolist() == [4, 5, 6, 7, -1, -1, -1, -1]
    assert torch.equal(batch["observation.state"][:4], batch["observation.state"][4:])
    assert not torch.equal(batch["observation.images.front"][:4], batch["observation.images.front"][4:])
    with pytest.raises(InputError, match="multiple of 4"):
        PairSampler(np.ones(len(rows)), twins, 6, seed=0, world=2)
    with pytest.raises(InputError, match="no frame"):
        PairSampler(np.ones(len(rows)), np.full(len(rows), -1), 8, seed=0)


def test_a_pair_is_shifted_alike():
    torch.manual_seed(0)
    frames = torch.randint(0, 255, (6, 32, 32, 3), dtype=torch.uint8)
    frames[3:] = frames[:3]
    twin = torch.tensor([3, 4, 5, -1, -1, -1])
    out = random_shift(frames, 0.2, twin)
    assert torch.equal(out[:3], out[3:])
    loose = random_shift(frames, 0.2)   # without twins each frame draws its own offset
    assert not torch.equal(loose[:3], loose[3:])


def test_consistency_loss_moves_the_restyled_side_only():
    tokens = torch.randn(4, 6, 8, requires_grad=True)
    twin = torch.tensor([2, 3, -1, -1])
    loss = consistency_loss(tokens, twin)
    loss.backward()
    assert loss > 0 and tokens.grad[:2].abs().sum() > 0 and tokens.grad[2:].abs().sum() == 0
    same = torch.cat([tokens[2:], tokens[2:]]).detach()
    assert float(consistency_loss(same, twin)) == pytest.approx(0.0, abs=1e-6)
    assert float(consistency_loss(same * 3 + 1, twin)) == pytest.approx(0.0, abs=1e-5)   # scale cannot cheat


def _pair_distance(run: Path, table, sources) -> float:
    policy = load_policy(run / "policy").eval()
    rows = np.arange(len(table))
    twins = twin_positions(table, sources, rows)
    a = np.flatnonzero(twins >= 0)
    data = ChunkDataset(table, rows)
    batch = data.batch(np.concatenate([a, twins[a]]))
    batch[TWIN] = torch.cat([torch.arange(len(a), 2 * len(a)), torch.full((len(a),), -1)])
    x = policy.preprocessor(batch)
    with torch.no_grad():
        tokens, _ = policy.images(x[IMAGES])
    return float(consistency_loss(tokens, x[TWIN]))


def test_training_with_pairs_makes_the_encoder_see_past_the_restyling(datasets, tmp_path):
    pair = [datasets["vanilla"], datasets["restyled"]]
    runs = {}
    for w in (0.0, 4.0):
        runs[w] = tmp_path / f"w{w}"
        cfg = json.dumps({**TINY_ACT, "consistency_weight": w})
        code, res = twin_json(tiny_train_args(pair, runs[w], "act", 150, "--policy-config", cfg, "--seed", "1"))
        assert code == 0, res
    curves = json.loads((runs[4.0] / "curves.json").read_text())["train"]
    assert "consistency" in curves[0] and curves[-1]["consistency"] < curves[0]["consistency"] / 2
    assert "consistency" not in json.loads((runs[0.0] / "curves.json").read_text())["train"][0]
    table, sources, features = _table(pair)
    cache_frames(table, sources, features.camera_keys, tmp_path / "cache", Processes(rank=0, world=1), quiet=True)
    with_loss, without = _pair_distance(runs[4.0], table, sources), _pair_distance(runs[0.0], table, sources)
    assert with_loss < without / 2, (with_loss, without)
    # a lone dataset has no pairs: the run trains, without the loss
    code, res = twin_json(tiny_train_args(datasets["vanilla"], tmp_path / "lone", "act", 4, "--policy-config",
                                          json.dumps({**TINY_ACT, "consistency_weight": 1.0})))
    assert code == 0, res
    assert "consistency" not in json.loads((tmp_path / "lone" / "curves.json").read_text())["train"][0]
    assert read_dataset(datasets["restyled"]).episodes[1].meta["seed"] == 1
