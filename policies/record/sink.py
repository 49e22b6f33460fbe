"""Finished episodes into the dataset, in episode-number order whatever order they finish in (worlds of one
process, or shards on several workers), so that indices are the same as a single process would write.

The writer is opened when the first `Layout` arrives (the spec comes from a built world); every shard's layout
must agree. Episodes that arrive early wait in memory until the ones before them are written.
"""
from __future__ import annotations

from pathlib import Path

from policies.datasets import DatasetWriter
from policies.record.rollout import Episode, Layout
from twin_kit import InputError


class OrderedSink:
    """Writes episodes `first`, `first + 1`, ... to the dataset at `root` as they become available."""

    def __init__(self, root: str | Path, append: bool, first: int):
        self.root, self.append, self.next = Path(root), append, first
        self.layout: Layout | None = None
        self.writer: DatasetWriter | None = None
        self.waiting: dict[int, Episode] = {}

    def open(self, layout: Layout) -> None:
        """Take a shard's layout: the first opens the dataset, the others must describe the same frames."""
        if self.layout is None:
            self.layout = layout
            self.writer = DatasetWriter(self.root, layout.spec, append=self.append)
            if self.writer.total_episodes != self.next:
                raise InputError(f"{self.root}: holds {self.writer.total_episodes} episodes, expected {self.next} "
                                 "(another run changed it)")
            return
        why = self.layout.spec.mismatch(layout.spec)
        if why:
            raise InputError(f"recording workers disagree on the dataset's features ({why})")

    def add(self, ep: Episode) -> list[Episode]:
        """Queue an episode; returns the episodes written now (in order)."""
        if self.writer is None:
            raise RuntimeError("an episode arrived before the dataset layout")
        self.waiting[ep.number] = ep
        done = []
        while self.next in self.waiting:
            e = self.waiting.pop(self.next).realise()
            index = self.writer.add_episode(e.frames, e.videos, self.layout.instruction, e.meta())
            if index != e.number:
                raise RuntimeError(f"episode {e.number} was written as episode {index}")
            self.next += 1
            done.append(e)
        return done

    @property
    def total_episodes(self) -> int:
        return self.writer.total_episodes if self.writer is not None else self.next

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
