"""ACT's temporal ensembling (Zhao et al. 2023, Algorithm 2), kept as explicit state for a runtime.

A new chunk is predicted every control step; the action executed at step t averages every chunk's prediction for
t with weights w_i = exp(-coeff * i), i = 0 for the oldest chunk (coeff > 0 favours older predictions, which
smooths; coeff = 0 is a plain mean). Running sums per future step make each update O(chunk), batched over
parallel environments, each of which can be reset alone when its episode ends.
"""
from __future__ import annotations

import torch


class TemporalEnsembler:
    """Stateful ensembler over a batch of environments: `update(chunk)` takes (B, T, A) and returns (B, A)."""

    def __init__(self, coeff: float, chunk_size: int):
        self.coeff, self.chunk_size = float(coeff), int(chunk_size)
        self.weights = torch.exp(-self.coeff * torch.arange(self.chunk_size, dtype=torch.float64))
        self._sum: torch.Tensor | None = None  # (B, T, A) weighted sums of predictions for steps t .. t+T-1
        self._wsum: torch.Tensor | None = None  # (B, T) sums of their weights
        self._count: torch.Tensor | None = None  # (B, T) how many chunks predicted each step so far

    def reset(self, done: torch.Tensor | None = None) -> None:
        """Forget everything, or only the environments where the boolean mask `done` (B,) is set."""
        if done is None or self._sum is None:
            self._sum = self._wsum = self._count = None
            return
        done = torch.as_tensor(done, dtype=torch.bool, device=self._sum.device)
        self._sum[done] = 0
        self._wsum[done] = 0
        self._count[done] = 0

    def update(self, chunk: torch.Tensor) -> torch.Tensor:
        """Add the chunk predicted at this step and return the action to execute now."""
        chunk = torch.as_tensor(chunk)
        b, t, a = chunk.shape
        if t != self.chunk_size:
            raise ValueError(f"chunk has {t} actions, the ensembler was made for {self.chunk_size}")
        if self._sum is None or self._sum.shape[0] != b or self._sum.shape[2] != a:
            self._sum = torch.zeros(b, t, a, dtype=torch.float64, device=chunk.device)
            self._wsum = torch.zeros(b, t, dtype=torch.float64, device=chunk.device)
            self._count = torch.zeros(b, t, dtype=torch.long, device=chunk.device)
        w = self.weights.to(chunk.device)[self._count]  # this chunk's rank among each step's predictions
        self._sum += w[..., None] * chunk.double()
        self._wsum += w
        self._count += 1
        action = self._sum[:, 0] / self._wsum[:, 0, None]
        self._sum = torch.cat([self._sum[:, 1:], torch.zeros_like(self._sum[:, :1])], dim=1)
        self._wsum = torch.cat([self._wsum[:, 1:], torch.zeros_like(self._wsum[:, :1])], dim=1)
        self._count = torch.cat([self._count[:, 1:], torch.zeros_like(self._count[:, :1])], dim=1)
        return action.to(chunk.dtype)
