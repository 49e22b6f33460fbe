"""The splat training loop: random training views, L1 + D-SSIM, densification, checkpoints, held-out evaluation."""
from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenes.rendering.camera_paths import camera_tensors
from scenes.splats.gaussians import Gaussians, write_splats_ply
from scenes.splats.losses import photometric_loss, psnr, ssim
from scenes.splats.seed_points import gaussians_from_points, read_points_float, scene_extent
from scenes.splats.strategy import DefaultStrategy, MCMCStrategy
from scenes.splats.train_config import SplatConfig
from spatial import BundlePaths, Camera, atomic_write_bytes, read_bundle, updating_bundle
from twin_kit import InputError

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")
CHECKPOINT_VERSION = 1


class TrainingDiverged(InputError):
    """The loss or the parameters became NaN / exploded; the last good checkpoint is kept."""


@dataclass
class Views:
    """Training and evaluation views at the training resolution (images uint8 (H,W,3) tensors)."""

    cameras: list[Camera]
    images: list[torch.Tensor]
    train: list[int]
    test: list[int]


@dataclass
class SplatResult:
    """What a training run produced."""

    gaussians: Gaussians
    cpu_seconds: float
    psnr: float
    ssim: float
    num_gaussians: int
    seconds: float
    steps: int
    resolution: str


# ---------------------------------------------------------------------------------------------- data

def split_indices(n: int, every: int) -> tuple[list[int], list[int]]:
    """(train, test): every `every`-th frame is held out (as 3DGS's llffhold), none when every <= 0."""
    test = [i for i in range(n) if every > 0 and i % every == 0]
    train = [i for i in range(n) if i not in set(test)]
    return train, test


def scale_for(cam: Camera, resolution: int) -> float:
    """Factor that brings the camera's long side to `resolution` (never upsamples; 0 = keep)."""
    if resolution <= 0:
        return 1.0
    return min(1.0, resolution / max(cam.width, cam.height))


def scaled_camera(cam: Camera, s: float) -> Camera:
    """The camera for its image resized by s (Twin's OpenCV convention: pixel centres at integers)."""
    return cam if s == 1.0 else cam.scaled(s)


def half_resolution(cam: Camera, ref: torch.Tensor) -> tuple[Camera, torch.Tensor]:
    """The view at half size: 2x2 box-filtered image (odd edges cropped) and the matching camera."""
    h, w = ref.shape[0] // 2, ref.shape[1] // 2
    small = ref[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean((1, 3))
    return dataclasses.replace(cam, width=w, height=h, fx=cam.fx / 2, fy=cam.fy / 2, cx=(cam.cx + 0.5) / 2 - 0.5,
                               cy=(cam.cy + 0.5) / 2 - 0.5), small


def load_image(path: Path, width: int, height: int) -> torch.Tensor:
    """An RGB uint8 (H,W,3) tensor, area-resampled to width x height."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: missing or unreadable image")
    if img.shape[1] != width or img.shape[0] != height:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1]))


def load_views(bundle_root: Path, cameras: list[Camera], resolution: int, eval_every_n: int) -> Views:
    """Cameras sorted by name and scaled, their images loaded at that size, and the train / test split."""
    if len(cameras) < 2:
        raise InputError(f"{bundle_root}: need at least 2 cameras to train splats, found {len(cameras)}")
    cams = sorted(cameras, key=lambda c: c.name)
    scaled, images = [], []
    for c in cams:
        if c.image is None:
            raise InputError(f"{bundle_root}: camera {c.name!r} has no image")
        sc = scaled_camera(c, scale_for(c, resolution))
        scaled.append(sc)
        images.append(load_image(bundle_root / c.image, sc.width, sc.height))
    train, test = split_indices(len(cams), eval_every_n)
    if not train:
        raise InputError("no training views left after holding out evaluation frames")
    return Views(scaled, images, train, test)


# ---------------------------------------------------------------------------------------------- rendering

def render_params(params: dict[str, torch.Tensor], cam: Camera, sh_degree: int | None = None,
                  background: torch.Tensor | None = None, backend: str = "auto",
                  grad_holder: torch.Tensor | None = None):
    """Render raw Gaussian parameters from a camera with scenes.rasterize (activations applied here)."""
    from scenes.rendering.rasterize import rasterize

    dev = params["means"].device
    viewmat, K = camera_tensors(cam, dev)
    sh = torch.cat([params["sh_dc"][:, None, :], params["sh_rest"]], dim=1)
    return rasterize(params["means"], params["quats"], torch.exp(params["log_scales"]),
                     torch.sigmoid(params["opacity_logits"]), sh, viewmat, K, cam.width, cam.height,
                     sh_degree=sh_degree, background=background, backend=backend,
                     means2d_grad_holder=grad_holder)


@torch.no_grad()
def evaluate(params: dict[str, torch.Tensor], views: Views, idx: list[int], background: torch.Tensor,
             backend: str = "auto") -> tuple[float, float]:
    """Mean PSNR and SSIM of the renders of views `idx` against their images."""
    if not idx:
        return float("nan"), float("nan")
    ps, ss = [], []
    dev = params["means"].device
    for i in idx:
        img = render_params(params, views.cameras[i], background=background, backend=backend).image.clamp(0, 1)
        ref = views.images[i].to(dev).float() / 255.0
        ps.append(psnr(img, ref))
        ss.append(float(ssim(img, ref)))
    return float(np.mean(ps)), float(np.mean(ss))


# ---------------------------------------------------------------------------------------------- optimisation

def make_optimizers(params: dict[str, torch.nn.Parameter], cfg: SplatConfig, extent: float
                    ) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter (so that densification can edit each one's moments), 3DGS learning rates."""
    lrs = {"means": cfg.lr_means * extent, "quats": cfg.lr_quats, "log_scales": cfg.lr_scales,
           "opacity_logits": cfg.lr_opacity, "sh_dc": cfg.lr_sh_dc, "sh_rest": cfg.lr_sh_rest}
    return {n: torch.optim.Adam([params[n]], lr=lrs[n], eps=1e-15) for n in PARAM_NAMES}


def means_lr(step: int, cfg: SplatConfig, extent: float) -> float:
    """Exponential decay of the centres' learning rate from lr_means to lr_means_final (times extent)."""
    t = min(max(step / max(cfg.steps, 1), 0.0), 1.0)
    return extent * math.exp(math.log(cfg.lr_means) * (1 - t) + math.log(cfg.lr_means_final) * t)


def make_strategy(cfg: SplatConfig):
    stop = int(cfg.steps * cfg.refine_stop_fraction)
    if cfg.strategy == "mcmc":
        return MCMCStrategy(max_gaussians=cfg.max_gaussians, refine_start=cfg.refine_start, refine_stop=stop,
                            refine_every=cfg.refine_every)
    if cfg.strategy == "default":
        return DefaultStrategy(max_gaussians=cfg.max_gaussians, grad_threshold=cfg.grad_threshold,
                               refine_start=cfg.refine_start, refine_stop=stop, refine_every=cfg.refine_every,
                               reset_every=cfg.reset_opacity_every)
    raise InputError(f"unknown densification strategy {cfg.strategy!r} (default or mcmc)")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


def _background(kind: str, device) -> torch.Tensor:
    if kind == "white":
        return torch.ones(3, device=device)
    if kind == "random":
        return torch.rand(3, device=device)
    return torch.zeros(3, device=device)


# ---------------------------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, step: int, params, optims, strategy_state: dict, extent: float,
                    elapsed: float, meta: dict) -> None:
    """torch.save of everything needed to resume, written atomically; refuses non-finite parameters."""
    for n, p in params.items():
        if not torch.isfinite(p.data).all():
            raise TrainingDiverged(f"parameter {n} is not finite at step {step}; checkpoint not written")
    buf = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, "step": step, "extent": extent, "elapsed": elapsed, "meta": meta,
                "params": {n: p.data.cpu() for n, p in params.items()},
                "optims": {n: o.state_dict() for n, o in optims.items()},
                "strategy": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in strategy_state.items()},
                "rng": torch.get_rng_state()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise InputError(f"nothing to resume: no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types on damaged files
        raise InputError(f"{path}: damaged checkpoint ({type(e).__name__})") from None
    if ck.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {ck.get('version')!r} is not supported")
    return ck


# ---------------------------------------------------------------------------------------------- the loop

def initial_points(bundle, views: Views, cfg: SplatConfig) -> tuple[np.ndarray, np.ndarray]:
    """The fused points, plus (with cfg.backdrop) seeds on the support plane and a far shell, within the budget."""
    from spatial import camera_focus

    xyz, rgb = read_points_float(bundle.paths.points)
    rng = np.random.default_rng(cfg.seed)
    extra = (np.zeros((0, 3)), np.zeros((0, 3)))
    if cfg.backdrop:
        from scenes.splats.seed_backdrop import BackdropConfig, backdrop_points

        train_cams = [views.cameras[i] for i in views.train]
        focus = camera_focus(train_cams)
        if focus is None:
            focus = np.median(xyz, axis=0)
        seeds = min(int(1.5 * cfg.backdrop_points), int(0.4 * cfg.max_gaussians))  # at most 40 % of the budget
        has_plane = bool(bundle.manifest.get("support_plane"))
        bc = BackdropConfig(plane_points=2 * seeds // 3 if has_plane else 0,
                            shell_points=seeds // 3 if has_plane else seeds)
        extra = backdrop_points(train_cams, [views.images[i] for i in views.train], focus,
                                plane_z=0.0, cfg=bc, seed=cfg.seed)
    room = cfg.max_gaussians - len(extra[0])
    if len(xyz) > room:
        keep = rng.choice(len(xyz), room, replace=False)
        xyz, rgb = xyz[keep], rgb[keep]
    return np.concatenate([xyz, extra[0]]), np.concatenate([rgb, extra[1]])


def _non_finite(params: dict[str, torch.Tensor], names) -> list[str]:
    return [n for n in names if not torch.isfinite(params[n].data).all()]


def _diverged(step: int, why: str, last_good: int | None, ck_path: Path):
    where = (f"last good checkpoint (step {last_good}) kept at {ck_path}" if last_good is not None
             else "no checkpoint was written yet")
    raise TrainingDiverged(f"training diverged at step {step} ({why}); {where}; try lower learning rates")


def train(cfg: SplatConfig, on_step: Callable[[int, dict], None] | None = None) -> SplatResult:
    """Train splats on a bundle; writes checkpoints but not the bundle (see `write_result`).

    `on_step(step, params)` is called before each step (progress hooks, tests).
    """
    from twin_kit import progress

    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = resolve_device(cfg.device)
    if not 0 <= cfg.sh_degree <= 3:
        raise InputError(f"--sh-degree must be 0..3, got {cfg.sh_degree}")
    if cfg.steps < 1:
        raise InputError(f"--steps must be positive, got {cfg.steps}")
    bundle = read_bundle(cfg.bundle)
    views = load_views(bundle.root, bundle.cameras, cfg.resolution, cfg.eval_every_n)
    extent = scene_extent(np.stack([c.center for c in views.cameras]))
    strategy = make_strategy(cfg)
    ck_path = cfg.checkpoint_path()
    meta = {"bundle": str(bundle.root), "num_cameras": len(views.cameras),
            "resolution": [views.cameras[0].width, views.cameras[0].height], "sh_degree": cfg.sh_degree}

    start, elapsed0 = 0, 0.0
    if cfg.resume:
        ck = load_checkpoint(ck_path)
        if ck["meta"].get("num_cameras") != meta["num_cameras"] or ck["meta"].get("resolution") != meta["resolution"]:
            raise InputError(f"{ck_path}: checkpoint was trained on other views or another resolution; "
                             "train without --resume")
        params = {n: torch.nn.Parameter(ck["params"][n].to(device)) for n in PARAM_NAMES}
        optims = make_optimizers(params, cfg, extent)
        for n, o in optims.items():
            o.load_state_dict(ck["optims"][n])
        sstate = {k: (v.to("cpu") if torch.is_tensor(v) else v) for k, v in ck["strategy"].items()}
        start, elapsed0 = int(ck["step"]), float(ck.get("elapsed", 0.0))
        torch.set_rng_state(ck["rng"])
        rng = np.random.default_rng(cfg.seed + start)
    else:
        xyz, rgb = initial_points(bundle, views, cfg)
        g = gaussians_from_points(xyz, rgb, cfg.sh_degree, cfg.init_opacity, seed=cfg.seed)
        params = {n: torch.nn.Parameter(t.to(device).contiguous()) for n, t in zip(PARAM_NAMES, g.tensors())}
        optims = make_optimizers(params, cfg, extent)
        sstate = strategy.init_state(len(g), extent)

    images = [im.to(device) for im in views.images]
    eval_bg = _background("white" if cfg.background == "white" else "black", device)
    last_good = start if cfg.resume else None
    ema_loss, ema_psnr, eval_psnr = None, None, float("nan")
    order: list[int] = []
    with progress(cfg.quiet) as bar:
        task = bar.add_task("splat", total=cfg.steps, completed=start, status="")
        for step in range(start, cfg.steps):
            if on_step is not None:
                on_step(step, params)
            if not order:
                order = list(rng.permutation(views.train))
            i = int(order.pop())
            cam, ref = views.cameras[i], images[i].float() / 255.0
            if step < cfg.coarse_fraction * cfg.steps:  # cheap warm-up at half resolution
                cam, ref = half_resolution(cam, ref)
            for g_ in optims["means"].param_groups:
                g_["lr"] = means_lr(step, cfg, extent)
            sh_deg = min(cfg.sh_degree, step // max(cfg.sh_increase_every, 1))
            holder = torch.zeros(len(params["means"]), 2, device=device, requires_grad=True)
            bg = _background(cfg.background, device)
            out = render_params(params, cam, sh_degree=sh_deg, background=bg, backend=cfg.backend,
                                grad_holder=holder)
            loss = photometric_loss(out.image, ref, cfg.ssim_lambda) + strategy.regularisation(params)
            lv = float(loss.detach())
            bad = _non_finite(params, ("means", "quats", "log_scales", "opacity_logits"))
            if bad or not math.isfinite(lv) or (ema_loss is not None and lv > max(20 * ema_loss, 2.0)):
                _diverged(step, f"non-finite {', '.join(bad)}" if bad else f"loss {lv:.4g}", last_good, ck_path)
            loss.backward()
            for o in optims.values():
                o.step()
                o.zero_grad(set_to_none=True)
            info = {"means2d_grad": holder.grad, "radii": out.radii, "width": cam.width, "height": cam.height}
            strategy.step_post_backward(params, optims, sstate, step + 1, info,
                                        lr_means=means_lr(step, cfg, extent))
            ema_loss = lv if ema_loss is None else 0.95 * ema_loss + 0.05 * lv
            p = psnr(out.image, ref)
            ema_psnr = p if ema_psnr is None else 0.95 * ema_psnr + 0.05 * p
            done = step + 1
            if cfg.eval_interval and done % cfg.eval_interval == 0 and done < cfg.steps and views.test:
                eval_psnr = evaluate(params, views, views.test[::4], eval_bg, cfg.backend)[0]
                if not cfg.quiet:
                    bar.console.print(f"step {done}: held-out PSNR {eval_psnr:.2f} (every 4th test view), train "
                                      f"PSNR {ema_psnr:.2f}, {len(params['means'])} Gaussians, "
                                      f"{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU",
                                      highlight=False)
            if done % max(cfg.checkpoint_every, 1) == 0 or done == cfg.steps:
                bad = _non_finite(params, PARAM_NAMES)
                if bad:
                    _diverged(done, f"non-finite {', '.join(bad)}", last_good, ck_path)
                elapsed = elapsed0 + time.perf_counter() - t0
                save_checkpoint(ck_path, done, params, optims, sstate, extent, elapsed, meta)
                last_good = done
            held = "-" if math.isnan(eval_psnr) else f"{eval_psnr:.2f}"
            bar.update(task, completed=done, status=f"loss {ema_loss:.4f}  train PSNR {ema_psnr:.2f}  "
                       f"held-out {held}  N {len(params['means'])}")
    final_psnr, final_ssim = evaluate(params, views, views.test or views.train, eval_bg, cfg.backend)
    seconds = elapsed0 + time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    g = Gaussians(*(params[n].detach().cpu() for n in PARAM_NAMES))
    cam0 = views.cameras[0]
    return SplatResult(gaussians=g, cpu_seconds=cpu_seconds, psnr=final_psnr, ssim=final_ssim,
                       num_gaussians=len(g), seconds=seconds, steps=cfg.steps,
                       resolution=f"{cam0.width}x{cam0.height}")


def write_result(bundle_path: Path, result: SplatResult, cfg: SplatConfig) -> None:
    """Put splats.ply into the bundle atomically and record the metrics and timing in scene.json."""
    with updating_bundle(bundle_path) as (tmp, manifest):
        dest = BundlePaths(tmp).splats
        if dest.exists():
            dest.unlink()
        write_splats_ply(dest, result.gaussians)
        metrics = dict(manifest.get("metrics") or {})
        metrics["splat"] = {"psnr": result.psnr, "ssim": result.ssim, "num_gaussians": result.num_gaussians,
                            "seconds": round(result.seconds, 2), "cpu_seconds": round(result.cpu_seconds, 2),
                            "steps": result.steps,
                            "resolution": result.resolution, "strategy": cfg.strategy,
                            "held_out": f"every {cfg.eval_every_n}th frame" if cfg.eval_every_n > 0 else "none",
                            "config": {k: (str(v) if isinstance(v, Path) else v)
                                       for k, v in dataclasses.asdict(cfg).items()}}
        manifest["metrics"] = metrics
        timings = dict(manifest.get("timings") or {})
        timings["splat"] = round(result.seconds, 2)
        manifest["timings"] = timings
