"""Training samples from one or more LeRobot datasets: the observation at frame t (state and every camera's frame)
and the action chunk t .. t+H-1 with its padding mask (LeRobot's action delta timestamps, via `action_chunks`).

Datasets are checked to share their features, split into training and validation episodes (seeded, per dataset,
so datasets recorded with the same seeds hold out the same episodes), and flattened into one `FrameTable` whose
camera frames live in a decode-once cache (policies.train.frames). `ChunkDataset` is the map-style torch dataset
over its rows; `StepSampler` draws each step's batch from (seed, step) alone, weighted by --mix and sharded over
the processes, so a resumed run sees the very batches an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from policies.datasets.reader import LeRobotDatasetView, read_dataset
from policies.datasets.stats import aggregate_stats
from policies.features import ACTION, ACTION_IS_PAD, OBJECTS, STAT_NAMES, STATE, PolicyFeatures, policy_features
from policies.processor import action_chunks
from policies.train.config import TrainConfig
from twin_kit import InputError


@dataclass
class Source:
    """One dataset: its view, the episodes used, and which of them are held out for validation."""

    root: Path
    view: LeRobotDatasetView
    train: list[int]
    val: list[int]
    weight: float | None = None  # --mix weight

    @property
    def episodes(self) -> list[int]:
        return sorted(self.train + self.val)


@dataclass
class FrameTable:
    """Every used frame of every dataset, one row each: state, action chunk and padding, camera frames (filled
    by the frame cache), which dataset and episode it came from and whether it is held out."""

    state: np.ndarray  # (N, S) float32
    action: np.ndarray  # (N, H, A) float32
    is_pad: np.ndarray  # (N, H) bool
    dataset: np.ndarray  # (N,) int
    episode: np.ndarray  # (N,) int, the episode index within its dataset
    val: np.ndarray  # (N,) bool
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera key -> (N, H, W, 3) uint8
    objects: np.ndarray | None = None  # (N, K, 2) float32 standardised object xy (auxiliary targets), if asked

    def __len__(self) -> int:
        return self.state.shape[0]


def _split(n: int, val_episodes: float, seed: int, root: Path) -> set[int]:
    """The held-out episode indices of a dataset of n episodes: the first of a seeded permutation."""
    if val_episodes <= 0:
        return set()
    if val_episodes >= 1:
        k = int(val_episodes)
        if k >= n:
            raise InputError(f"{root}: --val-episodes {k} leaves none of its {n} episodes for training")
    else:
        k = min(n - 1, max(1, round(val_episodes * n)))
    return set(np.random.default_rng(seed).permutation(n)[:k].tolist())


def _same_features(a: PolicyFeatures, b: PolicyFeatures, root_a: Path, root_b: Path) -> None:
    for what, x, y in (("state names", a.state_names, b.state_names), ("action names", a.action_names,
                                                                         b.action_names),
                       ("cameras", a.cameras, b.cameras), ("fps", a.fps, b.fps)):
        if x != y:
            raise InputError(f"{root_b}: does not match {root_a} ({what} differ: {y} vs {x}); mixed datasets "
                             "must share state, action and cameras")


def open_sources(cfg: TrainConfig) -> tuple[list[Source], PolicyFeatures]:
    """The datasets of `cfg`, checked and split, and the policy features they share (statistics aggregated
    over all of them, count-weighted, so mixed datasets normalise alike)."""
    weights = cfg.mix_weights()
    cameras = cfg.camera_list()
    sources, feats = [], []
    for k, d in enumerate(cfg.dataset):
        root = Path(d)
        if not root.exists():
            raise InputError(f"{root}: no such dataset")
        view = read_dataset(root)
        f = policy_features(view, cameras)
        if feats:
            _same_features(feats[0], f, sources[0].root, root)
        held = _split(view.total_episodes, cfg.val_episodes, cfg.seed, root)
        used = [e.index for e in view.episodes if not cfg.success_only or bool(e.meta.get("success", True))]
        train = [i for i in used if i not in held]
        if not train:
            why = " (failed episodes are left out; --no-success-only keeps them)" if cfg.success_only else ""
            raise InputError(f"{root}: no episodes left for training{why}")
        sources.append(Source(root, view, train, [i for i in used if i in held],
                              None if weights is None else weights[k]))
        feats.append(f)
    first = feats[0]
    if len(sources) > 1:
        try:
            stats = aggregate_stats([{k: s.view.stats[k] for k in (STATE, ACTION)} for s in sources])
        except (KeyError, ValueError) as e:
            raise InputError(f"the datasets' statistics cannot be combined ({type(e).__name__}: {e})") from None
        first.stats = {k: {s: np.asarray(v, dtype=np.float64).reshape(-1).tolist() for s, v in stats[k].items()
                           if s in STAT_NAMES} for k in (STATE, ACTION)}
    return sources, first


def frame_table(sources: list[Source], chunk_size: int, objects: bool = False) -> FrameTable:
    """The non-video part of every used frame (state, action chunks and padding; with `objects`, every task
    object's xy standardised over the frames); images are added later."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("state", "action", "is_pad", "dataset", "episode", "val")}
    xy: list[np.ndarray] = []
    for d, src in enumerate(sources):
        held = set(src.val)
        for e in src.episodes:
            cols = src.view.episode_frames(e)
            chunks, pad = action_chunks(cols[ACTION].astype(np.float32), chunk_size)
            n = chunks.shape[0]
            parts["state"].append(cols[STATE].astype(np.float32))
            parts["action"].append(chunks)
            parts["is_pad"].append(pad)
            parts["dataset"].append(np.full(n, d))
            parts["episode"].append(np.full(n, e))
            parts["val"].append(np.full(n, e in held))
            if objects:
                xy.append(_object_xy(cols, src.root, xy[0].shape[1] if xy else None))
    table = FrameTable(**{k: np.concatenate(v) for k, v in parts.items()})
    if objects:
        table.objects = _standardise(np.concatenate(xy))
    return table


def _object_xy(cols: dict[str, np.ndarray], root: Path, count: int | None) -> np.ndarray:
    """(n, K, 2) object xy of one episode's frames, checked to be there and to match the other datasets'."""
    poses = cols.get(OBJECTS)
    if poses is None or poses.ndim != 3 or poses.shape[2] < 2:
        raise InputError(f"{root}: has no {OBJECTS} (objects x pose) to train the auxiliary object head on "
                         "(record it with twin record, or set aux_weight 0)")
    if count is not None and poses.shape[1] != count:
        raise InputError(f"{root}: records {poses.shape[1]} objects, the other datasets {count}")
    if not np.isfinite(poses[..., :2]).all():
        raise InputError(f"{root}: {OBJECTS} holds NaN or infinite values")
    return poses[..., :2].astype(np.float32)


def _standardise(xy: np.ndarray) -> np.ndarray:
    """Zero mean, unit spread per object and axis (a spread under 1 cm counts as 1 cm: a fixed object)."""
    mean, std = xy.mean(0, keepdims=True), np.maximum(xy.std(0, keepdims=True), 0.01)
    return ((xy - mean) / std).astype(np.float32)


class ChunkDataset(Dataset):
    """Map-style dataset over rows of a FrameTable: sample i is a dict of tensors, `observation.state` (S,),
    `observation.images.<camera>` (H, W, 3) uint8, `action` (chunk, A) and `action_is_pad` (chunk,)."""

    def __init__(self, table: FrameTable, rows: np.ndarray):
        self.table, self.rows = table, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.batch([i]).items()}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        b = self.batch(indices)
        return [{k: v[j] for k, v in b.items()} for j in range(len(indices))]

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """Samples `indices`, stacked (B, ...): one gather per array, no per-sample Python."""
        r = self.rows[np.asarray(indices, dtype=np.int64)]
        t = self.table
        out = {STATE: torch.from_numpy(t.state[r]), ACTION: torch.from_numpy(t.action[r]),
               ACTION_IS_PAD: torch.from_numpy(t.is_pad[r])}
        if t.objects is not None:
            out[OBJECTS] = torch.from_numpy(t.objects[r])
        order = np.argsort(r, kind="stable")  # memmaps read fastest in file order
        for key, frames in t.images.items():
            got = np.empty((len(r), *frames.shape[1:]), np.uint8)
            got[order] = frames[r[order]]
            out[key] = torch.from_numpy(got)
        return out


class StepSampler:
    """The batch of each optimiser step, a function of (seed, step) alone.

    Samples are drawn from a stream of 'epochs' of len(weights) draws each: a seeded permutation when the weights
    are uniform, else a seeded weighted draw with replacement (the mix of datasets). Step s takes stream positions
    s * batch .. (s + 1) * batch - 1, and each process keeps every world-th of them (DistributedSampler's
    sharding), so the processes together see the same batch one process would.
    """

    def __init__(self, weights: np.ndarray, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        w = np.asarray(weights, dtype=np.float64)
        self.n, self.batch_size, self.seed, self.rank, self.world = len(w), batch_size, seed, rank, world
        self.p = None if np.allclose(w, w[0]) else w / w.sum()
        self._epoch: tuple[int, np.ndarray] | None = None

    def _stream(self, epoch: int) -> np.ndarray:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            draw = rng.permutation(self.n) if self.p is None else rng.choice(self.n, self.n, p=self.p)
            self._epoch = (epoch, draw)
        return self._epoch[1]

    def global_indices(self, step: int) -> np.ndarray:
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        out = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(pos // self.n):
            sel = pos // self.n == epoch
            out[sel] = self._stream(int(epoch))[pos[sel] % self.n]
        return out

    def indices(self, step: int) -> np.ndarray:
        """This process's share of step `step`'s batch."""
        return self.global_indices(step)[self.rank::self.world]

    def batch(self, data: ChunkDataset, step: int) -> dict[str, torch.Tensor]:
        """This process's samples of step `step`."""
        return data.batch(self.indices(step))


def sample_weights(table: FrameTable, rows: np.ndarray, sources: list[Source]) -> np.ndarray:
    """Per-row sampling weights of the training rows: --mix weight of the row's dataset / its row count (so each
    dataset gets its share whatever its size), or uniform without --mix."""
    ds = table.dataset[rows]
    if sources[0].weight is None:
        return np.ones(len(rows))
    counts = np.bincount(ds, minlength=len(sources)).astype(np.float64)
    w = np.array([s.weight for s in sources], dtype=np.float64)
    return w[ds] / counts[ds]
