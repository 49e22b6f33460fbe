"""The optimisation loop: AdamW over the policy's parameter groups, linear warmup then cosine decay, gradient
clipping, the loss curve every --log-every steps, validation every --val-every, checkpoints every
--checkpoint-every; one path for one process and for DistributedDataParallel (only rank 0 writes and shows
progress).

Everything random is reproducible from the checkpoint: batches come from (seed, step) (StepSampler), dropout and
noise from each process's torch RNG, saved and restored with the optimiser and schedule, and validation runs on
a forked RNG so it never disturbs training. A resumed run therefore ends with the weights an uninterrupted one
would have.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from policies.train.augment import Augment, augment_batch, augment_of
from policies.train.checkpoint import RunPaths, save_checkpoint, write_run
from policies.train.config import TrainConfig
from policies.train.curves import Curves
from policies.train.data import ChunkDataset, StepSampler
from policies.train.dist import Processes
from policies.train.pairs import PairSampler
from twin_kit import info, native_bf16, progress, warn


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (every device) alike."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of one process's training RNG (dropout, noise), distinct per rank."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    out = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def lr_factor(cfg: TrainConfig):
    """The schedule: step i's learning rate as a fraction of the peak."""
    warm, total, floor = cfg.warmup, cfg.steps, cfg.min_lr_ratio

    def factor(i: int) -> float:
        if i < warm:
            return (i + 1) / warm
        t = min(1.0, (i - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def make_optimizer(policy, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW; under --precision bf16 fused (one kernel over every parameter: 4x faster than the per-tensor loop on
    this CPU), while fp32 keeps the per-tensor loop and so the exact weights of runs trained before bf16 existed."""
    fused = True if cfg.precision == "bf16" else None
    opt = torch.optim.AdamW(policy.optim_groups(), weight_decay=policy.config.weight_decay, fused=fused)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg))


def weights_digest(policy) -> str:
    """A hash of every parameter and buffer (processes of one run must agree on it)."""
    h = hashlib.sha256()
    for k, v in sorted(policy.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def resolve_precision(precision: str, device: torch.device, loud: bool = True, native: bool | None = None) -> str:
    """--precision as trained: auto becomes bf16 where the device has it natively (`native_bf16`), else fp32;
    an explicit bf16 without hardware support is kept, with a warning (when `loud`) that it runs emulated."""
    native = native_bf16(device) if native is None else native
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native and loud:
        warn(f"--precision bf16: this {device.type} has no native bfloat16 (no AVX-512 BF16 or AMX), so bf16 runs "
             "emulated, far slower than fp32; --precision auto picks the faster one")
    return precision


def mixed_precision(device: torch.device, cfg: TrainConfig):
    """(autocast context factory, input layout) of --precision, for a policy already laid out by
    `channels_last`: bf16 autocasts the passes and hands the 4-D image inputs over channels-last; fp32 changes
    nothing."""
    if cfg.precision != "bf16":
        return contextlib.nullcontext, lambda batch: batch

    def layout(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in batch.items()}

    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), layout


def channels_last(policy: torch.nn.Module, cfg: TrainConfig) -> None:
    """Under --precision bf16, put the conv weights in channels-last (oneDNN's and cuDNN's fast layout); before
    any DistributedDataParallel wrapper or optimiser state is made."""
    if cfg.precision == "bf16":
        policy.to(memory_format=torch.channels_last)


@torch.no_grad()
def validate(policy, data: ChunkDataset, rows: np.ndarray, batch_size: int, procs: Processes,
             seed: int) -> float | None:
    """Mean eval-mode loss over the validation rows (sharded over the processes), with a fixed RNG draw so that
    successive validations are comparable (the flow policy's noise and times, for one)."""
    if len(rows) == 0:
        return None
    mine = rows[procs.rank::procs.world]
    was = policy.training
    policy.eval()
    total = count = 0.0
    devices = [procs.device] if procs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(rank_seed(seed + 1, procs.rank))
        for i in range(0, len(mine), batch_size):
            idx = mine[i:i + batch_size]
            loss, _ = policy(policy.preprocessor(_to(data.batch(idx), procs.device)))
            total += float(loss) * len(idx)
            count += len(idx)
    policy.train(was)
    total, count = procs.sum([total, count])
    return total / count if count else None


@dataclass
class Loop:
    """Everything the loop needs; `run` trains from `start` to cfg.steps."""

    cfg: TrainConfig
    policy: torch.nn.Module
    model: torch.nn.Module  # the policy, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train: ChunkDataset
    val: ChunkDataset
    val_rows: np.ndarray  # positions in `val` scored by each validation
    sampler: StepSampler | PairSampler
    procs: Processes
    paths: RunPaths
    run_info: dict
    curves: Curves = field(default_factory=Curves)
    start: int = 0
    quiet: bool = False  # no progress bar
    train_seconds: float = 0.0  # time inside optimisation steps (this process run)
    samples: int = 0  # samples seen (this process run, all processes)
    elapsed_before: float = 0.0  # wall seconds earlier processes spent on this run (from the checkpoint resumed)
    started: float = field(default_factory=time.perf_counter)  # when this process began working on the run
    augment: Augment = field(init=False)  # the training frames' augmentation (--augment)

    def __post_init__(self):
        self.augment = augment_of(self.cfg)
        self.autocast, self.layout = mixed_precision(self.procs.device, self.cfg)

    def elapsed(self) -> float:
        """Wall seconds the run has taken so far, over every process run that trained it (resumes add up)."""
        return self.elapsed_before + time.perf_counter() - self.started

    def _step(self, step: int) -> dict[str, float]:
        raw = augment_batch(_to(self.sampler.batch(self.train, step), self.procs.device), self.augment)
        with self.autocast():
            loss, logs = self.model(self.layout(self.policy.preprocessor(raw)))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return logs

    def _checkpoint(self, step: int) -> None:
        state = {"step": step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": self.procs.gather(rng_state(self.procs.device)), "world": self.procs.world,
                 "elapsed_seconds": self.elapsed()}
        if self.procs.main:
            save_checkpoint(self.paths, self.policy, step, state, self.cfg.keep_checkpoints)
            write_run(self.paths, {**self.run_info, "status": "running", "step": step})
            self._write_curves()

    def _write_curves(self) -> None:
        self.curves.write(self.paths.curves_json, self.paths.curves_png,
                          f"{self.cfg.policy} - {self.paths.root.name}")

    def _validate(self, step: int) -> float | None:
        v = validate(self.policy, self.val, self.val_rows, self.cfg.batch_size, self.procs, self.cfg.seed)
        if v is not None:
            self.curves.val = [p for p in self.curves.val if p["step"] != step] + [{"step": step, "loss": v}]
            if self.procs.main:
                self._write_curves()
        return v

    def run(self) -> None:
        cfg, procs = self.cfg, self.procs
        self.policy.train()
        if self.start == 0 and len(self.val_rows):
            self._validate(0)
        sums: dict[str, float] = {}
        n, window_t, window_samples = 0, 0.0, 0
        status = "starting"
        with progress(self.quiet or not procs.main) as bar:
            task = bar.add_task(f"train {cfg.policy}", total=cfg.steps, completed=self.start, status=status)
            for step in range(self.start, cfg.steps):
                t0 = time.perf_counter()
                logs = self._step(step)
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                self.samples += cfg.batch_size
                window_t, window_samples = window_t + dt, window_samples + cfg.batch_size
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                done = step + 1
                if done % cfg.log_every == 0 or done == cfg.steps:
                    keys = sorted(sums)
                    totals = procs.sum([sums[k] for k in keys] + [n])
                    point = {"step": done, **{k: totals[i] / totals[-1] for i, k in enumerate(keys)},
                             "lr": self.optimizer.param_groups[0]["lr"],
                             "samples_per_s": window_samples / window_t if window_t > 0 else None}
                    self.curves.train.append(point)
                    status = f"loss {point['loss']:.4g}  {point['samples_per_s'] or 0:.1f} samples/s"
                    sums, n, window_t, window_samples = {}, 0, 0.0, 0
                if done % cfg.val_every == 0 or done == cfg.steps:
                    v = self._validate(done)
                    if procs.main and self.curves.train:
                        last = self.curves.train[-1]
                        info(f"step {done}/{cfg.steps}: train loss {last['loss']:.4g}"
                             + (f", val loss {v:.4g}" if v is not None else "")
                             + f", {last['samples_per_s'] or 0:.1f} samples/s")
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    self._checkpoint(done)
                bar.update(task, completed=done, status=status)
