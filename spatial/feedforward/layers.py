"""Transformer pieces shared by backbone, aggregator and camera head: pre-norm blocks with LayerScale,
optional qk-norm and a 2D rotary position embedding (RoPE) on patch-grid coordinates.

Attribute names (`qkv`, `q_norm`, `ls1.gamma`, `mlp.fc1`, ...) are the state-dict names of DINOv2 / VGGT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerScale(nn.Module):
    """Per-channel learned scale on a residual branch (CaiT / DINOv2)."""

    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Two linear layers with an exact GELU between them."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, out or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class RoPE2D(nn.Module):
    """Rotary embedding over (row, column) positions: the first half of each head's channels turns with the
    row index, the second half with the column index. No parameters; cos/sin tables are cached per size."""

    def __init__(self, frequency: float = 100.0):
        super().__init__()
        self.frequency = float(frequency)
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _table(self, dim: int, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (dim, length, str(device), dtype)
        if key not in self._tables:
            inv_freq = 1.0 / self.frequency ** (torch.arange(0, dim, 2, device=device).float() / dim)
            angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
            angles = torch.cat([angles, angles], dim=-1)
            self._tables[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        return self._tables[key]

    @staticmethod
    def _rotate_1d(x: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        c = F.embedding(pos, cos)[:, None]   # (B, 1, N, d): broadcast over heads
        s = F.embedding(pos, sin)[:, None]
        half = x.shape[-1] // 2
        turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * c + turned * s

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x: (B, heads, N, head_dim); pos: (B, N, 2) integer (row, column)."""
        dim = x.shape[-1] // 2
        cos, sin = self._table(dim, int(pos.max()) + 1, x.device, x.dtype)
        rows, cols = x.chunk(2, dim=-1)
        return torch.cat([self._rotate_1d(rows, pos[..., 0], cos, sin),
                          self._rotate_1d(cols, pos[..., 1], cos, sin)], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head LayerNorm on queries and keys, and optional RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, rope: RoPE2D | None = None,
                 qkv_bias: bool = True, proj_bias: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, init_values: float | None = None,
                 qk_norm: bool = False, rope: RoPE2D | None = None, norm_eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        # qk-norm uses torch's default LayerNorm eps whatever the block's norms use (as VGGT does)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))


def grid_positions(n: int, rows: int, cols: int, device=None) -> torch.Tensor:
    """(n, rows*cols, 2) integer (row, column) of each patch, row-major like the patch tokens."""
    r = torch.arange(rows, device=device)
    c = torch.arange(cols, device=device)
    pos = torch.stack(torch.meshgrid(r, c, indexing="ij"), dim=-1).reshape(1, rows * cols, 2)
    return pos.expand(n, -1, -1)
