"""`twin train`: checks before any work, the run folder (new, or --resume), datasets -> samples -> decoded-frame
cache, the policy (fresh or from the last checkpoint), the loop, and the summary (`--json`: train_loss, val_loss,
steps, seconds, total_seconds (over every resume), samples_per_s, run, ...).

Under `torchrun --nproc_per_node N -m twin_cli train ...` every process runs this same function: rank 0 checks
the run folder and holds its lock, the others follow its verdict; the datasets are read by all, the frame cache
decoded by all together, the model wrapped in DistributedDataParallel, and only rank 0 writes and reports.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
import traceback
from pathlib import Path

import numpy as np

from policies.train.checkpoint import RunPaths, is_run, latest_checkpoint, load_training_state, read_run, write_run
from policies.train.config import RESUME_FREE, TrainConfig
from policies.train.curves import Curves
from twin_kit import InputError, check_output_dir, destination_lock, emit_json, info, torch_threads, warn


def _check_out(cfg: TrainConfig) -> TrainConfig | None:
    """Refuse an unusable --out; returns the run's saved config when resuming an existing run, else None."""
    out = Path(cfg.out)
    for d in cfg.dataset:
        if not Path(d).exists():
            raise InputError(f"{d}: no such dataset")
    has_content = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if not has_content:
        check_output_dir(out, inputs=cfg.dataset, what="--out")
        if cfg.resume:
            info(f"--resume: {out} holds no run yet; starting one")
        return None
    if not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if not is_run(out):
        raise InputError(f"--out {out}: exists and is not a training run; choose a new or empty folder")
    if not cfg.resume:
        raise InputError(f"--out {out}: already holds a training run (pass --resume to continue it, or choose a "
                         "new folder)")
    check_output_dir(out, inputs=cfg.dataset, what="--out", merge=True)
    saved = read_run(out).get("config")
    try:
        saved_cfg = TrainConfig(**{**saved, **{k: getattr(cfg, k) for k in RESUME_FREE}})
    except TypeError as e:
        raise InputError(f"{out}: run.json's options do not fit this version ({e})") from None
    default = TrainConfig(dataset=cfg.dataset, out=cfg.out)
    ignored = [f.name for f in dataclasses.fields(cfg) if f.name not in RESUME_FREE
               and getattr(cfg, f.name) != getattr(default, f.name) and getattr(cfg, f.name) != saved.get(f.name)]
    if ignored:
        warn("--resume continues with the run's own options; ignored: "
             + ", ".join(f"--{k.replace('_', '-')} {getattr(cfg, k)} (run: {saved.get(k)})" for k in ignored))
    return saved_cfg


def _prepare(cfg: TrainConfig, procs, stack: contextlib.ExitStack) -> tuple[TrainConfig, bool]:
    """Rank 0 locks and checks --out; every rank gets (the config to train with, whether resuming) or the same
    one-line error."""
    verdict: tuple = (None, None)
    if procs.main:
        try:
            stack.enter_context(destination_lock(cfg.out, f"--out {cfg.out}"))
            saved = _check_out(cfg)
            verdict = (None, saved)
        except InputError as e:
            verdict = (str(e), None)
    err, saved = procs.broadcast(verdict)
    if err:
        raise InputError(err)
    return (saved, True) if saved is not None else (cfg, False)


def _policy(cfg: TrainConfig, features, paths: RunPaths, resume: bool, procs, sources):
    """(policy, training state or None, step it resumes at): the last checkpoint's when resuming, else fresh."""
    from policies.features import ACTION_DELTA
    from policies.pretrained import load_policy
    from policies.processor import delta_stats, episode_pairs
    from policies.registry import make_config, make_policy
    from policies.train.loop import seed_all

    step_dir = latest_checkpoint(paths) if resume else None
    if step_dir is None:
        seed_all(cfg.seed)
        config = make_config(cfg.policy, **cfg.policy_fields())
        if config.action_space == "delta":
            pairs = (p for s in sources for p in episode_pairs(s.view, s.train))   # training episodes only
            features.stats[ACTION_DELTA] = delta_stats(pairs, config.chunk_size, features)
        return make_policy(cfg.policy, config, features).to(procs.device), None, 0
    policy = load_policy(step_dir, procs.device)
    theirs = policy.features
    for what in ("state_names", "action_names", "cameras"):
        if getattr(theirs, what) != getattr(features, what):
            raise InputError(f"{step_dir}: the run's policy reads other {what.replace('_', ' ')} than the dataset "
                             f"({getattr(theirs, what)} vs {getattr(features, what)})")
    state = load_training_state(step_dir)
    return policy, state, int(state["step"])


def _restore(state: dict | None, optimizer, scheduler, paths: RunPaths, cfg: TrainConfig, procs) -> Curves:
    """Put the optimiser, schedule and this process's RNGs where the checkpoint left them (or seed the RNGs of
    a fresh run); returns the loss curves up to the checkpoint."""
    import torch

    from policies.train.loop import rank_seed, set_rng_state

    if state is None:
        torch.manual_seed(rank_seed(cfg.seed, procs.rank))
        return Curves()
    start = int(state["step"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("world") == procs.world:
        set_rng_state(state["rng"][procs.rank], procs.device)
    else:
        if procs.main:
            warn(f"the run trained on {state.get('world')} process(es), now {procs.world}: random draws differ "
                 "from an uninterrupted run")
        torch.manual_seed(rank_seed(cfg.seed + start, procs.rank))
    if procs.main:
        info(f"resuming {paths.root} at step {start}/{cfg.steps}")
    return Curves.read(paths.curves_json).until(start)


def _elapsed_before(state: dict | None, paths: RunPaths, finished: bool) -> float:
    """Wall seconds earlier processes spent on the run: a finished run's total from run.json, else the resumed
    checkpoint's (0 for a fresh run), so a resumed run reports what the whole training took."""
    if state is None:
        return 0.0
    if finished and paths.run_file.exists():
        done = read_run(paths.root)
        if done.get("status") == "done" and "total_seconds" in done:
            return float(done["total_seconds"])
    return float(state.get("elapsed_seconds", 0.0))


def _sampler(cfg: TrainConfig, policy, table, sources, rows: np.ndarray, procs):
    """The batches' sampler: pairs of restyled frames and their originals when the policy has a consistency
    loss and the datasets hold such pairs (a lone dataset has none: it trains without the loss, with a warning),
    else plain --mix draws."""
    from policies.train.data import StepSampler, sample_weights
    from policies.train.pairs import PairSampler, twin_positions

    weights = sample_weights(table, rows, sources)
    if policy.config.consistency_weight > 0:
        twins = twin_positions(table, sources, rows)
        if (twins >= 0).any():
            if procs.main:
                info(f"consistency loss on {int((twins >= 0).sum())} restyled frames paired with their originals")
            return PairSampler(weights, twins, cfg.batch_size, cfg.seed, procs.rank, procs.world)
        if procs.main:
            warn("consistency_weight: no frame of a later dataset has a twin in the first (the same seed's "
                 "episode, frame for frame), so this run trains without the consistency loss")
    return StepSampler(weights, cfg.batch_size, cfg.seed, procs.rank, procs.world)


def train_policy(cfg: TrainConfig, bar: bool = True) -> dict:
    """Train per `cfg` (see the module doc) and return the summary; every process of a torchrun job calls it.
    `bar`: show progress bars (rank 0, on a terminal)."""
    from policies.train.dist import start_processes, stop_processes

    t0 = time.perf_counter()
    procs = start_processes(cfg.device)
    try:
        return _train(cfg, procs, bar, t0)
    except BaseException as e:
        traceback.clear_frames(e.__traceback__)  # an error's frames would keep _train's locals alive
        raise
    finally:
        # The model's DistributedDataParallel wrapper died with _train's frame; collect it before the process
        # group goes, since a reducer freed after destroy_process_group can abort the process at exit.
        gc.collect()
        stop_processes(procs)


def _train(cfg: TrainConfig, procs, bar: bool, t0: float) -> dict:
    """train_policy's body, in its own frame so that nothing it built outlives it."""
    from torch.nn.parallel import DistributedDataParallel

    from policies.train.data import ChunkDataset, frame_table, open_sources
    from policies.train.frames import cache_frames
    from policies.train.loop import Loop, channels_last, make_optimizer, resolve_precision, weights_digest

    with contextlib.ExitStack() as stack, torch_threads(cfg.threads):
        cfg, resume = _prepare(cfg, procs, stack)
        cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, procs.device, loud=procs.main))
        if cfg.batch_size % procs.world:
            raise InputError(f"--batch-size {cfg.batch_size} must be a multiple of the {procs.world} processes")
        sources, features = open_sources(cfg)
        paths = RunPaths(Path(cfg.out))
        policy, state, start = _policy(cfg, features, paths, resume, procs, sources)
        features = policy.features
        run_info = {"policy": cfg.policy, "config": dataclasses.asdict(cfg), "processes": procs.world,
                    "datasets": [str(s.root.resolve()) for s in sources], "policy_type": policy.name,
                    "split": [{"train": s.train, "val": s.val} for s in sources]}
        if procs.main:
            paths.root.mkdir(parents=True, exist_ok=True)
            if not resume or not paths.run_file.exists():
                write_run(paths, {**run_info, "status": "running", "step": start})
        procs.barrier()
        table = frame_table(sources, policy.config.chunk_size, getattr(policy.config, "aux_weight", 0.0) > 0)
        finished = start >= cfg.steps  # a completed run resumed: nothing to train, no frames needed
        cache_frames(table, sources, [] if finished else features.camera_keys, paths.cache, procs, not bar)
        train_rows, val_rows = np.flatnonzero(~table.val), np.flatnonzero(table.val)
        train = ChunkDataset(table, train_rows)
        val = ChunkDataset(table, val_rows)
        val_pick = np.arange(len(val_rows))
        if len(val_pick) > cfg.val_samples:
            val_pick = np.sort(np.random.default_rng(cfg.seed).choice(len(val_pick), cfg.val_samples,
                                                                      replace=False))
        sampler = _sampler(cfg, policy, table, sources, train_rows, procs)
        channels_last(policy, cfg)
        optimizer, scheduler = make_optimizer(policy, cfg)
        curves = _restore(state, optimizer, scheduler, paths, cfg, procs)
        model = policy
        if procs.parallel:
            model = DistributedDataParallel(policy, device_ids=[procs.device.index]
                                            if procs.device.type == "cuda" else None)
        if procs.main:
            info(f"training {cfg.policy} ({policy.num_parameters() / 1e6:.2f} M parameters) on "
                 f"{len(train_rows)} frames of {sum(len(s.train) for s in sources)} episodes (validation: "
                 f"{len(val_rows)} frames of {sum(len(s.val) for s in sources)}) for {cfg.steps} steps of "
                 f"{cfg.batch_size} on {procs.world} x {procs.device.type} -> {paths.root}")
        before = _elapsed_before(state, paths, finished)
        loop = Loop(cfg, policy, model, optimizer, scheduler, train, val, val_pick, sampler, procs,
                    paths, run_info, curves, start, not bar, elapsed_before=before, started=t0)
        loop.run()
        total = round(before if finished else loop.elapsed(), 2)   # a finished run resumed keeps its total
        procs.share_buffers(policy)
        digests = procs.gather(weights_digest(policy))
        if procs.main:
            from policies.pretrained import save_policy
            from twin_kit import remove_tree

            save_policy(policy, paths.policy)
            write_run(paths, {**run_info, "status": "done", "step": cfg.steps, "total_seconds": total})
            remove_tree(paths.cache)
        procs.barrier()   # the ranks leave together: one tearing down gloo while rank 0 still saves aborted
        last_train = loop.curves.train[-1] if loop.curves.train else {}
        val_loss = loop.curves.val[-1]["loss"] if loop.curves.val else None
        seconds = time.perf_counter() - t0
        return {"train_loss": last_train.get("loss"), "val_loss": val_loss, "steps": cfg.steps,
                "seconds": round(seconds, 2), "total_seconds": total,
                "samples_per_s": round(loop.samples / loop.train_seconds, 2) if loop.train_seconds else None,
                "run": str(cfg.out), "policy": str(paths.policy), "policy_type": cfg.policy,
                "parameters": policy.num_parameters(), "resumed_from": start if resume else None,
                "processes": procs.world, "device": procs.device.type, "threads": cfg.threads,
                "batch_size": cfg.batch_size, "train_frames": int(len(train_rows)),
                "val_frames": int(len(val_rows)), "train_episodes": sum(len(s.train) for s in sources),
                "val_episodes": sum(len(s.val) for s in sources), "weights": digests,
                "train_seconds": round(loop.train_seconds, 2), "rank": procs.rank}


def run_train(cfg: TrainConfig, json_out: bool = False) -> int:
    """The `twin train` verb: train, print a one-line summary (rank 0), and with --json the summary as JSON."""
    res = train_policy(cfg, bar=not json_out)
    if res["rank"] != 0:
        return 0
    val = f", val loss {res['val_loss']:.4g}" if res["val_loss"] is not None else ""
    info(f"trained {res['policy_type']} for {res['steps']} steps in {res['seconds']:.1f} s "
         f"({res['samples_per_s'] or 0:.1f} samples/s): train loss {res['train_loss']:.4g}{val}; policy in "
         f"{res['policy']}")
    if json_out:
        emit_json(res)
    return 0
