"""VGGT's training losses, on ground truth normalised as VGGT does (spatial.feedforward.data).

camera   L1 between predicted and true pose encodings (translation, quaternion, fields of view weighted
         1 / 1 / 0.5), over every refinement round, later rounds weighted more (gamma^(rounds - 1 - k)).
depth    aleatoric: |D - D*| x c - alpha log c per valid pixel (c = the head's confidence 1 + exp(.), so a
         pixel can buy a lower penalty only by admitting it is uncertain), plus the plain error, plus a
         gradient term: differences of the error between neighbouring pixels at 3 scales, confidence-weighted
         the same way (sharp depth edges, flat planes).
point    the same on the world point maps (error = Euclidean distance).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from spatial.feedforward.geometry import encode_pose


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms (VGGT's defaults)."""

    camera: float = 5.0
    depth: float = 1.0
    point: float = 1.0
    translation: float = 1.0
    rotation: float = 1.0
    fov: float = 0.5
    round_gamma: float = 0.6      # weight of refinement round k: gamma ** (rounds - 1 - k)
    alpha: float = 0.2            # the confidence's log penalty
    gradient_scales: int = 3
    max_error: float = 100.0      # per-pixel errors are clamped here (a bad batch cannot explode)


def camera_loss(pose_list: list[torch.Tensor], target: torch.Tensor, w: LossWeights) -> dict[str, torch.Tensor]:
    """pose_list: per round (B, S, 9); target (B, S, 9) -> {camera, translation, rotation, fov}."""
    n = len(pose_list)
    parts = {"translation": 0.0, "rotation": 0.0, "fov": 0.0}
    for k, pred in enumerate(pose_list):
        weight = w.round_gamma ** (n - 1 - k)
        diff = (pred.float() - target).abs()
        parts["translation"] = parts["translation"] + weight * diff[..., :3].clamp(max=w.max_error).mean()
        parts["rotation"] = parts["rotation"] + weight * diff[..., 3:7].mean()
        parts["fov"] = parts["fov"] + weight * diff[..., 7:].mean()
    parts = {k: v / n for k, v in parts.items()}
    total = w.translation * parts["translation"] + w.rotation * parts["rotation"] + w.fov * parts["fov"]
    return {"camera": total, **parts}


def _gradient_term(err: torch.Tensor, mask: torch.Tensor, conf: torch.Tensor, alpha: float, scales: int,
                   max_error: float) -> torch.Tensor:
    """err (N, H, W, C) signed error, mask (N, H, W) bool, conf (N, H, W): confidence-weighted L1 of the
    error's differences between horizontal and vertical neighbours, averaged over `scales` (steps 1, 2, 4)."""
    total = err.new_zeros(())
    for level in range(scales):
        step = 2 ** level
        e, m, c = err[:, ::step, ::step], mask[:, ::step, ::step], conf[:, ::step, ::step]
        terms, count = e.new_zeros(()), m.sum()
        for a, b, ma, mb, cb in ((e[:, :, 1:], e[:, :, :-1], m[:, :, 1:], m[:, :, :-1], c[:, :, 1:]),
                                 (e[:, 1:], e[:, :-1], m[:, 1:], m[:, :-1], c[:, 1:])):
            both = ma & mb
            if both.any():
                g = (a - b).abs().clamp(max=max_error).sum(-1)[both]
                terms = terms + (g * cb[both] - alpha * torch.log(cb[both])).sum()
        total = total + terms / count.clamp(min=1)
    return total / scales


def regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, conf: torch.Tensor,
                    w: LossWeights) -> dict[str, torch.Tensor]:
    """pred/target (B, S, H, W, C), mask (B, S, H, W), conf (B, S, H, W) -> {conf, reg, grad} terms."""
    if mask.sum() < 16:
        zero = (pred * 0).sum()
        return {"conf": zero, "reg": zero, "grad": zero}
    pred = pred.float()
    conf = conf.float()
    err = torch.linalg.vector_norm(pred[mask] - target[mask], dim=-1).clamp(max=w.max_error)
    c = conf[mask]
    B, S, H, W, C = pred.shape
    grad = _gradient_term((pred - target).reshape(B * S, H, W, C), mask.reshape(B * S, H, W),
                          conf.reshape(B * S, H, W), w.alpha, w.gradient_scales, w.max_error)
    return {"conf": (err * c - w.alpha * torch.log(c)).mean(), "reg": err.mean(), "grad": grad}


def geometry_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], w: LossWeights = LossWeights()
                  ) -> dict[str, torch.Tensor]:
    """The weighted sum of the heads' losses ("total") and each term, for whichever heads the model has.

    batch: images (B, S, 3, H, W), extrinsics (B, S, 3, 4), intrinsics (B, S, 3, 3), depth (B, S, H, W),
    world_points (B, S, H, W, 3), mask (B, S, H, W) bool -- already normalised (first camera, unit scale).
    """
    terms: dict[str, torch.Tensor] = {}
    total = 0.0
    hw = tuple(batch["images"].shape[-2:])
    if "pose_enc_list" in out:
        target = encode_pose(batch["extrinsics"], batch["intrinsics"], hw)
        cam = camera_loss(out["pose_enc_list"], target, w)
        terms.update({f"camera_{k}" if k != "camera" else k: v for k, v in cam.items()})
        total = total + w.camera * cam["camera"]
    if "depth" in out:
        d = regression_loss(out["depth"], batch["depth"][..., None], batch["mask"], out["depth_conf"], w)
        terms.update({f"depth_{k}": v for k, v in d.items()})
        total = total + w.depth * (d["conf"] + d["reg"] + d["grad"])
    if "world_points" in out:
        p = regression_loss(out["world_points"], batch["world_points"], batch["mask"], out["world_points_conf"], w)
        terms.update({f"point_{k}": v for k, v in p.items()})
        total = total + w.point * (p["conf"] + p["reg"] + p["grad"])
    terms["total"] = total if torch.is_tensor(total) else torch.zeros(())
    return terms
