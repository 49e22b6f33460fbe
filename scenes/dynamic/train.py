"""Training 4D Gaussians (4DGaussians' recipe): a static warm-up (the coarse stage: plain 3DGS), then the
canonical Gaussians and the deformation field together, each training view rendered at its own time.

In the same run a static baseline continues the warm-up as plain 3DGS for the remaining steps, on the same
views in the same order, so `psnr_static` is static 3DGS trained on the same frames and steps. The pieces are
the static trainer's: views, rasterizer, losses, learning rates and densification (which edits the canonical
set while the field keeps its own optimisers).

With cfg.exposure both models render each training view through its own exposure gain (a phone's auto exposure
drifts), learned from the warm-up on and forked with it; held-out views take gains interpolated in time, so
neither model is scored on an exposure it could not know and the gap still measures the motion.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scenes.dynamic.deformation import DeformationConfig, DeformationField, robust_bounds
from scenes.dynamic.model import DynamicSplats, deform_params, time_axis
from scenes.splats.exposure import Exposure, interpolate_gains
from scenes.splats.gaussians import Gaussians
from scenes.splats.losses import photometric_loss, psnr, ssim
from scenes.splats.seed_points import gaussians_from_points, scene_extent
from scenes.splats.train import (
    PARAM_NAMES,
    TrainingDiverged,
    Views,
    _background,
    half_resolution,
    initial_points,
    load_views,
    make_optimizers,
    make_strategy,
    means_lr,
    render_params,
    resolve_device,
)
from scenes.splats.train_config import SplatConfig
from spatial import read_bundle
from twin_kit import InputError

# 4DGaussians' plane regularisers (its HyperNeRF settings): weights in the loss
PLANE_TV = 2e-4
TIME_SMOOTHNESS = 1e-3
TIME_L1 = 1e-4
FPS_SIDE = 480  # render_fps is measured at this long side
FPS_FRAMES = 8


@dataclass
class Phase:
    """One optimisation's state: raw Gaussian parameters, one Adam per parameter, densification state and the
    per-frame exposure gains (None when exposure is not compensated)."""

    params: dict[str, torch.nn.Parameter]
    optims: dict[str, torch.optim.Adam]
    sstate: dict
    exposure: Exposure | None = None

    def fork(self, cfg: SplatConfig, extent: float) -> Phase:
        """An independent copy (parameters, Adam moments, densification state, exposure) that trains on by
        itself."""
        params = {n: torch.nn.Parameter(p.detach().clone()) for n, p in self.params.items()}
        optims = make_optimizers(params, cfg, extent)
        for n, o in optims.items():
            o.load_state_dict(copy.deepcopy(self.optims[n].state_dict()))
        sstate = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.sstate.items()}
        return Phase(params, optims, sstate, None if self.exposure is None else self.exposure.fork())

    def gain_table(self, ctx: Context) -> np.ndarray | None:
        """(views, 3) exposure log-gains: learned for training views, interpolated in time for held-out ones;
        None without exposure compensation."""
        if self.exposure is None:
            return None
        return interpolate_gains(self.exposure.table(), ctx.times, ctx.views.train)

    def eval_gains(self, ctx: Context) -> torch.Tensor | None:
        """(views, 3) gains to render every view with (`gain_table`, exponentiated on the device)."""
        table = self.gain_table(ctx)
        return None if table is None else torch.exp(torch.as_tensor(table, dtype=torch.float32, device=ctx.device))

    def fold_exposure(self) -> None:
        """After training: the gains' mean moves into the colours (see Exposure.fold_into)."""
        if self.exposure is not None:
            self.exposure.fold_into(self.params)

    def gaussians(self) -> Gaussians:
        return Gaussians(*(self.params[n].detach().cpu() for n in PARAM_NAMES))


@dataclass
class Context:
    """What every step reads: the configuration, views (images on the device), per-view times, scene extent."""

    cfg: SplatConfig
    views: Views
    images: list[torch.Tensor]
    times: list[float]
    extent: float
    strategy: object
    device: torch.device


@dataclass
class FieldOptimiser:
    """Adam over the field's MLP and its planes, each learning rate decaying tenfold over the joint steps."""

    adam: torch.optim.Adam
    lrs: tuple[float, float]
    first: int
    last: int

    def step(self, step: int) -> None:
        u = min(max((step - self.first) / max(self.last - self.first, 1), 0.0), 1.0)
        for g, lr in zip(self.adam.param_groups, self.lrs):
            g["lr"] = lr * 0.1 ** u
        self.adam.step()
        self.adam.zero_grad(set_to_none=True)


@dataclass
class DynamicResult:
    """What a dynamic run produced, with the same run's static baseline."""

    dyn: DynamicSplats
    psnr: float
    ssim: float
    psnr_static: float
    ssim_static: float
    seconds: float
    seconds_static: float
    steps: int
    warmup_steps: int
    num_gaussians: int
    num_gaussians_static: int
    resolution: str
    render_fps: float
    render_fps_static: float
    log_gains: np.ndarray | None = None  # (views, 3) the dynamic model's exposure log-gains (held-out: interpolated)


def step_once(ctx: Context, ph: Phase, step: int, i: int, field: DeformationField | None = None,
              fopt: FieldOptimiser | None = None) -> tuple[float, float]:
    """One optimisation step on view i (at its time when a field is given); returns (loss, PSNR)."""
    cfg, dev = ctx.cfg, ctx.device
    cam, ref = ctx.views.cameras[i], ctx.images[i].float() / 255.0
    if step < cfg.coarse_fraction * cfg.steps:  # cheap warm-up at half resolution, as the static trainer does
        cam, ref = half_resolution(cam, ref)
    lr_means = means_lr(step, cfg, ctx.extent)
    for g in ph.optims["means"].param_groups:
        g["lr"] = lr_means
    holder = torch.zeros(len(ph.params["means"]), 2, device=dev, requires_grad=True)
    p = ph.params if field is None else deform_params(ph.params, field, ctx.times[i])
    out = render_params(p, cam, sh_degree=min(cfg.sh_degree, step // max(cfg.sh_increase_every, 1)),
                        background=_background(cfg.background, dev), backend=cfg.backend, grad_holder=holder)
    image = out.image
    if ph.exposure is not None:  # this view's gain for its current render, then the render as it was exposed
        ph.exposure.fit(out.image, ref, i)
        image = ph.exposure.apply(out.image, i)
    loss = photometric_loss(image, ref, cfg.ssim_lambda) + ctx.strategy.regularisation(ph.params)
    if field is not None:
        r = field.grid.regularisers()
        loss = loss + PLANE_TV * r["plane_tv"] + TIME_SMOOTHNESS * r["time_smoothness"] + TIME_L1 * r["time_l1"]
    lv = float(loss.detach())
    if not math.isfinite(lv):
        raise TrainingDiverged(f"training diverged at step {step} (loss {lv}); try lower learning rates")
    loss.backward()
    for o in ph.optims.values():
        o.step()
        o.zero_grad(set_to_none=True)
    if fopt is not None:
        fopt.step(step)
    info = {"means2d_grad": holder.grad, "radii": out.radii, "width": cam.width, "height": cam.height}
    ctx.strategy.step_post_backward(ph.params, ph.optims, ph.sstate, step + 1, info, lr_means=lr_means)
    return lv, psnr(image, ref)


@torch.no_grad()
def evaluate_views(ctx: Context, params: dict[str, torch.Tensor], idx: list[int],
                   field: DeformationField | None = None, gains: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean PSNR and SSIM over views `idx`, each rendered at its own time when a field is given and scaled by
    its exposure gain when `gains` (views, 3) are given."""
    if not idx:
        return float("nan"), float("nan")
    bg = _background("white" if ctx.cfg.background == "white" else "black", ctx.device)
    ps, ss = [], []
    for i in idx:
        p = params if field is None else deform_params(params, field, ctx.times[i])
        img = render_params(p, ctx.views.cameras[i], background=bg, backend=ctx.cfg.backend).image
        img = (img if gains is None else img * gains[i]).clamp(0, 1)
        ref = ctx.images[i].float() / 255.0
        ps.append(psnr(img, ref))
        ss.append(float(ssim(img, ref)))
    return float(np.mean(ps)), float(np.mean(ss))


@torch.no_grad()
def render_fps(ctx: Context, params: dict[str, torch.Tensor], field: DeformationField | None) -> float:
    """Frames per second of rendering (deformation included) at FPS_SIDE pixels on the long side."""
    cams = [ctx.views.cameras[i] for i in (ctx.views.test or ctx.views.train)]
    cams = [cams[k % len(cams)] for k in range(FPS_FRAMES)]
    bg = _background("black", ctx.device)
    render_params(params, cams[0].scaled(FPS_SIDE / max(cams[0].width, cams[0].height)), background=bg,
                  backend=ctx.cfg.backend)  # warm-up (kernel load)
    t0 = time.perf_counter()
    for k, cam in enumerate(cams):
        p = params if field is None else deform_params(params, field, k / max(len(cams) - 1, 1))
        render_params(p, cam.scaled(FPS_SIDE / max(cam.width, cam.height)), background=bg, backend=ctx.cfg.backend)
    return len(cams) / (time.perf_counter() - t0)


def _check(cfg: SplatConfig) -> None:
    if cfg.resume:
        raise InputError("--resume is not supported with --dynamic yet (dynamic training writes no checkpoints)")
    if cfg.eval_every_n == 0:
        raise InputError("--dynamic needs held-out frames to score against (--eval-every-n >= 2)")


def _rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def field_config(cfg: SplatConfig, means: torch.Tensor, frames: int) -> DeformationConfig:
    """The field's architecture for this run: bounds from the warm-up's centres, time cells from the frames."""
    t_res = cfg.time_resolution or max(4, frames // 8)
    return DeformationConfig(resolution=cfg.plane_resolution, multires=tuple(2 ** k for k in range(cfg.plane_levels)),
                             time_resolution=t_res, features=cfg.plane_features,
                             width=cfg.deform_width, bounds=robust_bounds(means))


def train_dynamic(cfg: SplatConfig, on_step: Callable[[int, dict], None] | None = None) -> DynamicResult:
    """Warm-up, joint training and the static baseline; nothing is written (see scenes.dynamic.cli)."""
    from twin_kit import progress

    _check(cfg)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    bundle = read_bundle(cfg.bundle)
    views = load_views(bundle.root, bundle.cameras, cfg.resolution, cfg.eval_every_n)
    axis, times = time_axis(views.cameras)
    extent = scene_extent(np.stack([c.center for c in views.cameras]))
    ctx = Context(cfg, views, [im.to(device) for im in views.images], times, extent, make_strategy(cfg), device)
    xyz, rgb = initial_points(bundle, views, cfg)
    g = gaussians_from_points(xyz, rgb, cfg.sh_degree, cfg.init_opacity, seed=cfg.seed)
    params = {n: torch.nn.Parameter(t.to(device).contiguous()) for n, t in zip(PARAM_NAMES, g.tensors())}
    ph = Phase(params, make_optimizers(params, cfg, extent), ctx.strategy.init_state(len(g), extent),
               Exposure.make(len(views.cameras), device) if cfg.exposure else None)
    warm = min(int(cfg.warmup_fraction * cfg.steps), cfg.steps - 1)
    rest = cfg.steps - warm
    total = cfg.steps + (rest if cfg.static_baseline else 0)

    def order(phase: int):
        rng = np.random.default_rng([cfg.seed, phase])
        while True:
            yield from (int(i) for i in rng.permutation(views.train))

    with progress(cfg.quiet) as bar:
        task = bar.add_task("splat --dynamic", total=total, status="")

        def run(ph_: Phase, first: int, last: int, stream, label: str, field=None, fopt=None) -> None:
            ema = None
            for step in range(first, last):
                if on_step is not None:
                    on_step(step, ph_.params)
                _, p = step_once(ctx, ph_, step, next(stream), field, fopt)
                ema = p if ema is None else 0.95 * ema + 0.05 * p
                bar.update(task, advance=1, status=f"{label} step {step + 1}/{cfg.steps}  train PSNR {ema:.2f}  "
                                                   f"N {len(ph_.params['means'])}")
                done = step + 1
                if cfg.eval_interval and done % cfg.eval_interval == 0 and done < cfg.steps and not cfg.quiet:
                    held = evaluate_views(ctx, ph_.params, views.test[::4], field, ph_.eval_gains(ctx))[0]
                    bar.console.print(f"{label} step {done}: held-out PSNR {held:.2f} (every 4th test view), "
                                      f"train PSNR {ema:.2f}, {len(ph_.params['means'])} Gaussians, "
                                      f"{time.perf_counter() - t_start:.0f} s", highlight=False)

        run(ph, 0, warm, order(0), "warm-up")
        t_warm = time.perf_counter() - t_start
        base = ph.fork(cfg, extent) if cfg.static_baseline else None
        rng_at_fork = _rng_state(device)  # the baseline draws the same random numbers whatever the field
        field = DeformationField(field_config(cfg, ph.params["means"], len(views.cameras))).to(device)
        # the MLP's output is a change of centre in metres, so its rate follows the scene's size (as 3DGS's
        # centres do); the planes hold unit-free features over the normalised bounds, so theirs does not
        lrs = (cfg.lr_deform * extent, cfg.lr_grid)
        adam = torch.optim.Adam([{"params": field.mlp_parameters(), "lr": lrs[0]},
                                 {"params": field.grid_parameters(), "lr": lrs[1]}], eps=1e-15)
        t0 = time.perf_counter()
        run(ph, warm, cfg.steps, order(1), "joint", field, FieldOptimiser(adam, lrs, warm, cfg.steps))
        field.eval()
        ph.fold_exposure()
        psnr_d, ssim_d = evaluate_views(ctx, ph.params, views.test, field, ph.eval_gains(ctx))
        seconds = t_warm + time.perf_counter() - t0
        psnr_s = ssim_s = fps_s = float("nan")
        seconds_s = n_static = 0
        if base is not None:
            t0 = time.perf_counter()
            _set_rng_state(device, rng_at_fork)
            run(base, warm, cfg.steps, order(1), "static baseline")
            base.fold_exposure()
            psnr_s, ssim_s = evaluate_views(ctx, base.params, views.test, None, base.eval_gains(ctx))
            seconds_s = t_warm + time.perf_counter() - t0
            n_static = len(base.params["means"])
            fps_s = render_fps(ctx, base.params, None)
    fps = render_fps(ctx, ph.params, field)
    dyn = DynamicSplats(ph.gaussians(), field.cpu(), axis)
    cam0 = views.cameras[0]
    return DynamicResult(dyn=dyn, psnr=psnr_d, ssim=ssim_d, psnr_static=psnr_s, ssim_static=ssim_s,
                         seconds=seconds, seconds_static=seconds_s, steps=cfg.steps, warmup_steps=warm,
                         num_gaussians=len(dyn.canonical), num_gaussians_static=n_static,
                         resolution=f"{cam0.width}x{cam0.height}", render_fps=fps, render_fps_static=fps_s,
                         log_gains=ph.gain_table(ctx))
