"""A training run's folder and its checkpoints.

    runs/NAME/
      run.json                    what was trained: the options, datasets, policy type, status, processes
      checkpoints/step_000500/    a saved policy folder (config.json, model.safetensors, stats.json) plus
                                  training_state.pt (step, optimiser, schedule, every process's RNG states)
      last -> checkpoints/step_…  the newest checkpoint (what --resume continues from)
      policy/                     the final policy, written when training completes (load_policy reads it)
      curves.json, curves.png     train and validation loss curves
      cache/                      decoded camera frames while the run is unfinished (removed at the end)

Checkpoints are written to a temporary sibling and renamed, and `last` is swapped atomically, so a run killed at
any moment resumes from a complete checkpoint.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from policies.pretrained import CONFIG_FILE, save_policy
from twin_kit import InputError, atomic_write_file, one_line, remove_tree, replace_path, staging_dir

RUN_FORMAT = "twin-run"
RUN_VERSION = 1
STATE_FILE = "training_state.pt"


@dataclass(frozen=True)
class RunPaths:
    """Where each part of a run lives under its folder."""

    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.root / "last"

    @property
    def policy(self) -> Path:
        return self.root / "policy"

    @property
    def curves_json(self) -> Path:
        return self.root / "curves.json"

    @property
    def curves_png(self) -> Path:
        return self.root / "curves.png"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def step_dir(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:06d}"


def is_run(path: str | Path) -> bool:
    return RunPaths(Path(path)).run_file.is_file()


def read_run(path: str | Path) -> dict:
    """run.json of the run at `path` (InputError when it is not one)."""
    f = RunPaths(Path(path)).run_file
    try:
        data = json.loads(f.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: not a training run (no run.json)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{f}: cannot read ({one_line(e)})") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise InputError(f"{f}: not a Twin training run")
    if data.get("version") != RUN_VERSION:
        raise InputError(f"{f}: run format version {data.get('version')!r} is not supported ({RUN_VERSION})")
    return data


def write_run(paths: RunPaths, data: dict) -> None:
    atomic_write_file(paths.run_file, (json.dumps({"format": RUN_FORMAT, "version": RUN_VERSION, **data},
                                                  indent=2) + "\n").encode())


def _steps(paths: RunPaths) -> list[tuple[int, Path]]:
    out = []
    if paths.checkpoints.is_dir():
        for p in paths.checkpoints.iterdir():
            if p.name.startswith("step_") and p.name[5:].isdigit() and (p / STATE_FILE).is_file():
                out.append((int(p.name[5:]), p))
    return sorted(out)


def latest_checkpoint(paths: RunPaths) -> Path | None:
    """The newest complete checkpoint (what `last` points to, or the highest step if the link is missing)."""
    if paths.last.is_symlink() and (paths.last / STATE_FILE).is_file():
        return paths.last.resolve()
    steps = _steps(paths)
    return steps[-1][1] if steps else None


def _point_last(paths: RunPaths, target: Path) -> None:
    tmp = paths.root / f".last.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, paths.root))
    os.replace(tmp, paths.last)


def save_checkpoint(paths: RunPaths, policy, step: int, state: dict, keep: int) -> Path:
    """Write checkpoint `step` (policy folder + training state), point `last` at it, and keep only the newest
    `keep` checkpoints (0: all)."""
    dest = paths.step_dir(step)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    with staging_dir(dest) as tmp:
        save_policy(policy, tmp)
        torch.save(state, tmp / STATE_FILE)
        replace_path(tmp, dest)
    _point_last(paths, dest)
    if keep:
        for _, old in _steps(paths)[:-keep]:
            if old != dest:
                remove_tree(old)
    return dest


def load_training_state(step_dir: Path) -> dict:
    try:
        return torch.load(step_dir / STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"{step_dir / STATE_FILE}: cannot read ({one_line(e)})") from None


def run_policy(run: str | Path) -> Path:
    """The policy folder of a training run: its final policy/, or (unfinished) its newest checkpoint; a saved
    policy folder itself is returned as is."""
    root = Path(run)
    if (root / CONFIG_FILE).is_file():
        return root
    paths = RunPaths(root)
    if (paths.policy / CONFIG_FILE).is_file():
        return paths.policy
    if not paths.run_file.is_file():
        raise InputError(f"{run}: neither a training run nor a saved policy")
    last = latest_checkpoint(paths)
    if last is None:
        raise InputError(f"{run}: the run has no checkpoint yet")
    return last
