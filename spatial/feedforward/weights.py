"""Load VGGT checkpoints (`model.pt` / `model.safetensors`) from a local path: strict names and shapes, any of
fp32 / bf16 / fp16 on disk, cast to the model's dtype. Never downloads. A mismatch is one InputError line
that names the first offending key, so a wrong file or config is obvious without a traceback.

Checkpoints Twin writes carry their `VGGTConfig` (safetensors metadata, or a "config" entry beside "model" in
a .pt), so `load_vggt` rebuilds any size; a file without one (the official ones) is read as VGGT-1B.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from spatial.feedforward.config import VGGT_1B, VGGTConfig
from twin_kit import InputError

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
CONFIG_KEY = "twin_vggt_config"


def config_to_json(cfg: VGGTConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def config_from_json(text: str, where: str = "checkpoint") -> VGGTConfig:
    try:
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(VGGTConfig)}
        return VGGTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k in known})
    except (ValueError, TypeError) as e:
        raise InputError(f"{where}: unreadable network configuration ({e})") from None


def read_checkpoint_config(path: str | Path) -> VGGTConfig:
    """The config stored in a checkpoint Twin wrote; VGGT-1B for one without (the official files)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file (Twin never downloads weights; give a local path)")
    text = None
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get(CONFIG_KEY)
        except Exception as e:
            raise InputError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    else:
        obj = _torch_load(path)
        if isinstance(obj, dict) and isinstance(obj.get("config"), str):
            text = obj["config"]
    return config_from_json(text, str(path)) if text else VGGT_1B


def save_vggt_weights(model: nn.Module, path: str | Path) -> Path:
    """Write the state dict (and the model's config) as .safetensors or .pt, atomically."""
    from twin_kit import atomic_output

    path = Path(path)
    cfg = getattr(model, "cfg", None)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={CONFIG_KEY: config_to_json(cfg)} if cfg else None)
        else:
            torch.save({"model": state, **({"config": config_to_json(cfg)} if cfg else {})}, tmp)
    return path


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise InputError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or torch (`.pt`, `.pth`, `.bin`) checkpoint, on the CPU, memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file (Twin never downloads weights; give a local path)")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise InputError(f"{path}: reading .safetensors needs the 'safetensors' package "
                             "(pip install safetensors), or give the .pt checkpoint") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # a truncated or foreign file: say so in one line
            raise InputError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    obj = _torch_load(path)
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != "config" or isinstance(v, torch.Tensor)}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """InputError naming the first key that is missing, unexpected, of another shape or not floating point."""
    expected = model.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise InputError(f"{where}: missing parameter {key!r} {tuple(ref.shape)} "
                             f"({len(set(expected) - set(state))} missing in all; wrong file or config?)")
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise InputError(f"{where}: {key!r} has shape {tuple(got.shape)}, the network expects "
                             f"{tuple(ref.shape)} (wrong file or config?)")
        if ref.is_floating_point() and got.dtype not in FLOAT_DTYPES:
            raise InputError(f"{where}: {key!r} is {got.dtype}; expected fp32, bf16 or fp16")
    extra = [k for k in state if k not in expected]
    if extra:
        raise InputError(f"{where}: unexpected parameter {extra[0]!r} ({len(extra)} unexpected in all; "
                         "wrong file or config?)")


def load_vggt_weights(model: nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> nn.Module:
    """Load a checkpoint into `model` strictly, casting every tensor to `dtype` (default: the model's own).

    A model built on the `meta` device is materialised on the CPU by the load itself (no random init first).
    """
    state = read_state_dict(path)
    check_state_dict(model, state, where=str(path))
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    on_meta = any(p.is_meta for p in params.values())
    cast = {}
    for key, tensor in state.items():
        ref = params.get(key, buffers.get(key))
        target = dtype or (ref.dtype if ref is not None and ref.is_floating_point() else tensor.dtype)
        cast[key] = tensor.to(target) if tensor.is_floating_point() else tensor
    model.load_state_dict(cast, strict=True, assign=on_meta)   # assign: a meta model takes the tensors as-is
    if dtype is not None:
        model.to(dtype)
    return model



def load_vggt(path: str | Path, dtype: torch.dtype | None = None) -> nn.Module:
    """The network a checkpoint describes (its stored config, else VGGT-1B), built on `meta` and loaded."""
    from spatial.feedforward.model import build_vggt

    return load_vggt_weights(build_vggt(read_checkpoint_config(path), device="meta"), path, dtype=dtype).eval()
