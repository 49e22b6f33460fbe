"""What the network stage costs in memory: the process's peak resident set (reset at the start of the stage
where Linux allows it), CUDA's peak allocation, and the exact bytes of the aggregator tokens kept for the
heads versus what keeping every layer would take.
"""
from __future__ import annotations

import resource
from contextlib import contextmanager
from pathlib import Path

MB = 1024 * 1024


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's resident set to its current size (Linux 4+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The process's peak resident set: VmHWM (resettable) where there is one, else getrusage (lifetime)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kb) * 1024


def rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    return int(kb) * 1024 if kb is not None else peak_rss_bytes()


@contextmanager
def measure_peak(record: dict, device: str = "cpu"):
    """Fill `record` with the stage's peak RSS (and CUDA peak) in MB; `peak_rss_since_start` says whether the
    figure is for this stage alone or the whole process so far."""
    import torch

    record["rss_before_mb"] = round(rss_bytes() / MB, 1)
    record["peak_rss_since_start"] = reset_peak_rss()
    cuda = device == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        yield record
    finally:
        record["peak_rss_mb"] = round(peak_rss_bytes() / MB, 1)
        if cuda:
            record["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / MB, 1)


def token_bytes(cfg, frames: int, height: int, width: int, element_size: int, layers: int | None = None) -> int:
    """Bytes of aggregator outputs for `frames` images: (frames, special + patches, 2 x embed_dim) per layer,
    for `layers` layers (default: the ones the heads read, `cfg.keep_layers`)."""
    patches = (height // cfg.patch_size) * (width // cfg.patch_size)
    tokens = 1 + cfg.num_register_tokens + patches
    n = len(cfg.keep_layers) if layers is None else layers
    return n * frames * tokens * cfg.head_dim_in * element_size
