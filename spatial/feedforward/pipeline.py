"""`twin reconstruct --method vggt`: frames -> cameras, depth maps and points from one network pass.

The network sees every frame whole (mode "fit": longest side 518, both sides multiples of 14). Its cameras
are world-to-camera OpenCV in the first frame's camera frame at an arbitrary scale; they are mapped back to
the working-resolution frames, and its depth maps (with the cameras at network resolution) go to the usual
fusion, alignment (+Z up, metres from a marker or a known distance) and bundle writing of spatial.reconstruct.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spatial.cameras import Camera
from spatial.dense.mvs import DepthResult
from spatial.feedforward.geometry import decode_pose, unproject_depth
from spatial.feedforward.preprocess import Framing, prepare_images
from twin_kit import InputError, info

SPARSE_POINTS = 20_000   # points kept as the bundle's "sparse" cloud (COLMAP export, alignment fallback)


@dataclass
class NetworkResult:
    """What the network stage hands to the bundle writer."""

    cameras: list[Camera]            # at the frames' working resolution
    depths: list[DepthResult]        # at network resolution, with their own cameras
    points: np.ndarray               # (N, 3) confident unprojected depth, subsampled
    colors: np.ndarray               # (N, 3) uint8
    report: dict = field(default_factory=dict)


def confidence_ranks(conf: np.ndarray) -> np.ndarray:
    """Network confidences (1 + exp(c), unbounded) -> the fraction of the sequence's pixels at most as confident
    (ties share one value), so the fusion's `min_confidence` drops about that fraction, least confident first."""
    flat = conf.reshape(-1)
    ranks = np.searchsorted(np.sort(flat), flat, side="right") / max(flat.size, 1)
    return ranks.astype(np.float32).reshape(conf.shape)


def infer(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """One pass over (S, 3, H, W) images: on CUDA the trunk runs under bf16 autocast, the heads in fp32."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    with torch.inference_mode(), torch.autocast(device_type=device, dtype=torch.bfloat16,
                                                enabled=device == "cuda"):
        out = model(images.to(device))
    return {k: v.float().cpu() for k, v in out.items() if torch.is_tensor(v)}


def cameras_from_network(pose_enc: torch.Tensor, framings: list[Framing], names: list[str]
                         ) -> tuple[list[Camera], list[Camera]]:
    """(S, 9) pose encodings -> cameras at the source frames' size, and at the network images' size."""
    w, h = framings[0].size
    ext, K = decode_pose(pose_enc.double(), (h, w))
    ext, K = ext.numpy(), K.numpy()
    frame_cams, net_cams = [], []
    for i, (f, name) in enumerate(zip(framings, names)):
        R, t = ext[i, :, :3], ext[i, :, 3]
        fx, fy, cx, cy = (float(v) for v in (K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2]))
        net_cams.append(Camera(name, w, h, fx, fy, cx, cy, R.copy(), t.copy()))
        sfx, sfy, scx, scy = f.to_source_intrinsics(fx, fy, cx, cy)
        frame_cams.append(Camera(name, f.source_size[0], f.source_size[1], sfx, sfy, scx, scy, R.copy(), t.copy()))
    return frame_cams, net_cams


def network_reconstruction(frames, weights: Path, progress=None) -> NetworkResult:
    """Run the network stored at `weights` on the frames (a FrameSet); InputError for a bad checkpoint."""
    from spatial.feedforward.weights import load_vggt

    t0 = time.perf_counter()
    model = load_vggt(weights)
    t_load = time.perf_counter() - t0
    names = [f.name for f in frames.frames]
    images = [f.image for f in frames.frames]
    x, framings = prepare_images(images, mode="fit", target=model.cfg.img_size, patch=model.cfg.patch_size)
    if model.camera_head is None or model.depth_head is None:
        raise InputError(f"{weights}: this network has no camera or depth head")
    task = progress.add_task("network", total=1, status=f"{len(images)} frames at {x.shape[-1]}x{x.shape[-2]}") \
        if progress is not None else None
    t1 = time.perf_counter()
    out = infer(model, x)
    t_net = time.perf_counter() - t1
    if task is not None:
        progress.update(task, completed=1)
    frame_cams, net_cams = cameras_from_network(out["pose_enc"][0], framings, names)
    depth = out["depth"][0, ..., 0]                                  # (S, h, w)
    ranks = confidence_ranks(out["depth_conf"][0].numpy())
    depths = [DepthResult(depth[i].numpy().astype(np.float32), ranks[i], net_cams[i]) for i in range(len(names))]
    points, colors = _sparse_points(out, x, ranks)
    seconds = time.perf_counter() - t0
    info(f"network: {len(names)} frames at {x.shape[-1]}x{x.shape[-2]} in {t_net:.1f} s "
         f"(weights {t_load:.1f} s)")
    report = {"frames": len(names), "backend": f"vggt network ({Path(weights).name})", "unregistered": {},
              "skipped": dict(frames.skipped),
              "network": {"seconds": round(t_net, 2), "load_seconds": round(t_load, 2), "total_seconds":
                          round(seconds, 2), "input_size": [int(x.shape[-1]), int(x.shape[-2])],
                          "parameters": int(sum(p.numel() for p in model.parameters()))}}
    return NetworkResult(frame_cams, depths, points, colors, report)


def _sparse_points(out: dict, images: torch.Tensor, ranks: np.ndarray, keep: float = 0.5
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The most confident half of the unprojected depth pixels, evenly subsampled, with their colours."""
    h, w = images.shape[-2:]
    ext, K = decode_pose(out["pose_enc"][0].double(), (h, w))
    pts = unproject_depth(out["depth"][0].double(), ext, K).numpy().reshape(-1, 3)
    cols = (images.permute(0, 2, 3, 1).reshape(-1, 3).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    good = (ranks.reshape(-1) >= keep) & np.isfinite(pts).all(1)
    idx = np.flatnonzero(good)
    if len(idx) > SPARSE_POINTS:
        idx = idx[np.linspace(0, len(idx) - 1, SPARSE_POINTS).astype(int)]
    return pts[idx], cols[idx]
