"""Training data for the geometry network from Twin's synthetic captures (`twin capture synth`).

A capture holds frames/*.jpg, ground_truth/cameras.json (world-to-camera OpenCV, metres) and
ground_truth/depth/*.npy (z-depth in metres, 0 = no surface). Frames are prepared as the network sees them at
inference ("fit": longest side `size`, multiples of 14) and the intrinsics and depth follow them there.

A training sequence is a few frames of one capture, in video order at a random stride. Its ground truth is
normalised as VGGT's: the world moved to the first camera (so its pose is the identity), then divided by the
mean distance of the valid world points from that camera, so every sequence has the same scale and the
network learns the shape, not the room's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spatial.feedforward.geometry import invert_pose, unproject_depth
from spatial.feedforward.preprocess import prepare_image
from twin_kit import InputError


@dataclass
class CaptureFrames:
    """One capture at network size: images (N, 3, h, w) in [0, 1], depth (N, h, w) metres (0 = none),
    world-to-camera extrinsics (N, 3, 4) and intrinsics (N, 3, 3) in network pixels."""

    name: str
    images: torch.Tensor
    depth: torch.Tensor
    extrinsics: torch.Tensor
    intrinsics: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)


def load_capture_frames(root: Path, size: int, patch: int = 14) -> CaptureFrames:
    """A synthetic capture's frames and ground truth, prepared at network size (InputError if it is not one)."""
    import cv2

    from spatial.capture.synth import load_ground_truth

    gt = load_ground_truth(root)
    images, depths, exts, Ks = [], [], [], []
    for i, cam in enumerate(gt.cameras):
        x, framing = prepare_image(gt.image(i), mode="fit", target=size, patch=patch)
        w, h = framing.size
        d = gt.depth(i)
        if d.shape != (cam.height, cam.width):
            raise InputError(f"{root}: depth map {i} is {d.shape[1]}x{d.shape[0]}, its frame {cam.width}x{cam.height}")
        depths.append(cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST))
        images.append(x)
        exts.append(cam.world_to_cam[:3])
        K = np.array([[cam.fx * framing.sx, 0, (cam.cx + 0.5) * framing.sx - 0.5 - framing.ox],
                      [0, cam.fy * framing.sy, (cam.cy + 0.5) * framing.sy - 0.5 - framing.oy], [0, 0, 1]])
        Ks.append(K)
    if len(images) < 2:
        raise InputError(f"{root}: {len(images)} frame(s); a training capture needs at least 2")
    return CaptureFrames(Path(root).name, torch.stack(images), torch.from_numpy(np.stack(depths)).float(),
                         torch.from_numpy(np.stack(exts)).float(), torch.from_numpy(np.stack(Ks)).float())


def normalise_sequence(extrinsics: torch.Tensor, intrinsics: torch.Tensor, depth: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
    """(S, 3, 4), (S, 3, 3), (S, h, w) in metres -> extrinsics relative to frame 0 and depth / world points
    divided by the mean distance of the valid points from camera 0; plus the validity mask and that scale."""
    to_first = invert_pose(extrinsics[0].double())                   # camera 0 -> world
    ext = extrinsics.double()
    rel = torch.zeros_like(ext)
    rel[:, :, :3] = ext[:, :, :3] @ to_first[:3, :3]
    rel[:, :, 3] = (ext[:, :, :3] @ to_first[:3, 3:]).squeeze(-1) + ext[:, :, 3]
    mask = depth > 0
    points = unproject_depth(depth.double(), rel, intrinsics.double())
    scale = points[mask].norm(dim=-1).mean() if mask.any() else torch.ones((), dtype=torch.float64)
    scale = scale.clamp(min=1e-6)
    rel[:, :, 3] /= scale
    return {"extrinsics": rel.float(), "intrinsics": intrinsics.float(), "depth": (depth / scale).float(),
            "world_points": (points / scale).float(), "mask": mask, "scale": scale.float()}


def sample_indices(n: int, frames: int, max_stride: int, rng: np.random.Generator) -> list[int]:
    """`frames` indices of an n-frame video in order, at a random stride in 1..max_stride (smaller if needed)."""
    if n < frames:
        raise InputError(f"a capture of {n} frames cannot give sequences of {frames}")
    stride = int(rng.integers(1, max(1, min(max_stride, (n - 1) // max(frames - 1, 1))) + 1))
    start = int(rng.integers(0, n - stride * (frames - 1)))
    return [start + stride * k for k in range(frames)]


def make_batch(captures: list[CaptureFrames], batch: int, frames: int, max_stride: int,
               rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """`batch` normalised sequences, each from a random capture: tensors with a leading (B, S) shape."""
    items = []
    for _ in range(batch):
        cap = captures[int(rng.integers(len(captures)))]
        idx = sample_indices(len(cap), frames, max_stride, rng)
        seq = normalise_sequence(cap.extrinsics[idx], cap.intrinsics[idx], cap.depth[idx])
        seq["images"] = cap.images[idx]
        items.append(seq)
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def check_sizes(captures: list[CaptureFrames]) -> tuple[int, int]:
    """The common network image size (h, w) of the captures; InputError when their aspect ratios differ."""
    sizes = {tuple(c.images.shape[-2:]) for c in captures}
    if len(sizes) != 1:
        raise InputError("the training captures give different network image sizes "
                         f"({', '.join(f'{w}x{h}' for h, w in sorted(sizes))}); use captures of one aspect ratio")
    return sizes.pop()
