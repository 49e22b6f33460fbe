"""Benchmark: Twin's Warp CPU rasterizer against the dense PyTorch reference on the same scenes, in one run.

    python benches/rasterize.py [--json] [--quick]

Per scene (random Gaussians in front of the camera, each covering a few to tens of pixels): forward and
forward+backward wall time of both, their ratio, and the max abs differences of image and gradients (loss =
sum(image * w), w ~ N(0, 1) on a random subset of pixels, 0 elsewhere); "rel" differences are divided by the
largest reference gradient of that parameter. The reference runs on that pixel subset only (on whole images
it would take hours on 2 cores) and its time is scaled to the whole image. Then Warp alone at the training
size (272x480, 100k-200k Gaussians), wall time and one-thread CPU time. --json prints one JSON object
as the last line.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

from scenes import rasterize
from twin_kit import machine

PARAMS = ("means", "quats", "scales", "opacities", "sh")


def make_scene(n: int, width: int, height: int, seed: int = 0, degree: int = 3):
    """n Gaussians spread over the view frustum 2-6 m away; per-axis std of 0.4-2 px on screen."""
    g = torch.Generator().manual_seed(seed)
    f = 0.8 * width
    z = 2.0 + 4.0 * torch.rand(n, generator=g)
    u = torch.rand(n, generator=g) * 1.1 - 0.05
    v = torch.rand(n, generator=g) * 1.1 - 0.05
    means = torch.stack([(u - 0.5) * width / f * z, (v - 0.5) * height / f * z, z], dim=1)
    quats = torch.randn(n, 4, generator=g)
    std_px = torch.exp(torch.rand(n, 3, generator=g) * math.log(5.0)) * 0.4
    scales = std_px * z[:, None] / f
    opacities = torch.sigmoid(torch.randn(n, generator=g) * 1.5)
    sh = torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.1
    sh[:, 0] = torch.randn(n, 3, generator=g) * 0.8
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return [means, quats, scales, opacities, sh], torch.eye(4), K


def run_once(params, view, K, width, height, backend, weights=None):
    """One forward (+ backward when weights given): (outputs, grads, fwd seconds, bwd seconds, fwd cpu, bwd cpu)."""
    ps = [p.clone().requires_grad_(weights is not None) for p in params]
    c0, t0 = time.process_time(), time.perf_counter()
    out = rasterize(*ps, view, K, width, height, backend=backend)
    c1, t1 = time.process_time(), time.perf_counter()
    grads = None
    if weights is not None:
        (out.image * weights).sum().backward()
        grads = {n: p.grad for n, p in zip(PARAMS, ps)}
    c2, t2 = time.process_time(), time.perf_counter()
    return out, grads, t1 - t0, t2 - t1, c1 - c0, c2 - c1


def run_reference(params, view, K, width, height, pixel_ids, weights):
    """Dense PyTorch reference on a subset of pixels (loss restricted to them): outputs, grads, fwd s, bwd s."""
    from scenes import rasterize_reference

    ps = [p.clone().requires_grad_(True) for p in params]
    t0 = time.perf_counter()
    color, _, alpha, _, _ = rasterize_reference(*ps, view, K, width, height, 3, 0.01, 1e10, pixel_ids=pixel_ids)
    t1 = time.perf_counter()
    (color * weights.reshape(-1, 3)[pixel_ids]).sum().backward()
    t2 = time.perf_counter()
    return color.detach(), alpha.detach(), {n: p.grad for n, p in zip(PARAMS, ps)}, t1 - t0, t2 - t1


def compare_scene(n: int, width: int, height: int, ref_pixels: int, repeats: int) -> dict:
    """Warp (whole image) against the reference on ref_pixels random pixels; reference times are scaled up
    by (width * height / ref_pixels) to the whole image (its cost is linear in the pixel count)."""
    params, view, K = make_scene(n, width, height)
    gen = torch.Generator().manual_seed(1)
    pixel_ids = torch.randperm(width * height, generator=gen)[:ref_pixels].sort().values
    w = torch.zeros(width * height, 3)
    w[pixel_ids] = torch.randn(len(pixel_ids), 3, generator=gen)
    w = w.reshape(height, width, 3)
    run_once(params, view, K, width, height, "warp", w)  # warm-up (kernel load)
    fw, fb, cf, cb = [], [], [], []
    for _ in range(repeats):
        out, grads, tf, tb, ctf, ctb = run_once(params, view, K, width, height, "warp", w)
        fw.append(tf)
        fb.append(tf + tb)
        cf.append(ctf)
        cb.append(ctf + ctb)
    rcol, ralpha, rgrads, rtf, rtb = run_reference(params, view, K, width, height, pixel_ids, w)
    scale = width * height / len(pixel_ids)
    rtf, rtb = rtf * scale, rtb * scale
    diff_img = (out.image.reshape(-1, 3)[pixel_ids] - rcol).abs().max().item()
    gd = {k: (grads[k] - rgrads[k]).abs().max().item() for k in PARAMS}
    gr = {k: gd[k] / max(rgrads[k].abs().max().item(), 1e-30) for k in PARAMS}
    warp_f, warp_fb = sorted(fw)[len(fw) // 2], sorted(fb)[len(fb) // 2]
    return dict(
        n=n, width=width, height=height, visible=int((out.radii > 0).sum()),
        mean_alpha=round(out.alpha.mean().item(), 4), ref_pixels=len(pixel_ids),
        warp_fwd_s=warp_f, warp_fwdbwd_s=warp_fb, warp_fwd_cpu_s=sorted(cf)[len(cf) // 2],
        warp_fwdbwd_cpu_s=sorted(cb)[len(cb) // 2], ref_fwd_s=rtf, ref_fwdbwd_s=rtf + rtb,
        speedup_fwd=rtf / warp_f, speedup_fwdbwd=(rtf + rtb) / warp_fb,
        max_abs_diff_image=diff_img,
        max_abs_diff_alpha=(out.alpha.reshape(-1, 1)[pixel_ids] - ralpha).abs().max().item(),
        max_abs_diff_grad=max(gd.values()), max_rel_diff_grad=max(gr.values()),
        grad_abs_diff=gd, grad_rel_diff=gr,
    )


def time_warp(n: int, width: int, height: int, repeats: int) -> dict:
    params, view, K = make_scene(n, width, height, seed=2)
    w = torch.randn(height, width, 3, generator=torch.Generator().manual_seed(1))
    run_once(params, view, K, width, height, "warp", w)
    rows = [run_once(params, view, K, width, height, "warp", w) for _ in range(repeats)]
    threads = torch.get_num_threads()
    try:  # CPU seconds of a one-thread run: the work itself, about its wall time on an idle core
        torch.set_num_threads(1)
        one = [run_once(params, view, K, width, height, "warp", w) for _ in range(repeats)]
    finally:
        torch.set_num_threads(threads)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return dict(n=n, width=width, height=height, visible=int((rows[0][0].radii > 0).sum()), threads=threads,
                fwd_s=med([r[2] for r in rows]), fwdbwd_s=med([r[2] + r[3] for r in rows]),
                fwd_cpu_1thread_s=med([r[4] for r in one]), fwdbwd_cpu_1thread_s=med([r[4] + r[5] for r in one]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--quick", action="store_true", help="small scenes only (10k vs reference, 100k timing)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    sizes = [(10_000, 2048)] if a.quick else [(10_000, 8192), (100_000, 1024)]
    runs = []
    for n, ref_pixels in sizes:
        r = compare_scene(n, 256, 256, ref_pixels, a.repeats)
        runs.append(r)
        print(f"{n:>7} Gaussians 256x256 ({r['visible']} visible): warp fwd {r['warp_fwd_s']:.3f}s "
              f"fwd+bwd {r['warp_fwdbwd_s']:.3f}s | reference fwd {r['ref_fwd_s']:.1f}s fwd+bwd "
              f"{r['ref_fwdbwd_s']:.1f}s (from {r['ref_pixels']} px) | speedup {r['speedup_fwd']:.0f}x / "
              f"{r['speedup_fwdbwd']:.0f}x | "
              f"max diff image {r['max_abs_diff_image']:.1e} grad {r['max_abs_diff_grad']:.1e} "
              f"(rel {r['max_rel_diff_grad']:.1e})", flush=True)
    train = []
    for n in ([100_000] if a.quick else [100_000, 150_000, 200_000]):
        t = time_warp(n, 480, 272, a.repeats)
        train.append(t)
        print(f"{n:>7} Gaussians 480x272 ({t['visible']} visible): warp wall ({t['threads']} threads) fwd "
              f"{t['fwd_s']:.3f}s fwd+bwd {t['fwdbwd_s']:.3f}s | one thread, cpu time: fwd "
              f"{t['fwd_cpu_1thread_s']:.3f}s fwd+bwd {t['fwdbwd_cpu_1thread_s']:.3f}s", flush=True)
    summary = dict(
        bench="rasterize", backend="warp-cpu", reference="dense pytorch",
        speedup_fwd=min(r["speedup_fwd"] for r in runs), speedup_fwdbwd=min(r["speedup_fwdbwd"] for r in runs),
        max_abs_diff_image=max(r["max_abs_diff_image"] for r in runs),
        max_abs_diff_grad=max(r["max_abs_diff_grad"] for r in runs),
        max_rel_diff_grad=max(r["max_rel_diff_grad"] for r in runs),
        runs=runs, train_size=train, torch_threads=torch.get_num_threads(),
    )
    if a.json:
        summary["host"] = machine()
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
