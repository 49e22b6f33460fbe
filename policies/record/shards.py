"""Scale-out: episode numbers sharded over Ray workers, each building its own worlds and streaming back its
episodes as they finish; the caller writes them in episode order (policies.record.sink), so the dataset is the
one a single process writes.

Shards are round-robin (worker j records numbers j, j + K, ...), so workers progress through the dataset
together and few episodes wait for their predecessors. `--ray auto` joins a running cluster or starts a local
one; `--ray ADDRESS` joins that cluster (its nodes need Twin installed and the bundle at the same path);
`--workers K` without `--ray` starts a local instance of K CPUs. A local instance is shut down at the end.
`stream_shards` is the runner itself, which `twin eval` shares (policies.evaluate.shards).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

from policies.record.config import RecordConfig
from twin_kit import InputError, one_line, warn


def shard(numbers: list[int], workers: int) -> list[list[int]]:
    """Round-robin shards of the episode numbers (empty shards dropped)."""
    return [s for s in (numbers[j::workers] for j in range(workers)) if s]


def _record_shard(numbers: list[int], cfg: RecordConfig, threads: int):
    """What a worker runs: a recorder over its shard, yielding the layout, then episodes."""
    import torch

    from policies.record.rollout import record_episodes

    torch.set_num_threads(max(1, threads))
    yield from record_episodes(cfg, numbers)


def connect(address: str | None, workers: int) -> tuple[object, bool]:
    """(ray module, whether this call started a local instance): join `address` (auto: a running cluster if
    any), or start a local instance with `workers` CPUs when address is None or auto finds none."""
    try:
        import ray
    except ImportError:
        raise InputError("sharding over workers needs Ray: pip install ray") from None
    kw = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    if ray.is_initialized():
        return ray, False
    if address not in (None, "auto"):
        reachable(address)
        try:
            ray.init(address=address, **kw)
        except Exception as e:  # noqa: BLE001 - Ray raises several types for an unreachable cluster
            raise InputError(f"--ray {address}: cannot join the Ray cluster ({one_line(e)})") from None
        return ray, False
    if address == "auto":
        try:
            ray.init(address="auto", **kw)
            return ray, False
        except ConnectionError:
            pass
    import os

    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, **kw)
    return ray, True


def reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a cluster address nothing answers at (Ray itself keeps retrying for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray {address}: expected HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"--ray {address}: no Ray cluster answers there ({one_line(e)})") from None


def _absolute(cfg: RecordConfig) -> RecordConfig:
    """The config with its bundle path made absolute (workers need not share the driver's directory)."""
    return dataclasses.replace(cfg, bundle=str(Path(cfg.bundle).resolve()))


def sharded_episodes(cfg: RecordConfig, numbers: list[int]) -> Iterator:
    """Layouts and episodes of `numbers` recorded by Ray workers, as they arrive (out of order)."""
    yield from stream_shards(cfg.ray, cfg.workers, numbers, _record_shard, (_absolute(cfg), 1),
                             doing="recording", worker="a recording worker")


def stream_shards(address: str | None, workers: int, items: list, run, args: tuple, doing: str,
                  worker: str) -> Iterator:
    """What `run(shard, *args)` yields on Ray workers, one round-robin shard of `items` each (at most one per
    CPU of the cluster), item by item as they arrive. Joins or starts Ray as `connect` says (a local instance is
    shut down at the end); closing the iterator (Ctrl-C, an error downstream) cancels the shards still running.
    `doing` and `worker` name the job in messages ("recording", "a recording worker")."""
    ray, started = connect(address, workers)
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = workers or cpus
        if workers > cpus:  # shards beyond the CPUs would wait for others to end, their results held meanwhile
            warn(f"--workers {workers}: the Ray cluster has {cpus} CPUs; {doing} {cpus} shards")
            workers = cpus
        parts = shard(list(items), workers)
        task = ray.remote(num_cpus=1, max_retries=0)(run)
        pending = [task.options(num_returns="streaming").remote(p, *args) for p in parts]
        try:
            while pending:
                ready, _ = ray.wait(pending, num_returns=1)
                for g in ready:
                    try:
                        ref = next(g)
                    except StopIteration:
                        pending.remove(g)
                        continue
                    yield _get(ray, ref, worker)
        finally:
            for g in pending:
                try:
                    ray.cancel(g, force=True)
                except Exception:  # noqa: BLE001 - the worker may be gone already
                    pass
    finally:
        if started:
            ray.shutdown()


def _get(ray, ref, worker: str):
    """ray.get, with a worker's InputError (bad scene, a policy that does not fit the robot...) surfacing as
    itself; any other failure in one line naming the `worker`."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, InputError):
            raise InputError(str(cause)) from None
        raise RuntimeError(f"{worker} failed: {one_line(cause or e)}") from None
