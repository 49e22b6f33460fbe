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
from twin_kit import InputError, one_line, warn


def _eval_shard(cfg: PolicyEvalConfig, spec: dict, jobs: list, films: bool):
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
    from policies.record.shards import connect, shard

    ray, started = connect(cfg.ray, cfg.workers)
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = cfg.workers or cpus
        if workers > cpus:
            warn(f"--workers {workers}: the Ray cluster has {cpus} CPUs; evaluating {cpus} shards")
            workers = cpus
        parts = shard(list(jobs), workers)
        task = ray.remote(num_cpus=1, max_retries=0)(_eval_shard)
        wcfg, wspec = _absolute(cfg, spec)
        gens = [task.options(num_returns="streaming").remote(wcfg, wspec, p, films) for p in parts]
        pending = list(gens)
        try:
            while pending:
                ready, _ = ray.wait(pending, num_returns=1)
                for g in ready:
                    try:
                        ref = next(g)
                    except StopIteration:
                        pending.remove(g)
                        continue
                    yield _get(ray, ref)
        finally:
            for g in pending:
                try:
                    ray.cancel(g, force=True)
                except Exception:  # noqa: BLE001 - the worker may be gone already
                    pass
    finally:
        if started:
            ray.shutdown()


def _get(ray, ref):
    """ray.get, with a worker's InputError (a bad scene, a policy that does not fit the robot) as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, InputError):
            raise InputError(str(cause)) from None
        raise RuntimeError(f"an evaluation worker failed: {one_line(cause or e)}") from None
