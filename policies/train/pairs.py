"""Paired views for the consistency loss (policy config `consistency_weight`).

A restyled dataset recorded from the same seeds as the first dataset holds the very same expert trajectories in
other appearances, so each of its frames has a twin: the same frame of the first dataset's episode of that seed.
Training on pairs lets the loss compare what the encoder sees in both (SODA's and SVEA's idea, with the
restyler's views in place of image augmentations). `PairSampler` draws half of each batch from the frames that
have a twin, as `StepSampler` draws a whole batch, and fills the other half with their twins.
"""
from __future__ import annotations

import numpy as np
import torch

from policies.features import TWIN
from policies.train.data import ChunkDataset, FrameTable, Source, StepSampler
from twin_kit import InputError


def _seed(meta: dict) -> int | None:
    seed = meta.get("seed")
    return None if seed is None else int(seed)


def twin_rows(table: FrameTable, sources: list[Source]) -> np.ndarray:
    """(N,) for each row of a later dataset, the row of the first dataset holding the same frame of the episode
    recorded from the same seed; -1 where there is none (no such seed, or the episodes' lengths or joint states
    differ: another trajectory, not another look at the same one)."""
    out = np.full(len(table), -1, dtype=np.int64)
    if len(sources) < 2:
        return out
    starts: dict[tuple[int, int], np.ndarray] = {}
    for d in range(len(sources)):
        mine = np.flatnonzero(table.dataset == d)
        eps = table.episode[mine]
        for e in np.unique(eps):
            starts[(d, int(e))] = mine[eps == e]
    first = sources[0]
    by_seed = {_seed(ep.meta): ep.index for ep in first.view.episodes if (0, ep.index) in starts}
    by_seed.pop(None, None)
    for d, src in enumerate(sources[1:], start=1):
        for ep in src.view.episodes:
            rows = starts.get((d, ep.index))
            original = by_seed.get(_seed(ep.meta))
            if rows is None or original is None:
                continue
            twin = starts[(0, original)]
            if len(twin) == len(rows) and np.array_equal(table.state[rows], table.state[twin]):
                out[rows] = twin
    return out


def twin_positions(table: FrameTable, sources: list[Source], rows: np.ndarray) -> np.ndarray:
    """(len(rows),) for each of `rows` (a dataset's table rows), the position within `rows` of its twin, or -1
    (none, or the twin is not among `rows`: a held-out episode)."""
    twins = twin_rows(table, sources)[rows]
    where = np.full(len(table), -1, dtype=np.int64)
    where[rows] = np.arange(len(rows))
    return np.where(twins >= 0, where[np.maximum(twins, 0)], -1)


class PairSampler:
    """Each step's batch as pairs: batch/2 frames that have a twin, drawn by a `StepSampler` over them (with their
    rows' --mix weights), then their twins; every process keeps its share of the pairs, both halves of each."""

    def __init__(self, weights: np.ndarray, twins: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1):
        if batch_size % (2 * world):
            raise InputError(f"consistency_weight trains on pairs: --batch-size {batch_size} must be a multiple of "
                             f"{2 * world} (2 x the processes)")
        self.anchors = np.flatnonzero(twins >= 0)
        if not len(self.anchors):
            raise InputError("consistency_weight: no frame of the later datasets has a twin in the first one")
        self.twins = twins
        self.inner = StepSampler(np.asarray(weights, dtype=np.float64)[self.anchors], batch_size // 2, seed, rank,
                                 world)

    def indices(self, step: int) -> np.ndarray:
        """This process's share of step `step`'s batch: its anchors, then their twins in the same order."""
        a = self.anchors[self.inner.indices(step)]
        return np.concatenate([a, self.twins[a]])

    def batch(self, data: ChunkDataset, step: int) -> dict[str, torch.Tensor]:
        """The step's samples with `train.twin`: anchor i's twin sits at position k + i (k anchors); twins -1."""
        idx = self.indices(step)
        k = len(idx) // 2
        out = data.batch(idx)
        out[TWIN] = torch.cat([torch.arange(k, 2 * k), torch.full((k,), -1)])
        return out
