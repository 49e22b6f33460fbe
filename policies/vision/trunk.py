"""What the image backbones share: their argument checks, fixed parts, normalisation layers and strict loading.

`Trunk` is the base of ResNet and MobileNetV2. Fixed modules (frozen batch norms, frozen leading blocks) are one
mechanism: no gradients, and inference mode kept through `train()`. A batch norm in inference mode is an affine map
per channel, so `conv_norm` folds it into the convolution before it (one pass over the activations fewer, forward
and backward). `load_strict` is the weights check both loaders end with: the counters old files lack filled in,
anything missing, unexpected or misshapen refused in one line.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from policies.configuration import BACKBONE_NORMS
from twin_kit import InputError, one_line

GROUP_CHANNELS = 16  # channels per group of norm="group" (Diffusion Policy: num_features // 16)


def make_norm(kind: str, channels: int) -> nn.Module:
    """The backbone's normalisation layer over `channels`: BatchNorm2d, or GroupNorm of 16-channel groups."""
    if kind == "group":
        return nn.GroupNorm(max(1, channels // GROUP_CHANNELS), channels)
    return nn.BatchNorm2d(channels)


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`norm(conv(x))`, with a batch norm in inference mode folded into the convolution's weights and bias: the
    same map (and the same gradients for the convolution), a pass over the activations fewer."""
    if not (isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_var is not None
            and conv.padding_mode == "zeros"):
        return norm(conv(x))
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return F.conv2d(x, conv.weight * scale.reshape(-1, 1, 1, 1), shift, conv.stride, conv.padding, conv.dilation,
                    conv.groups)


class ConvNormSequential(nn.Sequential):
    """An nn.Sequential (same module names, same weights files) that runs each convolution followed by a batch
    norm through `conv_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            if (isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers)
                    and isinstance(layers[i + 1], nn.BatchNorm2d)):
                x = conv_norm(layers[i], layers[i + 1], x)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


class Trunk(nn.Module):
    """A feature-map backbone: (N, 3, H, W) normalised images -> (N, C, h, w), `layers` 3 (stride 16) or 4 (32).

    frozen_bn keeps every batch norm in inference mode with fixed parameters (as ACT does with a pretrained
    backbone: small policy batches make poor batch statistics); norm="group" has no batch statistics at all.
    A subclass builds its layers, then calls `fix_norms()`, and lists its blocks in `blocks()`.
    """

    def __init__(self, width: float, layers: int, frozen_bn: bool, norm: str):
        super().__init__()
        if layers not in (3, 4):
            raise InputError(f"backbone layers must be 3 or 4, not {layers}")
        if not 0.0 < width <= 4.0:
            raise InputError(f"backbone width must be in (0, 4], not {width}")
        if norm not in BACKBONE_NORMS:
            raise InputError(f"backbone norm must be one of {', '.join(BACKBONE_NORMS)}, not {norm!r}")
        if frozen_bn and norm != "batch":
            raise InputError("frozen_bn needs backbone norm batch (group norm keeps no statistics to freeze)")
        self.width, self.layers, self.frozen_bn, self.norm = width, layers, frozen_bn, norm
        self.stride = 2 ** (layers + 1)
        self._fixed: list[nn.Module] = []

    def blocks(self) -> list[tuple[nn.Module, ...]]:
        """The trunk's blocks in order, the stem first: what `freeze_blocks` counts."""
        raise NotImplementedError

    def fix(self, modules: Iterable[nn.Module]) -> None:
        """Keep `modules` as they are: no gradients, inference mode (also after `train()`)."""
        for m in modules:
            m.requires_grad_(False)
            m.eval()
            self._fixed.append(m)

    def fix_norms(self) -> None:
        """With frozen_bn, fix every batch norm."""
        if self.frozen_bn:
            self.fix(m for m in self.modules() if isinstance(m, nn.BatchNorm2d))

    def freeze_blocks(self, count: int) -> int:
        """Fix the first `count` blocks (-1: all); how many that is."""
        blocks = self.blocks()
        n = len(blocks) if count < 0 else min(count, len(blocks))
        for block in blocks[:n]:
            self.fix(block)
        return n

    def train(self, mode: bool = True) -> Trunk:
        super().train(mode)
        for m in self._fixed:
            m.eval()
        return self


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from a .pth / .safetensors file (a checkpoint's `state_dict` entry too)."""
    if not path.is_file():
        raise InputError(f"{path}: no such backbone weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error
        raise InputError(f"{path}: cannot read backbone weights ({one_line(e)})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return dict(sd)


def load_strict(model: Trunk, sd: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """Load `sd` (already renamed and trimmed to the model) into `model`, strictly. Files saved before PyTorch
    0.4.1 (torchvision's own) lack the `num_batches_tracked` counters: they are filled with zeros."""
    own = model.state_dict()
    for k in own:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros((), dtype=torch.long)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise InputError(f"{path}: not {name} weights ({len(missing)} tensors missing, e.g. {missing[:2]}; "
                         f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    wrong = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if wrong:
        k = wrong[0]
        raise InputError(f"{path}: {k} is {tuple(sd[k].shape)} but this backbone needs {tuple(own[k].shape)} "
                         f"(the file is for another width; the published {name} is width 1.0, this one is "
                         f"{model.width})")
    model.load_state_dict(sd, strict=True)
