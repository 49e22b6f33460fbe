"""Normalisation statistics as LeRobot v3.0 computes and stores them.

Per episode and feature: min, max, mean, std, count and the quantiles q01, q10, q50, q90, q99 (from a
5000-bin histogram with linear interpolation inside a bin, as LeRobot's running quantile estimate does).
Camera features: per-channel statistics over sampled frames (at most ~100 per short episode, large frames
strided down to ~150 px) scaled to [0, 1], each of shape (3, 1, 1); count is the number of sampled frames.
Dataset statistics aggregate the episodes' like LeRobot's `aggregate_stats`: min of mins, max of maxes,
count-weighted means, the parallel-variance std, and count-weighted quantiles.

Sums are taken in float64: LeRobot 0.4's uint8 squares overflowed and stored image std 0 (fixed upstream,
lerobot PR 3697); Twin stores the true std.
"""
from __future__ import annotations

import numpy as np

from policies.datasets.spec import DatasetSpec

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)
NUM_BINS = 5000
EDGE_PAD = 1e-10

Stats = dict[str, dict[str, np.ndarray]]


def _quantiles(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(len(QUANTILES), D) quantile estimates of the columns of x (N, D) from per-column histograms."""
    out = np.empty((len(QUANTILES), x.shape[1]))
    for d in range(x.shape[1]):
        out[:, d] = _histogram_quantiles(x[:, d], None, lo[d], hi[d])
    return out


def _histogram_quantiles(values: np.ndarray, weights: np.ndarray | None, lo: float, hi: float) -> np.ndarray:
    """The QUANTILES of values (each counted `weights` times, default once) from a NUM_BINS histogram over
    [lo, hi], interpolating linearly inside a bin."""
    n = values.size if weights is None else weights.sum()
    targets = np.asarray(QUANTILES) * n
    edges = np.linspace(lo - EDGE_PAD, hi + EDGE_PAD, NUM_BINS + 1)
    cum = np.cumsum(np.histogram(values, bins=edges, weights=weights)[0])
    out = np.empty(len(QUANTILES))
    for qi, i in enumerate(np.searchsorted(cum, targets)):
        if i == 0:  # inside the first bin: its left edge (LeRobot does not interpolate there)
            out[qi] = edges[0]
        elif i >= NUM_BINS:
            out[qi] = edges[-1]
        else:
            before, inside = cum[i - 1], cum[i] - cum[i - 1]
            frac = (targets[qi] - before) / inside if inside else 0.0
            out[qi] = edges[i] + frac * (edges[i + 1] - edges[i])
    return out


def column_stats(x: np.ndarray, count: int | None = None) -> dict[str, np.ndarray]:
    """Statistics of the rows of x (N, D): each of shape (D,), count of shape (1,) (`count` defaults to N).

    min and max keep x's dtype (bool, int or float, as LeRobot stores them); the rest are float64.
    """
    n = x.shape[0]
    xf = x.astype(np.float64)
    mean = xf.mean(axis=0)
    stats = {"min": x.min(axis=0), "max": x.max(axis=0), "mean": mean, "std": xf.std(axis=0),
             "count": np.array([n if count is None else count], dtype=np.int64)}
    if n < 2:  # one sample: quantiles are the value itself
        qs = np.broadcast_to(mean, (len(QUANTILES), mean.size))
    else:
        qs = _quantiles(xf, xf.min(axis=0), xf.max(axis=0))
    for key, q in zip(QUANTILE_KEYS, qs, strict=True):
        stats[key] = np.array(q, dtype=np.float64)
    return stats


def sample_frame_indices(length: int, min_samples: int = 100, max_samples: int = 10_000,
                         power: float = 0.75) -> np.ndarray:
    """Which frames of an episode feed its image statistics: all of a short one, ~length**0.75 of a long one,
    spread evenly from the first to the last frame (LeRobot's sampling)."""
    lo = min(min_samples, length)
    n = max(lo, min(int(length ** power), max_samples))
    return np.round(np.linspace(0, length - 1, n)).astype(int)


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of (T, H, W, 3) uint8 frames, in [0, 1], each (3, 1, 1); count = sampled frames.

    From each channel's 256-value histogram: the same numbers as `column_stats` over every pixel, ~20x faster
    (a recording computes them for every camera of every episode)."""
    picked = frames[sample_frame_indices(frames.shape[0])]
    h, w = picked.shape[1:3]
    if max(h, w) >= 300:  # stride large frames down to ~150 px, as LeRobot does
        step = int(w / 150) if w > h else int(h / 150)
        picked = picked[:, ::step, ::step]
    flat = picked.reshape(-1, picked.shape[-1])
    if flat.dtype != np.uint8:
        stats = column_stats(flat, count=picked.shape[0])
    else:
        stats = _uint8_stats(flat, picked.shape[0])
    return {k: v if k == "count" else (v.astype(np.float64) / 255.0).reshape(-1, 1, 1) for k, v in stats.items()}


def _uint8_stats(flat: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """`column_stats` of uint8 columns (N, D), computed from per-column value counts."""
    values = np.arange(256, dtype=np.float64)
    cols = []
    for d in range(flat.shape[1]):
        c = np.bincount(flat[:, d], minlength=256).astype(np.float64)
        seen = np.nonzero(c)[0]
        lo, hi = seen[0], seen[-1]
        mean = (c * values).sum() / c.sum()
        std = np.sqrt((c * (values - mean) ** 2).sum() / c.sum())
        qs = _histogram_quantiles(values[seen], c[seen], float(lo), float(hi)) if flat.shape[0] > 1 else \
            np.full(len(QUANTILES), mean)
        cols.append((lo, hi, mean, std, qs))
    stats = {"min": np.array([c[0] for c in cols], dtype=np.uint8), "max": np.array([c[1] for c in cols], np.uint8),
             "mean": np.array([c[2] for c in cols]), "std": np.array([c[3] for c in cols]),
             "count": np.array([count], dtype=np.int64)}
    for j, key in enumerate(QUANTILE_KEYS):
        stats[key] = np.array([c[4][j] for c in cols])
    return stats


def episode_stats(spec: DatasetSpec, columns: dict[str, np.ndarray], videos: dict[str, np.ndarray]) -> Stats:
    """Statistics of one episode, feature by feature in the spec's order.

    `columns` holds every non-video feature as (T,) for scalars or (T, *shape); vectors give (D,) stats,
    scalars (1,); higher-rank features are reduced over all but their last axis (as LeRobot does).
    """
    out: Stats = {}
    for name, ft in spec.features.items():
        if ft.is_video:
            out[name] = image_stats(videos[name])
            continue
        data = columns[name]
        flat = data.reshape(-1, 1) if data.ndim == 1 else data.reshape(-1, data.shape[-1])
        out[name] = column_stats(flat, count=data.shape[0])
    return out


def aggregate_stats(stats_list: list[Stats]) -> Stats:
    """Dataset statistics from per-episode ones (features present in any episode, in first-seen order)."""
    keys: list[str] = []
    for stats in stats_list:
        keys += [k for k in stats if k not in keys]
    out: Stats = {}
    for key in keys:
        parts = [s[key] for s in stats_list if key in s]
        means = np.stack([p["mean"] for p in parts]).astype(np.float64)
        counts = np.stack([p["count"] for p in parts]).astype(np.float64)  # (E, 1)
        total = counts.sum(axis=0)  # (1,): broadcasts against every stat's shape
        w = counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim))
        mean = (means * w).sum(axis=0) / total
        var = ((np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2) * w).sum(axis=0) / total
        agg = {"min": np.min(np.stack([p["min"] for p in parts]), axis=0),
               "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
               "mean": mean, "std": np.sqrt(var), "count": total.astype(np.int64)}
        for q in QUANTILE_KEYS:
            if all(q in p for p in parts):
                agg[q] = (np.stack([p[q] for p in parts]).astype(np.float64) * w).sum(axis=0) / total
        out[key] = agg
    return out


def stats_to_json(stats: Stats) -> dict:
    """Nested lists, as stats.json stores them."""
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


def stats_from_json(data: dict) -> Stats:
    return {k: {s: np.asarray(v) for s, v in d.items()} for k, d in data.items()}


def flatten_episode_stats(stats: Stats) -> dict[str, list]:
    """The `stats/<feature>/<stat>` columns of an episode's row in meta/episodes."""
    return {f"stats/{k}/{s}": np.asarray(v).tolist() for k, d in stats.items() for s, v in d.items()}


def unflatten_episode_stats(row: dict) -> Stats:
    """Per-episode statistics back from the `stats/<feature>/<stat>` columns of a meta/episodes row."""
    out: Stats = {}
    for col, v in row.items():
        if not col.startswith("stats/") or v is None:
            continue
        feature, stat = col[len("stats/"):].rsplit("/", 1)
        out.setdefault(feature, {})[stat] = np.asarray(v)
    return out
