"""`twin train-geometry`: train a small geometry network on synthetic captures, with VGGT's losses.

The run folder (e.g. runs/geometry/NAME) holds `model.safetensors` (the weights with their configuration, what
`twin reconstruct --method vggt --weights` and `load_vggt` read), `state.pt` (optimiser and step, for
--resume), `train.json` (settings, loss history, timing) and, after scoring held-out captures, `heldout.json`
and the bundles it scored in heldout/. Every file is written atomically; a checkpoint is saved every
--save-every steps and at the end, so an interrupted run resumes where its last checkpoint left it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from spatial.feedforward.config import tiny_config
from spatial.feedforward.data import check_sizes, load_capture_frames, make_batch
from spatial.feedforward.losses import LossWeights, geometry_loss
from spatial.feedforward.model import build_vggt
from spatial.feedforward.runtime import pick_device, trunk_autocast
from spatial.feedforward.weights import load_vggt_weights, read_checkpoint_config, save_vggt_weights
from twin_kit import InputError, atomic_output, emit_json, info, progress

WEIGHTS = "model.safetensors"
STATE = "state.pt"
LOG = "train.json"
MARKER = "geometry run"   # written into train.json: what --overwrite may replace


def is_geometry_run(path: Path) -> bool:
    try:
        return json.loads((Path(path) / LOG).read_text()).get("kind") == MARKER
    except (OSError, ValueError, AttributeError):
        return False


def network_config(cfg):
    """The VGGTConfig a run trains: the tiny preset at the run's image size, without the tracking head (the
    synthetic ground truth has no track labels, and --refine finds its own tracks)."""
    if cfg.config != "tiny":
        raise InputError(f"--config {cfg.config}: only 'tiny' trains on the CPU")
    return tiny_config(img_size=cfg.size, enable_track=False)


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train_step(model, optimiser, batch: dict, weights: LossWeights, device: str, clip: float = 1.0) -> dict:
    """One optimiser step on a batch; returns the loss terms as floats (trunk under autocast on CUDA)."""
    model.train()
    batch = {k: v.to(device) for k, v in batch.items()}
    with trunk_autocast(device):
        out = model(batch["images"])
    terms = geometry_loss(out, batch, weights)
    optimiser.zero_grad(set_to_none=True)
    terms["total"].backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimiser.step()
    return {**{k: float(v.detach()) for k, v in terms.items()}, "grad_norm": float(norm)}


@torch.no_grad()
def evaluate_loss(model, batch: dict, weights: LossWeights | None = None, device: str | None = None) -> float:
    """The total loss of a batch without training (eval mode)."""
    device = pick_device(device)
    weights = weights or LossWeights()
    model.eval()
    batch = {k: v.to(device) for k, v in batch.items()}
    with trunk_autocast(device):
        out = model(batch["images"])
    return float(geometry_loss(out, batch, weights)["total"])


def _save(model, optimiser, step: int, out: Path, log: dict) -> None:
    save_vggt_weights(model, out / WEIGHTS)
    with atomic_output(out / STATE) as tmp:
        torch.save({"optimiser": optimiser.state_dict(), "step": step}, tmp)
    with atomic_output(out / LOG) as tmp:
        tmp.write_text(json.dumps(log, indent=1, default=str))


def load_training_captures(cfg) -> list:
    """The training captures at network size, checked against the options (InputError before any output)."""
    captures = [load_capture_frames(Path(c), cfg.size) for c in cfg.captures]
    check_sizes(captures)
    for c in captures:
        if len(c) < cfg.frames:
            raise InputError(f"{c.name}: {len(c)} frames, fewer than --frames {cfg.frames}")
    return captures


def train_geometry(cfg, prog=None, captures: list | None = None) -> dict:
    """Train per `cfg` (a TrainGeometryConfig) into cfg.out; returns the run's log (also written as train.json)."""
    device = pick_device()
    out = Path(cfg.out)
    captures = captures if captures is not None else load_training_captures(cfg)
    h, w = check_sizes(captures)
    torch.manual_seed(cfg.seed)
    netcfg = network_config(cfg)
    model = build_vggt(netcfg).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05, betas=(0.9, 0.95))
    step, history = 0, []
    if cfg.resume and (out / STATE).exists():
        if read_checkpoint_config(out / WEIGHTS) != netcfg:
            raise InputError(f"{out}: its checkpoint has another network configuration; --resume needs the same "
                             "--config and --size")
        load_vggt_weights(model, out / WEIGHTS)
        state = torch.load(out / STATE, map_location=device, weights_only=True)
        optimiser.load_state_dict(state["optimiser"])
        step = int(state["step"])
        history = json.loads((out / LOG).read_text()).get("history", []) if (out / LOG).exists() else []
        info(f"resuming {out} at step {step}")
    rng = np.random.default_rng([cfg.seed, step])
    weights = LossWeights()
    warmup = max(1, min(100, cfg.steps // 10))
    log = {"kind": MARKER, "settings": {k: str(v) if isinstance(v, Path) else v
                                        for k, v in dataclasses.asdict(cfg).items()},
           "network": dataclasses.asdict(netcfg), "image_size": [w, h], "device": device,
           "parameters": int(sum(p.numel() for p in model.parameters())),
           "captures": {c.name: len(c) for c in captures}, "history": history}
    task = prog.add_task("train", total=cfg.steps, completed=step, status="") if prog is not None else None
    t0, start_step = time.perf_counter(), step
    window: list[dict] = []
    while step < cfg.steps:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, cfg.steps, cfg.lr, warmup)
        batch = make_batch(captures, cfg.batch, cfg.frames, cfg.max_stride, rng)
        terms = train_step(model, optimiser, batch, weights, device)
        if not math.isfinite(terms["total"]):
            raise InputError(f"step {step}: the loss is not finite (try a lower --lr)")
        step += 1
        window.append(terms)
        if step % cfg.log_every == 0 or step == cfg.steps:
            mean = {k: round(float(np.mean([t[k] for t in window])), 5) for k in window[0]}
            history.append({"step": step, "lr": round(learning_rate(step - 1, cfg.steps, cfg.lr, warmup), 7),
                            "seconds": round(time.perf_counter() - t0, 1), **mean})
            window = []
        if task is not None:
            prog.update(task, completed=step, status=f"loss {terms['total']:.3f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            log["seconds"] = round(time.perf_counter() - t0, 1)
            log["steps_per_second"] = round((step - start_step) / max(log["seconds"], 1e-9), 3)
            log["step"] = step
            _save(model, optimiser, step, out, log)
    if step == start_step:   # nothing to train (resumed a finished run): keep its files as they are
        log = json.loads((out / LOG).read_text())
    return log


def run_train_geometry(cfg, json_out: bool = False) -> int:
    """CLI entry: check the options and the folder before any work, train, then score held-out captures."""
    from spatial.feedforward.heldout import score_heldout
    from twin_kit import check_output_dir, torch_threads

    out = Path(cfg.out)
    inputs = [*cfg.captures, *cfg.holdout]
    for c in inputs:
        if not (Path(c) / "ground_truth").is_dir():
            raise InputError(f"{c}: not a synthetic capture (no ground_truth/ folder; make one with "
                             "`twin capture synth`)")
    if cfg.resume and out.exists() and not is_geometry_run(out):
        raise InputError(f"--out {out}: not a geometry run; nothing to resume")
    check_output_dir(out, inputs=inputs, overwrite=cfg.overwrite, replaceable=is_geometry_run,
                     kind="geometry run", merge=cfg.resume)
    network_config(cfg)
    captures = load_training_captures(cfg)
    if out.exists() and not cfg.resume and any(out.iterdir()):
        from twin_kit import remove_tree

        remove_tree(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(cfg.threads), progress(cfg.quiet) as prog:
        log = train_geometry(cfg, prog, captures)
    hist = log.get("history") or [{}]
    info(f"[green]trained[/green] {out / WEIGHTS}: {log.get('step')} steps in {log.get('seconds', 0):.0f} s, "
         f"loss {hist[0].get('total', float('nan')):.3f} -> {hist[-1].get('total', float('nan')):.3f}")
    summary = {"weights": str(out / WEIGHTS), "steps": log.get("step"), "seconds": log.get("seconds"),
               "loss_first": hist[0].get("total"), "loss_last": hist[-1].get("total")}
    if cfg.holdout:
        with torch_threads(cfg.threads):
            summary["heldout"] = score_heldout([Path(c) for c in cfg.holdout], out / WEIGHTS, out, sfm=cfg.sfm,
                                               quiet=cfg.quiet)
    if json_out:
        emit_json(summary)
    return 0
