"""Transformer pieces shared by the policies: multi-head attention on `scaled_dot_product_attention`, encoder
and decoder layers with DETR-style positions (added to queries and keys in every layer, as ACT does), and the
sine embeddings of sequence positions and of flow time. No data-dependent Python branches, so models built from
them trace and export to ONNX."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _plus(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class Attention(nn.Module):
    """Multi-head attention; mask is boolean, True where a query may attend (broadcast to (B, heads, Lq, Lk))."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, lq, d = q.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, x.shape[1], self.heads, d // self.heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(k)), split(self.v(v)), attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, lq, d))


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "relu"):
        act = nn.ReLU() if activation == "relu" else nn.GELU(approximate="tanh")
        super().__init__(nn.Linear(dim, hidden), act, nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, post-norm (the original Transformer and ACT) or pre-norm."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.1, pre_norm: bool = False,
                 activation: str = "relu"):
        super().__init__()
        self.attn = Attention(dim, heads, dropout)
        self.mlp = MLP(dim, ff_dim, dropout, activation)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre_norm:
            h = self.norm1(x)
            qk = _plus(h, pos)
            x = x + self.drop(self.attn(qk, qk, h, mask))
            return x + self.drop(self.mlp(self.norm2(x)))
        qk = _plus(x, pos)
        x = self.norm1(x + self.drop(self.attn(qk, qk, x, mask)))
        return self.norm2(x + self.drop(self.mlp(x)))


class DecoderLayer(nn.Module):
    """Self-attention over the queries, cross-attention to the encoder's memory, feed-forward."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.1, pre_norm: bool = False,
                 activation: str = "relu"):
        super().__init__()
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.mlp = MLP(dim, ff_dim, dropout, activation)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor | None = None,
                memory_pos: torch.Tensor | None = None) -> torch.Tensor:
        keys = _plus(memory, memory_pos)
        if self.pre_norm:
            h = self.norm1(x)
            qk = _plus(h, query_pos)
            x = x + self.drop(self.self_attn(qk, qk, h))
            x = x + self.drop(self.cross_attn(_plus(self.norm2(x), query_pos), keys, memory))
            return x + self.drop(self.mlp(self.norm3(x)))
        qk = _plus(x, query_pos)
        x = self.norm1(x + self.drop(self.self_attn(qk, qk, x)))
        x = self.norm2(x + self.drop(self.cross_attn(_plus(x, query_pos), keys, memory)))
        return self.norm3(x + self.drop(self.mlp(x)))


def sinusoidal_1d(n: int, dim: int) -> torch.Tensor:
    """(n, dim) fixed sine/cosine embedding of positions 0 .. n - 1 (Vaswani et al.), interleaved pairs."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freqs = 10000.0 ** (-2 * torch.arange(dim // 2 + dim % 2, dtype=torch.float64) / dim)
    out = torch.zeros(n, dim, dtype=torch.float64)
    out[:, 0::2] = torch.sin(pos * freqs)
    out[:, 1::2] = torch.cos(pos * freqs[: dim // 2])
    return out.float()


def time_embedding(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """(B,) times in [0, 1] -> (B, dim) sines and cosines with periods spaced geometrically between min_period
    and max_period (π0's embedding of the flow-matching time)."""
    frac = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float32, device=t.device)
    period = min_period * (max_period / min_period) ** frac
    angle = t.float()[:, None] * (2 * math.pi / period)[None]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def drop_state(token: torch.Tensor, unknown: torch.Tensor, p: float) -> torch.Tensor:
    """State dropout: each row of the (B, dim) state token becomes the learned `unknown` token with probability
    p, so those samples must be predicted from the images (training only; the caller checks)."""
    drop = torch.rand(token.shape[0], 1, device=token.device) < p
    return torch.where(drop, unknown.to(token.dtype), token)
