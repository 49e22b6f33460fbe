"""Camera frames decoded once per run into a cache in the run folder: one uint8 .npy per camera, (N, H, W, 3) in
FrameTable row order, memory-mapped by every process.

Decoding the mp4s every epoch would dominate training on a CPU; the cache is decoded by all processes together
(each takes every world-th episode), kept while the run is unfinished so --resume reuses it, and removed by
the run when it completes. A manifest holds the fingerprint of what was decoded (dataset paths, episodes, video
files' sizes and times), so a cache of other data is never reused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from policies.train.data import FrameTable, Source
from policies.train.dist import Processes
from twin_kit import InputError, atomic_write_file, progress, remove_tree

MANIFEST = "manifest.json"


def _file_name(key: str) -> str:
    return key.replace("/", "_") + ".npy"


def fingerprint(sources: list[Source], keys: list[str], shapes: dict[str, tuple[int, ...]]) -> str:
    """A hash of everything the cached frames depend on."""
    parts = []
    for src in sources:
        eps = []
        for e in src.episodes:
            ep = src.view.episodes[e]
            vids = []
            for k in keys:
                path, a, b = ep.videos[k]
                st = path.stat()
                vids.append([k, str(path.resolve()), a, b, st.st_size, st.st_mtime_ns])
            eps.append([e, ep.length, vids])
        parts.append([str(src.root.resolve()), eps])
    data = json.dumps([parts, {k: list(v) for k, v in shapes.items()}], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def _valid(folder: Path, print_: str, keys: list[str]) -> bool:
    try:
        m = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return m.get("fingerprint") == print_ and all((folder / _file_name(k)).is_file() for k in keys)


def cache_frames(table: FrameTable, sources: list[Source], keys: list[str], folder: Path, procs: Processes,
                 quiet: bool = False) -> None:
    """Fill `table.images` with memory-mapped frames of the cameras `keys`, decoding the videos unless `folder`
    already holds them."""
    if not keys:
        return
    feats = sources[0].view.spec.features
    n = len(table)
    shapes = {k: (n, *feats[k].shape[:2], 3) for k in keys}
    stamp = fingerprint(sources, keys, shapes)
    fresh = procs.broadcast(_valid(folder, stamp, keys) if procs.main else None)
    if not fresh:
        if procs.main:
            remove_tree(folder)
            folder.mkdir(parents=True)
            for k in keys:
                np.lib.format.open_memmap(folder / _file_name(k), mode="w+", dtype=np.uint8, shape=shapes[k]).flush()
        procs.barrier()
        _decode(table, sources, folder, keys, procs, quiet)
        procs.barrier()
        if procs.main:
            atomic_write_file(folder / MANIFEST, json.dumps({"fingerprint": stamp, "rows": n,
                                                             "cameras": keys}).encode())
        procs.barrier()
    for k in keys:
        table.images[k] = np.load(folder / _file_name(k), mmap_mode="r")


def _decode(table: FrameTable, sources: list[Source], folder: Path, keys: list[str], procs: Processes,
            quiet: bool) -> None:
    """Decode this process's share of the episodes (every world-th) into the cache files."""
    starts: list[tuple[int, int, int, int]] = []  # (dataset, episode, first row, length)
    row = 0
    for d, src in enumerate(sources):
        for e in src.episodes:
            length = src.view.episodes[e].length
            starts.append((d, e, row, length))
            row += length
    mine = starts[procs.rank::procs.world]
    out = {k: np.load(folder / _file_name(k), mmap_mode="r+") for k in keys}
    with progress(quiet or not procs.main) as bar:
        task = bar.add_task("decode", total=len(mine), status=f"{len(starts)} episodes x {len(keys)} cameras")
        for d, e, first, length in mine:
            for k in keys:
                frames = sources[d].view.episode_video(e, k)
                if frames.shape[0] != length or frames.shape[1:] != out[k].shape[1:]:
                    raise InputError(f"{sources[d].root}: episode {e}'s {k} video decodes to {frames.shape}, "
                                     f"expected {(length, *out[k].shape[1:])}")
                out[k][first:first + length] = frames
            bar.update(task, advance=1)
    for arr in out.values():
        arr.flush()
    assert row == len(table)
