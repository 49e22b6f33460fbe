"""The machine a figure was measured on: benches record it beside their numbers, since step rates (and so what fits
a time budget) depend on the CPU, and bf16 is fast only where the hardware computes it."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def native_bf16(device) -> bool:
    """Whether the torch `device` computes bfloat16 in hardware: a CUDA GPU that supports it, or a CPU with AVX-512
    BF16 or AMX. Elsewhere (an AVX2-only CPU, say) oneDNN emulates bf16 and a bf16 step is about ten times slower."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(p()) for p in probes if p is not None)


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo's `model name` on Linux, else what `platform` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model and count, torch's CPU kernel level (AVX2, AVX512, ...), native bf16, torch version and the CUDA
    device if any: the `host` entry of every bench's JSON."""
    import torch

    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": native_bf16(torch.device("cpu")), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
