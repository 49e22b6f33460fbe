"""LeRobot's own reader (and writer) on a dataset, for tests: run as a script, in its own process.

    python tests/support/lerobot_reference.py ROOT OUT_DIR [RAW_FRAMES.npz]
    python tests/support/lerobot_reference.py --write ROOT EPISODES.npz SPEC.json

The first form opens ROOT with `ledataset.LeRobotDataset` (PyPI `lerobot-dataset` 0.4.4, LeRobot's dataset
code packaged on its own), reads every frame through its `__getitem__`, and writes to OUT_DIR: `frames.npz`
(each key stacked over the dataset's frames; camera frames as uint8 HWC) and `meta.json` (its info, tasks,
episode index, stats, per-frame task strings, and the statistics its own `compute_episode_stats` +
`aggregate_stats` give for the frames it read; camera statistics from RAW_FRAMES.npz, keys
`<episode>/<camera>`, when given).

Two stand-ins, both outside the dataset format: LeRobot decodes video through torchcodec or torchvision,
and PyPI has only CUDA builds of both (they fail to load beside the CPU torch), so (1) an empty `torchvision`
module satisfies the import of `ledataset.datasets.utils` / `video_utils` (its `transforms.ToTensor` is used
only for image-in-parquet features, which Twin does not write), and (2) `decode_video_frames` is replaced by
a plain PyAV decode that, like LeRobot's, returns float32 (N, C, H, W) in [0, 1] for the frames nearest the
query timestamps within tolerance. Everything else (info, tasks, episode index, parquet loading through Hugging
Face `datasets`, the timestamp arithmetic that picks the video file and from_timestamp) is LeRobot's code.

The `--write` form records a dataset with LeRobot's own writer (`LeRobotDataset.create`, `add_frame`,
`save_episode`, its PNG frames, SVT-AV1 encode and statistics): SPEC.json holds fps, robot_type, features (as
info.json writes them, without the default index features) and one task per episode; EPISODES.npz holds
`<episode>/<feature>` arrays of (T, *shape) (camera frames (T, H, W, 3) uint8).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import types
from pathlib import Path

_SCRATCH = tempfile.TemporaryDirectory(prefix="lerobot-reference-")  # removed when the process exits
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_SCRATCH.name, "datasets"))
os.environ.setdefault("HF_HOME", os.path.join(_SCRATCH.name, "home"))

import datasets  # noqa: E402,F401  (imported before the stub: it probes for torchvision at import)
import numpy as np  # noqa: E402

_DECODED: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _stub_torchvision() -> None:
    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tv.transforms


def _pyav_decode(video_path, timestamps, tolerance_s, backend=None):
    """Frames nearest `timestamps` (seconds), float32 (N, C, H, W) in [0, 1]; asserts the tolerance."""
    import av
    import torch

    key = str(video_path)
    if key not in _DECODED:
        times, frames = [], []
        with av.open(key) as c:
            s = c.streams.video[0]
            for f in c.decode(s):
                times.append(float(f.pts * s.time_base))
                frames.append(f.to_ndarray(format="rgb24"))
        _DECODED[key] = (np.asarray(times), np.stack(frames))
    times, frames = _DECODED[key]
    q = np.asarray(timestamps, dtype=np.float64)
    dist = np.abs(q[:, None] - times[None, :])
    nearest = dist.argmin(axis=1)
    assert (dist[np.arange(len(q)), nearest] < tolerance_s).all(), f"no frame within {tolerance_s}s of {q}"
    picked = frames[nearest].transpose(0, 3, 1, 2)
    return torch.from_numpy(picked.astype(np.float32) / 255.0)


def _plain(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def main(root: str, out_dir: str, raw: str | None = None) -> None:
    _stub_torchvision()
    from ledataset.datasets import lerobot_dataset
    from ledataset.datasets.compute_stats import aggregate_stats, compute_episode_stats

    lerobot_dataset.decode_video_frames = _pyav_decode
    ds = lerobot_dataset.LeRobotDataset("twin/reference-check", root=root, video_backend="pyav")
    meta = ds.meta
    video_keys = meta.video_keys
    columns: dict[str, list] = {}
    tasks = []
    for i in range(len(ds)):
        item = ds[i]
        tasks.append(item.pop("task"))
        for k, v in item.items():
            a = v.numpy()
            if k in video_keys:
                a = np.round(a.transpose(1, 2, 0) * 255.0).astype(np.uint8)
            columns.setdefault(k, []).append(a)
    frames = {k: np.stack(v) for k, v in columns.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "frames.npz", **frames)

    # LeRobot's own statistics of what it read (cameras from the raw frames, written as PNGs as LeRobot does).
    raw_frames = np.load(raw) if raw else None
    per_episode = []
    features = {k: dict(v, shape=tuple(v["shape"])) for k, v in meta.features.items()}
    for ep in range(meta.total_episodes):
        sel = frames["episode_index"] == ep
        data = {k: frames[k][sel] for k in frames if k not in video_keys}
        if raw_frames is not None:
            from PIL import Image

            for key in video_keys:
                png_dir = Path(tempfile.mkdtemp(prefix="frames-", dir=_SCRATCH.name))
                paths = []
                for j, img in enumerate(raw_frames[f"{ep}/{key}"]):
                    paths.append(str(png_dir / f"frame-{j:06d}.png"))
                    Image.fromarray(img).save(paths[-1])
                data[key] = paths
        per_episode.append(compute_episode_stats(data, features))
    reference_stats = aggregate_stats(per_episode)

    episodes = meta.episodes.to_list()
    task_names = [meta.tasks.index[meta.tasks["task_index"] == t][0] for t in range(len(meta.tasks))]
    (out / "meta.json").write_text(json.dumps({
        "info": meta.info, "total_episodes": meta.total_episodes, "total_frames": meta.total_frames,
        "len": len(ds), "video_keys": video_keys, "tasks": task_names, "frame_tasks": tasks,
        "episodes": _plain(episodes), "stats": _plain(meta.stats),
        "reference_stats": _plain(reference_stats),
    }))


def write(root: str, episodes: str, spec_json: str) -> None:
    _stub_torchvision()
    from ledataset.datasets.lerobot_dataset import LeRobotDataset

    spec = json.loads(Path(spec_json).read_text())
    features = {k: dict(v, shape=tuple(v["shape"])) for k, v in spec["features"].items()}
    arrays = np.load(episodes)
    ds = LeRobotDataset.create("twin/reference-written", fps=spec["fps"], features=features, root=root,
                               robot_type=spec["robot_type"], use_videos=True)
    for e, task in enumerate(spec["tasks"]):
        columns = {k: arrays[f"{e}/{k}"] for k in features}
        for i in range(len(next(iter(columns.values())))):
            frame = {k: v[i] for k, v in columns.items()}
            frame["task"] = task
            ds.add_frame(frame)
        ds.save_episode(parallel_encoding=False)
    ds.finalize()


if __name__ == "__main__":
    if sys.argv[1] == "--write":
        write(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
