"""Where and in what precision the network runs, chosen automatically.

CUDA when present: the aggregator (trunk) under bf16 autocast (fp16 on GPUs without bf16), attention through
`scaled_dot_product_attention`, which dispatches to the flash / memory-efficient kernels for half-precision
inputs; the heads always run in fp32 (VGGT.forward turns autocast off around them and casts the tokens).
CPU: everything in fp32 (CPU half precision is slower and less accurate here), same SDPA call.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

Precision = str   # "auto" | "fp32" | "bf16" | "fp16"


def pick_device(device: str | None = None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def trunk_dtype(device: str, precision: Precision = "auto") -> torch.dtype:
    """The autocast dtype of the trunk: bf16/fp16 on CUDA by default, fp32 on the CPU unless asked."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}")
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def trunk_autocast(device: str, precision: Precision = "auto"):
    """Autocast context for the trunk (a no-op for fp32). The heads inside VGGT.forward opt out of it."""
    dtype = trunk_dtype(device, precision)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def attention_kernels(device: str, precision: Precision = "auto") -> str:
    """Which scaled-dot-product attention kernels PyTorch may pick for the trunk, for the manifest."""
    dtype = trunk_dtype(device, precision)
    if device == "cuda":
        b = torch.backends.cuda
        kinds = [name for name, on in (("flash", b.flash_sdp_enabled() and dtype != torch.float32),
                                        ("memory-efficient", b.mem_efficient_sdp_enabled()),
                                        ("math", b.math_sdp_enabled())) if on]
        return f"SDPA cuda {str(dtype).removeprefix('torch.')} ({'/'.join(kinds)})"
    return f"SDPA cpu {str(dtype).removeprefix('torch.')}"


def infer(model, images: torch.Tensor, device: str | None = None, precision: Precision = "auto"
          ) -> dict[str, torch.Tensor]:
    """One pass over (S, 3, H, W) images -> the model's outputs as fp32 CPU tensors (batch dim kept)."""
    device = pick_device(device)
    model = model.to(device)
    with torch.inference_mode(), trunk_autocast(device, precision):
        out = model(images.to(device))
    return {k: v.float().cpu() for k, v in out.items() if torch.is_tensor(v)}
