"""`twin reconstruct --method vggt`: frames -> cameras, depth maps and points from the network.

The network sees every frame whole (mode "fit": longest side 518, both sides multiples of 14), in one pass or,
with `chunk`, in overlapping windows joined by Sim(3) (spatial.feedforward.chunked). Its cameras are
world-to-camera OpenCV in the first frame's camera frame at an arbitrary scale; with `refine` they are bundle
adjusted on image tracks (spatial.feedforward.refine). They are mapped back to the working-resolution frames,
and the depth maps (with the cameras at network resolution) go to the usual fusion, alignment (+Z up, metres
from a marker or a known distance) and bundle writing of spatial.reconstruct.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spatial.cameras import Camera
from spatial.dense.mvs import DepthResult
from spatial.feedforward.chunked import Predictions, confidence_ranks, predict_sequence
from spatial.feedforward.geometry import decode_pose
from spatial.feedforward.preprocess import Framing, prepare_images
from twin_kit import InputError, info

SPARSE_POINTS = 20_000   # points kept as the bundle's "sparse" cloud (COLMAP export, alignment fallback)
__all__ = ["NetworkOptions", "NetworkResult", "cameras_from_network", "cameras_from_predictions", "check_cameras",
           "confidence_ranks", "network_reconstruction"]


@dataclass(frozen=True)
class NetworkOptions:
    """How the network stage runs: window size and overlap (0 = one pass), bundle adjustment."""

    chunk: int = 0
    overlap: int = 8
    refine: bool = False


@dataclass
class NetworkResult:
    """What the network stage hands to the bundle writer."""

    cameras: list[Camera]            # at the frames' working resolution
    depths: list[DepthResult]        # at network resolution, with their own cameras
    points: np.ndarray               # (N, 3) confident unprojected depth, subsampled
    colors: np.ndarray               # (N, 3) uint8
    report: dict = field(default_factory=dict)


def cameras_from_predictions(extrinsics: np.ndarray, intrinsics: np.ndarray, framings: list[Framing],
                             names: list[str]) -> tuple[list[Camera], list[Camera]]:
    """(S, 3, 4) world-to-camera and (S, 3, 3) network-pixel intrinsics -> cameras at the source frames' size,
    and at the network images' size."""
    w, h = framings[0].size
    frame_cams, net_cams = [], []
    for i, (f, name) in enumerate(zip(framings, names)):
        R, t = np.array(extrinsics[i, :, :3], np.float64), np.array(extrinsics[i, :, 3], np.float64)
        K = intrinsics[i]
        fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
        net_cams.append(Camera(name, w, h, fx, fy, cx, cy, R.copy(), t.copy()))
        sfx, sfy, scx, scy = f.to_source_intrinsics(fx, fy, cx, cy)
        frame_cams.append(Camera(name, f.source_size[0], f.source_size[1], sfx, sfy, scx, scy, R.copy(), t.copy()))
    return frame_cams, net_cams


def cameras_from_network(pose_enc: torch.Tensor, framings: list[Framing], names: list[str]
                         ) -> tuple[list[Camera], list[Camera]]:
    """(S, 9) pose encodings -> cameras at the source frames' size, and at the network images' size."""
    w, h = framings[0].size
    ext, K = decode_pose(pose_enc.double(), (h, w))
    return cameras_from_predictions(ext.numpy(), K.numpy(), framings, names)


def network_reconstruction(frames, weights: Path, progress=None, options: NetworkOptions = NetworkOptions()
                           ) -> NetworkResult:
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

    def tick(done, total):
        if task is not None:
            progress.update(task, total=total, completed=done, status=f"window {done}/{total}")

    try:
        pred, run = predict_sequence(model, x, chunk=options.chunk, overlap=options.overlap, on_window=tick)
    except ValueError as e:   # windows that share no confident pixel cannot be joined
        raise InputError(f"chunked inference: {e}; try a larger --overlap") from None
    parameters = int(sum(p.numel() for p in model.parameters()))
    del model
    check_cameras(pred, names, weights)   # before bundle adjustment, which needs finite cameras too
    refine_report = None
    if options.refine:
        from spatial.feedforward.refine import refine_predictions

        t_ref = time.perf_counter()
        pred, refine_report = refine_predictions(x, pred)
        refine_report["seconds"] = round(time.perf_counter() - t_ref, 2)
        if "skipped" in refine_report:
            info(f"refine: network cameras kept ({refine_report['skipped']})")
        else:
            info(f"refine: {refine_report['tracks']} tracks, reprojection {refine_report['reprojection_px_before']:.2f}"
                 f" -> {refine_report['reprojection_px_after']:.2f} px (network pixels)")
    if options.refine:
        check_cameras(pred, names, weights)
    frame_cams, net_cams = cameras_from_predictions(pred.extrinsics, pred.intrinsics, framings, names)
    ranks = confidence_ranks(pred.confidence)
    depths = [DepthResult(pred.depth[i].astype(np.float32), ranks[i], net_cams[i]) for i in range(len(names))]
    points, colors = _sparse_points(pred, x, ranks)
    seconds = time.perf_counter() - t0
    windows = len(run["windows"])
    info(f"network: {len(names)} frames at {x.shape[-1]}x{x.shape[-2]} in {run['seconds']:.1f} s"
         + (f" ({windows} windows of {run['chunk']}, overlap {run['overlap']})" if windows > 1 else "")
         + f", peak RSS {run['memory']['peak_rss_mb']:.0f} MB (weights {t_load:.1f} s)")
    network = {"seconds": run["seconds"], "load_seconds": round(t_load, 2), "total_seconds": round(seconds, 2),
               "input_size": [int(x.shape[-1]), int(x.shape[-2])],
               "parameters": parameters, **run}
    if refine_report is not None:
        network["refine"] = refine_report
    report = {"frames": len(names), "backend": f"vggt network ({Path(weights).name})", "unregistered": {},
              "skipped": dict(frames.skipped), "network": network}
    return NetworkResult(frame_cams, depths, points, colors, report)


def check_cameras(pred: Predictions, names: list[str], weights: Path) -> None:
    """InputError when the network's cameras cannot make a bundle: a pose that is not finite, or a field of view
    of 0 (the fov activation is a ReLU, so an untrained or wrong network can give an infinite focal length)."""
    K = pred.intrinsics
    focal_ok = np.isfinite(K[:, :2, :3]).all(axis=(1, 2)) & (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0)
    pose_ok = np.isfinite(pred.extrinsics).all(axis=(1, 2))
    bad = np.flatnonzero(~(focal_ok & pose_ok))
    if len(bad):
        what = "a field of view of 0 (infinite focal length)" if pose_ok[bad].all() else "a camera that is not finite"
        raise InputError(f"{weights}: the network predicted {what} for {len(bad)} of {len(names)} frames "
                         f"(first: {names[bad[0]]}); these weights do not give usable cameras (untrained?)")


def _sparse_points(pred: Predictions, images: torch.Tensor, ranks: np.ndarray, keep: float = 0.5
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The most confident half of the unprojected depth pixels, evenly subsampled, with their colours
    (only the chosen pixels are unprojected: a long video's full point maps would not fit)."""
    S, h, w = pred.depth.shape
    idx = np.flatnonzero((ranks.reshape(-1) >= keep) & (pred.depth.reshape(-1) > 0))
    if len(idx) > SPARSE_POINTS:
        idx = idx[np.linspace(0, len(idx) - 1, SPARSE_POINTS).astype(int)]
    f, v, u = np.unravel_index(idx, (S, h, w))
    K = pred.intrinsics[f]
    z = pred.depth[f, v, u].astype(np.float64)
    cam = np.stack([(u - K[:, 0, 2]) / K[:, 0, 0] * z, (v - K[:, 1, 2]) / K[:, 1, 1] * z, z], axis=1)
    R, t = pred.extrinsics[f, :, :3], pred.extrinsics[f, :, 3]
    pts = np.einsum("nji,nj->ni", R, cam - t)                       # R^T (x_cam - t)
    rgb = images.permute(0, 2, 3, 1)[torch.from_numpy(f), torch.from_numpy(v), torch.from_numpy(u)]
    cols = (rgb.numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    good = np.isfinite(pts).all(1)
    return pts[good], cols[good]
