"""ResNet-18 (He et al. 2016) as a feature-map extractor, written in Twin since torchvision is not usable here.

Modules carry torchvision's names (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, ...), so a local
copy of torchvision's ImageNet weights (`resnet18-f37072fd.pth`) loads strictly with `load_resnet_weights`; its
classifier (`fc.*`) is the only thing dropped. `width` scales every stage's channels (0.25-0.5 make small CPU
models), and `layers` stops after stage 3 for a finer feature map (stride 16 instead of 32). `norm="group"` swaps
every batch norm for a group norm (Diffusion Policy's choice for backbones trained from scratch): each image is
normalised on its own, so a sample's features never depend on the rest of its batch nor on running statistics.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from policies.configuration import BACKBONE_NORMS
from twin_kit import InputError, one_line

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2  # ResNet-18
GROUP_CHANNELS = 16  # channels per group of norm="group" (Diffusion Policy: num_features // 16)


def make_norm(kind: str, channels: int) -> nn.Module:
    """The backbone's normalisation layer over `channels`: BatchNorm2d, or GroupNorm of 16-channel groups."""
    if kind == "group":
        return nn.GroupNorm(max(1, channels // GROUP_CHANNELS), channels)
    return nn.BatchNorm2d(channels)


def stage_channels(width: float) -> tuple[int, ...]:
    """Channels of the four stages at a width multiplier (multiples of 8, at least 8)."""
    return tuple(max(8, round(c * width / 8) * 8) for c in STAGE_CHANNELS)


def feature_size(size: int, layers: int = 4) -> int:
    """Side of the feature map for a `size` px input: the stem halves it twice, each stage after the first once."""
    for _ in range(layers + 1):
        size = (size - 1) // 2 + 1
    return size


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch (or group) norm and an identity (or 1x1 projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet-18 trunk without pooling or classifier: (N, 3, H, W) normalised images -> (N, C, h, w) features.

    frozen_bn keeps every batch norm in inference mode with fixed parameters (as ACT does with a pretrained
    backbone: small policy batches make poor batch statistics); norm="group" has no batch statistics at all.
    """

    def __init__(self, width: float = 1.0, layers: int = 4, frozen_bn: bool = False, norm: str = "batch"):
        super().__init__()
        if layers not in (3, 4):
            raise InputError(f"backbone layers must be 3 or 4, not {layers}")
        if not 0.0 < width <= 4.0:
            raise InputError(f"backbone width must be in (0, 4], not {width}")
        if norm not in BACKBONE_NORMS:
            raise InputError(f"backbone norm must be one of {', '.join(BACKBONE_NORMS)}, not {norm!r}")
        if frozen_bn and norm != "batch":
            raise InputError("frozen_bn needs backbone norm batch (group norm keeps no statistics to freeze)")
        ch = stage_channels(width)
        self.width, self.layers, self.frozen_bn, self.norm = width, layers, frozen_bn, norm
        self.conv1 = nn.Conv2d(3, ch[0], 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, ch[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = ch[0]
        for i in range(layers):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, ch[i], stride, norm)] + [BasicBlock(ch[i], ch[i], 1, norm)
                                                               for _ in range(BLOCKS_PER_STAGE - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = ch[i]
        self.out_channels = cin
        self.stride = 2 ** (layers + 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init each block's last norm: a block starts as the identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
        if frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        if self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def blocks(self) -> list[tuple[nn.Module, ...]]:
        """The trunk's blocks in order (the stem, then each stage), what `frozen_blocks` counts."""
        return [(self.conv1, self.bn1)] + [(getattr(self, f"layer{i + 1}"),) for i in range(self.layers)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from a .pth / .safetensors file (a checkpoint's `state_dict` entry too)."""
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


def load_resnet_weights(model: ResNet, path: str | Path) -> None:
    """Load torchvision-named ResNet-18 weights (.pth or .safetensors) into `model`, strictly.

    Dropped: the classifier `fc.*` and, for a 3-stage model, `layer4.*`. Files saved before PyTorch 0.4.1
    (torchvision's own) lack the `num_batches_tracked` counters; they are filled with zeros. Anything else
    missing, unexpected or of the wrong shape is refused with a one-line error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such backbone weights file")
    sd = read_state_dict(path)
    skip = ("fc.",) + tuple(f"layer{i}." for i in range(model.layers + 1, 5))
    sd = {k: v for k, v in sd.items() if not k.startswith(skip)}
    own = model.state_dict()
    for k in own:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros((), dtype=torch.long)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise InputError(f"{path}: not ResNet-18 weights ({len(missing)} tensors missing, e.g. "
                         f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    wrong = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if wrong:
        k = wrong[0]
        raise InputError(f"{path}: {k} is {tuple(sd[k].shape)} but this backbone needs {tuple(own[k].shape)} "
                         f"(the file is for another width; torchvision's resnet18 is width 1.0, this one is "
                         f"{model.width})")
    model.load_state_dict(sd, strict=True)
