"""Real-time chunking (Black, Galliker and Levine 2025): splice a new action chunk onto the previous one.

While a chunk is computed the robot keeps executing the previous one, so the new chunk's first actions overlap
actions that are already committed. Sampling is then inpainting. A soft mask W is 1 on the committed actions,
decays exponentially to 0 across the rest of the overlap (the paper's schedule) and is 0 after it. At each Euler
step the chunk's estimate of its clean actions, x1 = x + (1 - tau) v, is pulled toward the previous chunk Y:

    v' = v + W * (Y - x1) / (1 - tau)                                        (inpainting)
           + (1 - W) * min(beta, (tau^2 + (1 - tau)^2) / (tau (1 - tau))) * J_x1(x)^T [W * (Y - x1)]   (ΠGDM)

The first term lands the committed actions exactly on Y at the last step and blends the rest of the overlap from
Y into the model's own plan, whatever the model. The second is the paper's ΠGDM guidance (a vector-Jacobian
product through the model, weight clipped at beta), applied to what the mask leaves free: it bends those
actions toward a plan consistent with the prefix where the model is unsure, rather than only where W reaches.
Without it (`vjp=False`) no autograd is needed, so the update exports to ONNX with the model.
Time runs from tau = 0 (noise) to tau = 1 (actions).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from twin_kit import InputError


def prefix_weights(chunk_size: int, overlap: int, committed: int) -> torch.Tensor:
    """(chunk_size,) soft mask: 1 on the first `committed` actions, c (e^c - 1) / (e - 1) with
    c = (overlap - i) / (overlap - committed + 1) across the rest of the overlap, 0 after it."""
    if not 0 <= committed <= overlap <= chunk_size:
        raise InputError(f"real-time chunking needs 0 <= prefix_len ({committed}) <= overlap ({overlap}) <= "
                         f"chunk size ({chunk_size})")
    i = torch.arange(chunk_size, dtype=torch.float32)
    c = (overlap - i) / (overlap - committed + 1)
    soft = c * (torch.exp(c) - 1) / (math.e - 1)
    return torch.where(i < committed, torch.ones_like(i), torch.where(i < overlap, soft, torch.zeros_like(i)))


def prefix_target(prefix_actions: torch.Tensor, prefix_len: int, chunk_size: int) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """Previous chunk's (B, P, A) actions for this chunk's first P steps -> target (B, T, A) (zeros past P) and
    weights (1, T, 1)."""
    if prefix_actions.dim() != 3:
        raise InputError(f"prefix_actions must be (batch, steps, action), not {tuple(prefix_actions.shape)}")
    b, p, a = prefix_actions.shape
    w = prefix_weights(chunk_size, p, prefix_len).to(prefix_actions.device)
    target = torch.cat([prefix_actions, prefix_actions.new_zeros(b, chunk_size - p, a)], dim=1)
    return target, w.view(1, chunk_size, 1)


def guidance_weight(tau: float, max_weight: float) -> float:
    """ΠGDM's guidance weight at time tau (0 = noise): (1 - tau) / (tau r^2), r^2 = (1 - tau)^2 / (tau^2 +
    (1 - tau)^2), clipped at max_weight (the paper's beta; it is infinite at tau = 0)."""
    if tau <= 0.0:
        return max_weight
    return min(max_weight, (tau ** 2 + (1 - tau) ** 2) / (tau * (1 - tau)))


def guided_velocity(velocity: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tau: float,
                    target: torch.Tensor, weights: torch.Tensor, vjp: bool = True,
                    max_weight: float = 5.0) -> torch.Tensor:
    """The inpainting velocity at time tau (< 1) for the chunk x (B, T, A); `velocity(x)` is the model's."""
    rest = 1.0 - tau
    if not vjp:
        v = velocity(x)
        return v + weights * (target - (x + rest * v)) / rest
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        v = velocity(x_in)
        x1 = x_in + rest * v
        err = weights * (target - x1.detach())
        (pigdm,) = torch.autograd.grad(x1, x_in, err)
    return v.detach() + err / rest + (1 - weights) * guidance_weight(tau, max_weight) * pigdm
