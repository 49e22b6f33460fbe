"""`twin export-policy --onnx`: the whole inference graph, processors included, run by onnxruntime equals PyTorch
within 1e-4 on recorded observations (uint8 frames and raw states read back from a real LeRobotDataset), for ACT
and for the flow policy (with its noise and a real-time chunking prefix as inputs)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from support.policy_data import CHUNK, PYTHON, REPO, training_batch, write_policy_dataset
from support.policy_data import TINY_64 as TINY

from policies import OnnxRuntime, export_onnx, load_policy, make_policy, prefix_weights, read_dataset, read_onnx_meta
from twin_kit import InputError, torch_threads

SAMPLES = [(0, 0), (0, 5), (0, 10), (1, 2), (1, 7), (1, 11)]
KEYS = ["observation.state", "observation.images.front", "observation.images.wrist"]


def twin(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([PYTHON, "-m", "twin_cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The tiny dataset, and an ACT and a flow policy trained on it for a few steps (so batch norms and weights
    are not at their initial values), saved as run folders; the flow policy's backbone has group norms, so both
    normalisations go through ONNX."""
    d = tmp_path_factory.mktemp("export")
    root = write_policy_dataset(d / "ds")
    raw = training_batch(root, CHUNK, SAMPLES)
    with torch_threads(1):
        for kind, cfg in TINY.items():
            cfg = {**cfg, "backbone_norm": "group"} if kind == "flow" else cfg
            torch.manual_seed(0)
            policy = make_policy(kind, cfg, read_dataset(root))
            batch = policy.preprocessor(raw)
            opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
            for _ in range(5):
                loss, _ = policy(batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
            policy.eval().save_pretrained(d / "runs" / kind / "policy")
    return d


@pytest.fixture(scope="module")
def act_file(work) -> tuple[Path, dict]:
    """ACT exported by the command line (its default path: RUN/policy.onnx)."""
    r = twin("export-policy", "runs/act", "--onnx", "--json", cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    return work / "runs" / "act" / "policy.onnx", json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def flow_file(work) -> Path:
    policy = load_policy(work / "runs" / "flow" / "policy")
    return Path(export_onnx(policy, work / "flow.onnx")["path"])


def recorded(work: Path) -> dict[str, np.ndarray]:
    raw = training_batch(work / "ds", CHUNK, SAMPLES)
    return {k: v.numpy() for k, v in raw.items()}


def test_cli_writes_the_graph_with_its_metadata(act_file, work):
    path, res = act_file
    assert res["path"] == "runs/act/policy.onnx" and res["policy"] == "act" and res["inputs"] == KEYS
    assert res["max_abs_error"] < 1e-4 and res["bytes"] == path.stat().st_size
    meta = read_onnx_meta(path)
    assert meta["type"] == "act" and meta["config"]["chunk_size"] == CHUNK and meta["inputs"] == KEYS
    assert meta["features"]["cameras"] == {"observation.images.front": [64, 64], "observation.images.wrist": [64, 64]}
    assert len(meta["weights_sha256"]) == 64
    rt = OnnxRuntime(path)
    types = {i.name: i.type for i in rt.session.get_inputs()}
    assert types == {KEYS[0]: "tensor(float)", KEYS[1]: "tensor(uint8)", KEYS[2]: "tensor(uint8)"}


def test_act_onnx_equals_pytorch_on_recorded_observations(act_file, work):
    obs = recorded(work)
    policy = load_policy(work / "runs" / "act" / "policy")
    want = policy.infer({k: torch.from_numpy(obs[k]) for k in KEYS}).numpy()
    got = OnnxRuntime(act_file[0]).chunks({k: obs[k] for k in KEYS})
    assert got.shape == (len(SAMPLES), CHUNK, 4)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(want).max() > 0.01  # robot units (the dataset's joint angles), not normalised zeros
    one = OnnxRuntime(act_file[0]).chunks({k: obs[k][2:3] for k in KEYS})  # another batch size, same graph
    assert np.abs(one[0] - want[2]).max() < 1e-4


def test_flow_onnx_equals_pytorch_with_noise_and_a_prefix(flow_file, work):
    obs = recorded(work)
    policy = load_policy(work / "runs" / "flow" / "policy")
    torch_obs = {k: torch.from_numpy(obs[k]) for k in KEYS}
    rt = OnnxRuntime(flow_file)
    assert rt.inputs == KEYS + ["noise", "prefix_actions", "prefix_weights"]
    noise = np.random.default_rng(0).standard_normal((len(SAMPLES), CHUNK, 4)).astype(np.float32)
    want = policy.infer(torch_obs, noise=torch.from_numpy(noise)).numpy()
    assert np.abs(rt.chunks({k: obs[k] for k in KEYS}, noise) - want).max() < 1e-4
    prefix = obs["action"][:, :5] + 0.05  # the last chunk's actions (robot units) for this chunk's first 5 steps
    want = policy.infer(torch_obs, noise=torch.from_numpy(noise), prefix_actions=torch.from_numpy(prefix),
                        prefix_len=2, vjp=False).numpy()
    got = rt.chunks({k: obs[k] for k in KEYS}, noise, prefix, 2)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got[:, :2] - prefix[:, :2]).max() < 1e-3  # the committed actions are kept
    feed = {k: obs[k] for k in KEYS} | {"noise": noise, "prefix_actions": np.zeros((6, CHUNK, 4), np.float32),
                                        "prefix_weights": prefix_weights(CHUNK, 5, 2).numpy()}
    assert not np.allclose(rt.session.run(["action"], feed)[0], got, atol=1e-3)  # the prefix is an input


def test_bad_exports_are_one_line_errors(work, act_file):
    r = twin("export-policy", "runs/act", cwd=work)
    assert r.returncode == 2 and "--onnx" in r.stderr and len([ln for ln in r.stderr.splitlines() if ln]) == 1
    r = twin("export-policy", "runs/missing", "--onnx", cwd=work)
    assert r.returncode == 2 and "no such run or policy folder" in r.stderr
    r = twin("export-policy", "runs/act", "--onnx", "--out", "act.txt", cwd=work)
    assert r.returncode == 2 and "must be a .onnx file" in r.stderr
    (work / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(InputError, match="not an ONNX file"):
        read_onnx_meta(work / "junk.onnx")
