"""Scale-out: evaluation jobs sharded over Ray workers, as `twin record` shards episodes (policies.record.shards:
the same connection rules, round-robin shards, streamed results). Each worker loads the policy itself (the run
folder or the ONNX file at the same path on every node), builds its own worlds and streams back its episodes;
an episode's outcome depends only on its seed, style and the inference settings (`--threads`, `--worlds`), so
the table is the one a single process makes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from policies.evaluate.config import PolicyEvalConfig


def _eval_shard(jobs: list, cfg: PolicyEvalConfig, spec: dict, films: bool):
    """What a worker runs: the runtime, then the rollout over its jobs (build seconds first, then results)."""
    import torch

    from policies.evaluate.rollout import play
    from policies.evaluate.run import open_runtime

    torch.set_num_threads(cfg.threads)
    runtime, features, config, styles = open_runtime(cfg, spec)
    yield from play(cfg, runtime, features, config, styles, jobs, films)


def _absolute(cfg: PolicyEvalConfig, spec: dict) -> tuple[PolicyEvalConfig, dict]:
    """Paths made absolute (workers need not share the driver's directory)."""
    cfg = dataclasses.replace(cfg, bundle=str(Path(cfg.bundle).resolve()), run=str(Path(cfg.run).resolve()))
    spec = {**spec, **{k: str(Path(v).resolve()) for k, v in spec.items() if k.endswith("_path") and v}}
    return cfg, spec


def sharded_results(cfg: PolicyEvalConfig, spec: dict, jobs: list, films: bool) -> Iterator:
    """Build times (floats) and EpisodeResults of `jobs` played by Ray workers, as they arrive."""
    from policies.record.shards import stream_shards

    wcfg, wspec = _absolute(cfg, spec)
    yield from stream_shards(cfg.ray, cfg.workers, jobs, _eval_shard, (wcfg, wspec, films), doing="evaluating",
                             worker="an evaluation worker")
