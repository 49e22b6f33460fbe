"""Long videos: the network over overlapping windows of frames, each window joined to the ones before it.

One pass over S frames keeps S x tokens x layers of aggregator output and attends across all S frames at once,
so memory grows with S (and time with S^2). Windows of `chunk` frames that share `overlap` frames with the
previous window bound both. Each window's world is its own first camera at its own scale; the shared frames'
depth maps, unprojected with each window's cameras, give per-pixel 3D correspondences between the two worlds
(only pixels confident in both), and a robust Sim(3) (spatial.feedforward.align) maps the new window into the
first window's world. Frames already placed keep their cameras; new frames take the mapped ones, their depth
scaled. Within a window only the layers the heads read are kept (VGGT-1B: the four DPT layers).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from spatial.feedforward.align import robust_sim3
from spatial.feedforward.geometry import decode_pose, unproject_depth
from spatial.feedforward.memory import MB, measure_peak, token_bytes
from spatial.feedforward.runtime import attention_kernels, infer, pick_device, trunk_dtype

ALIGN_POINTS = 20_000     # correspondences per window join (evenly subsampled)
CONFIDENT = 0.5           # a pixel joins when its confidence rank is at least this in both windows


@dataclass
class Predictions:
    """Per-frame network outputs in one world: world-to-camera (S, 3, 4), K (S, 3, 3) at network size,
    depth (S, h, w) along the optical axis, confidence (S, h, w) (1 + exp(c)) and its rank within its window."""

    extrinsics: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray
    confidence: np.ndarray
    rank: np.ndarray

    def __len__(self) -> int:
        return len(self.extrinsics)

    def take(self, idx) -> Predictions:
        return Predictions(self.extrinsics[idx], self.intrinsics[idx], self.depth[idx], self.confidence[idx],
                           self.rank[idx])

    def world_points(self, i: int) -> np.ndarray:
        """(h, w, 3) world points of frame i's depth map."""
        d = torch.from_numpy(self.depth[i]).double()
        return unproject_depth(d, torch.from_numpy(self.extrinsics[i]), torch.from_numpy(self.intrinsics[i])).numpy()

    def transformed(self, S: np.ndarray) -> Predictions:
        """The same frames after the world is mapped by similarity S (x' = s R x + t): depth scales by s."""
        A = S[:3, :3]
        s = float(np.cbrt(np.linalg.det(A)))
        Rw = A / s
        ext = self.extrinsics.copy()
        R, t = ext[:, :, :3], ext[:, :, 3]
        centres = -np.einsum("sji,sj->si", R, t)                    # -R^T t
        new_R = R @ Rw.T
        new_c = centres @ A.T + S[:3, 3]
        ext[:, :, :3] = new_R
        ext[:, :, 3] = -np.einsum("sij,sj->si", new_R, new_c)
        return Predictions(ext, self.intrinsics.copy(), (self.depth * s).astype(np.float32), self.confidence,
                           self.rank)


def confidence_ranks(conf: np.ndarray) -> np.ndarray:
    """Network confidences (1 + exp(c), unbounded) -> the fraction of the pixels at most as confident (ties share
    one value), so that a threshold on it keeps a known share of the pixels, most confident first."""
    flat = conf.reshape(-1)
    ranks = np.searchsorted(np.sort(flat), flat, side="right") / max(flat.size, 1)
    return ranks.astype(np.float32).reshape(conf.shape)


def windows(n: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of at most `chunk` frames, each sharing at least `overlap` with the previous;
    the last window is moved back to be full rather than left short. chunk <= 0 or >= n: one window."""
    if chunk <= 0 or chunk >= n:
        return [(0, n)]
    if not 0 < overlap < chunk:
        raise ValueError(f"overlap must be within 1..chunk-1, got {overlap} for chunk {chunk}")
    step = chunk - overlap
    out = []
    start = 0
    while True:
        end = min(start + chunk, n)
        out.append((max(0, end - chunk), end))
        if end == n:
            return out
        start += step


def from_outputs(out: dict[str, torch.Tensor], hw: tuple[int, int]) -> Predictions:
    """The model's output dict (batch of one) -> Predictions in numpy (float64 cameras, float32 maps)."""
    ext, K = decode_pose(out["pose_enc"][0].double(), hw)
    conf = out["depth_conf"][0].numpy().astype(np.float32)
    return Predictions(ext.numpy(), K.numpy(), out["depth"][0, ..., 0].numpy().astype(np.float32), conf,
                       confidence_ranks(conf))


def correspondences(placed: Predictions, new: Predictions, frames: list[int], new_frames: list[int],
                    limit: int = ALIGN_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel 3D pairs (new world, placed world) of the shared frames, with weights, confident in both."""
    src, dst, w = [], [], []
    for i, j in zip(frames, new_frames):
        good = ((placed.rank[i] >= CONFIDENT) & (new.rank[j] >= CONFIDENT) & (placed.depth[i] > 0)
                & (new.depth[j] > 0))
        if not good.any():
            continue
        src.append(new.world_points(j)[good])
        dst.append(placed.world_points(i)[good])
        w.append(np.minimum(placed.rank[i][good], new.rank[j][good]))
    if not src:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)
    src, dst, w = np.concatenate(src), np.concatenate(dst), np.concatenate(w)
    if len(src) > limit:
        idx = np.linspace(0, len(src) - 1, limit).astype(int)
        src, dst, w = src[idx], dst[idx], w[idx]
    return src, dst, w.astype(np.float64)


def join(placed: Predictions, new: Predictions, start: int, overlap_end: int) -> tuple[Predictions, dict]:
    """Append window `new` (its frame 0 is sequence frame `start`; frames start..overlap_end-1 are already in
    `placed`) to `placed`, mapped by the robust Sim(3) of the shared frames' points."""
    shared = list(range(start, overlap_end))
    src, dst, w = correspondences(placed, new, shared, [i - start for i in shared])
    if len(src) < 3:
        raise ValueError(f"frames {start}-{overlap_end - 1}: no confident pixels shared between windows")
    fit = robust_sim3(src, dst, w)
    mapped = new.transformed(fit.S)
    extent = float(np.linalg.norm(dst - np.median(dst, axis=0), axis=1).mean()) or 1.0
    record = {"frames": [start, start + len(new)], "shared": len(shared), "points": int(len(src)),
              "scale": round(fit.scale, 6), "inlier_fraction": round(float(fit.inliers.mean()), 4),
              "rmse_rel": round(fit.rmse / extent, 6)}
    fresh = slice(overlap_end - start, len(new))
    joined = Predictions(*(np.concatenate([a, b[fresh]]) for a, b in
                           zip((placed.extrinsics, placed.intrinsics, placed.depth, placed.confidence, placed.rank),
                               (mapped.extrinsics, mapped.intrinsics, mapped.depth, mapped.confidence, mapped.rank))))
    return joined, record


def predict_sequence(model, images: torch.Tensor, chunk: int = 0, overlap: int = 8, device: str | None = None,
                     on_window=None) -> tuple[Predictions, dict]:
    """(S, 3, h, w) images -> Predictions for every frame in the first window's world, and a report (windows,
    joins, seconds, memory). `on_window(done, total)` is called after each window."""
    device = pick_device(device)
    S, _, h, w = images.shape
    spans = windows(S, chunk, overlap)
    cfg = model.cfg
    elem = torch.finfo(trunk_dtype(device)).bits // 8
    memory = {"kept_layers": len(cfg.keep_layers), "aggregator_layers": cfg.depth,
              "tokens_kept_mb": round(token_bytes(cfg, max(b - a for a, b in spans), h, w, elem) / MB, 2),
              "tokens_all_layers_mb": round(token_bytes(cfg, max(b - a for a, b in spans), h, w, elem,
                                                        cfg.depth) / MB, 2),
              "tokens_one_pass_mb": round(token_bytes(cfg, S, h, w, elem) / MB, 2)}
    joins, placed = [], None
    t0 = time.perf_counter()
    with measure_peak(memory, device):
        for k, (a, b) in enumerate(spans):
            pred = from_outputs(infer(model, images[a:b], device=device), (h, w))
            if placed is None:
                placed = pred
            else:
                placed, record = join(placed, pred, a, len(placed))
                joins.append(record)
            if on_window is not None:
                on_window(k + 1, len(spans))
    report = {"windows": [list(s) for s in spans], "chunk": chunk if len(spans) > 1 else S,
              "overlap": overlap if len(spans) > 1 else 0, "joins": joins,
              "seconds": round(time.perf_counter() - t0, 2), "attention": attention_kernels(device),
              "device": device, "memory": memory}
    return placed, report
