"""A tiny real LeRobotDataset for policy tests, and training batches read back from it.

Two short episodes of a 4-joint arm sweeping smoothly, seen by two 64 px cameras in which a bright square moves
with the joints (so images and state both tell where the arm is); the action is the next state. Written with
Twin's DatasetWriter (parquet + mp4) and read with its reader, as training will; with `objects`, the front
camera's square is also recorded as a task object's privileged pose (what an auxiliary head learns to locate).
`overfit_batch` is the full-batch training loop the policy tests overfit a tiny policy with.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from policies import DatasetWriter, Feature, VideoEncoding, action_chunks, read_dataset, standard_spec

SIZE = 64
JOINTS = [f"joint{i}" for i in range(4)]
LENGTHS = (14, 12)


def _episode(e: int, n: int, objects: bool = False) -> tuple[dict, dict]:
    t = np.arange(n + 1) / 10.0
    phase = 0.7 * e
    q = np.stack([np.sin(1.3 * t + phase), np.cos(0.9 * t + phase), 0.5 * np.sin(2.1 * t - phase),
                  0.04 * (t > 0.6)], axis=1).astype(np.float32)  # last joint: a gripper closing
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    videos = {}
    for cam, (a, b) in {"front": (0, 1), "wrist": (2, 1)}.items():
        frames = np.zeros((n, SIZE, SIZE, 3), np.uint8)
        for i in range(n):
            cx, cy = (0.5 + 0.35 * q[i, a]) * SIZE, (0.5 + 0.35 * q[i, b]) * SIZE
            blob = (np.abs(xx - cx) < 8) & (np.abs(yy - cy) < 8)
            frames[i, ..., 0] = 40 + 180 * blob
            frames[i, ..., 1] = 60 + 2 * xx
            frames[i, ..., 2] = 200 * blob + 30 * e
        videos[f"observation.images.{cam}"] = frames
    columns = {"observation.state": q[:n], "action": q[1:n + 1], "next.reward": np.zeros(n, np.float32),
               "next.done": np.arange(n) == n - 1}
    if objects:  # the front square's centre as an object's xy (z 0, identity rotation)
        pose = np.zeros((n, 1, 7), np.float32)
        pose[:, 0, :2] = 0.35 * q[:n, :2]
        pose[:, 0, 6] = 1.0
        columns["privileged.object_poses"] = pose
    return columns, videos


def write_policy_dataset(root: Path, objects: bool = False) -> Path:
    extra = {"privileged.object_poses": Feature("float32", (1, 7), {"objects": ["square"], "pose": list("xyz") +
                                                                    ["qx", "qy", "qz", "qw"]})} if objects else None
    spec = standard_spec(10, "toy", JOINTS, JOINTS, {"front": (SIZE, SIZE), "wrist": (SIZE, SIZE)}, extra=extra)
    with DatasetWriter(root, spec, video=VideoEncoding(crf=10)) as w:
        for e, n in enumerate(LENGTHS):
            w.add_episode(*_episode(e, n, objects), "sweep")
    return root


def training_batch(root: Path, chunk_size: int, frames: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """Raw samples (episode, frame) of the dataset: state, camera frames, action chunk and its padding mask."""
    ds = read_dataset(root)
    out: dict[str, list] = {}
    for e, i in frames:
        cols = ds.episode_frames(e)
        chunks, pad = action_chunks(cols["action"], chunk_size)
        sample = {"observation.state": cols["observation.state"][i], "action": chunks[i], "action_is_pad": pad[i]}
        for key in ds.spec.video_keys:
            sample[key] = ds.episode_video(e, key)[i]
        for k, v in sample.items():
            out.setdefault(k, []).append(v)
    return {k: torch.as_tensor(np.stack(v)) for k, v in out.items()}


def overfit_batch(policy, batch: dict[str, torch.Tensor], steps: int, draws: list[dict] | None = None,
                  ) -> tuple[float, float]:
    """Train `policy` on the one preprocessed `batch` for `steps` AdamW steps (lr 3e-3, linear decay to 0), in
    train mode. Returns its loss before and after, each measured in eval mode without gradients as the mean over
    `draws` (keyword sets for the forward pass, e.g. a flow policy's fixed noise and tau; default: one plain pass)."""
    draws = draws or [{}]

    def eval_loss() -> float:
        policy.eval()
        with torch.no_grad():
            loss = sum(policy(batch, **d)[0].item() for d in draws) / len(draws)
        policy.train()
        return loss

    before = eval_loss()
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    for _ in range(steps):
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return before, eval_loss()


# Tiny policies at 64 px that the export and server tests share, and the interpreter their CLI subprocesses use.
REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
CHUNK = 8
COMMON = dict(chunk_size=CHUNK, n_action_steps=4, image_size=64, backbone_width=0.25, dim=32, heads=2, ff_dim=64)
TINY_64 = {"act": {**COMMON, "n_encoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 8},
           "flow": {**COMMON, "n_layers": 2, "num_steps": 3}}

def assert_reloaded_and_onnx_match(policy, again, raw: dict[str, torch.Tensor], onnx_path: Path) -> None:
    """The reloaded policy `again` answers `raw` as `policy` does, and its ONNX export (to `onnx_path`) matches
    within 1e-4 on the same observations."""
    from policies import OnnxRuntime, export_onnx

    want = policy.infer(raw)
    torch.testing.assert_close(again.infer(raw), want)
    path = export_onnx(again, onnx_path)["path"]
    got = OnnxRuntime(path).chunks({k: v.numpy() for k, v in raw.items() if k.startswith("observation.")})
    assert np.abs(got - want.numpy()).max() < 1e-4
