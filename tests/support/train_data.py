"""Tiny training fixtures shared by the training and evaluation tests: a 2-episode reach dataset recorded by the
real recorder (Franka, 32 px cameras, the small scene bundle), tiny ACT and flow configs, and `twin train` run
in-process with its --json summary returned.

A tiny policy overfits the dataset in a few hundred steps (seconds on one thread), which is what the evaluation
tests replay in the simulator.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from support.small_bundle import make_bundle

SIZE = 32
TINY_ACT = dict(chunk_size=8, n_action_steps=4, image_size=32, backbone_width=0.25, dim=32, heads=2, ff_dim=64,
                dropout=0.0, n_encoder_layers=1, n_vae_encoder_layers=1, latent_dim=8)
TINY_FLOW = dict(chunk_size=8, n_action_steps=4, image_size=32, backbone_width=0.25, dim=32, heads=2, ff_dim=64,
                 n_layers=2, num_steps=10)
TINY = {"act": TINY_ACT, "flow": TINY_FLOW}


def record_reach(root: Path, episodes: int = 2, seed: int = 0) -> tuple[Path, Path]:
    """(bundle, dataset): the small scene bundle and `episodes` Franka reach episodes recorded in it at 32 px
    (front and wrist cameras), under `root`. About 6 s for two episodes."""
    from policies import RecordConfig, run_record

    bundle = make_bundle(root / "scene")
    dataset = root / "reach"
    code = run_record(RecordConfig(bundle=str(bundle), out=str(dataset), task="reach", robot="franka",
                                   episodes=episodes, worlds=episodes, size=SIZE, seed=seed))
    assert code == 0
    return bundle, dataset


def tiny_train_args(dataset: Path | list[Path], out: Path, policy: str = "act", steps: int = 400,
                    *extra: str) -> list[str]:
    """`twin train` arguments for a tiny policy overfitting a tiny dataset (no validation, one thread)."""
    datasets = [str(d) for d in (dataset if isinstance(dataset, list) else [dataset])]
    return ["train", *datasets, "--out", str(out), "--policy", policy, "--policy-config", json.dumps(TINY[policy]),
            "--steps", str(steps), "--lr", "3e-3", "--warmup-steps", "20", "--val-episodes", "0",
            "--log-every", "10", "--checkpoint-every", str(steps), "--threads", "1", *extra]


def twin_json(argv: list[str]) -> tuple[int, dict | None]:
    """Run the `twin` CLI in this process; (exit code, the --json summary or None)."""
    from twin_cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*argv, "--json"])
    lines = buf.getvalue().strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else None)
