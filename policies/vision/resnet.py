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

from policies.vision.trunk import ConvNormSequential, Trunk, conv_norm, load_strict, make_norm, read_state_dict

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2  # ResNet-18


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
            self.downsample = ConvNormSequential(nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(conv_norm(self.conv1, self.bn1, x))
        y = conv_norm(self.conv2, self.bn2, y)
        return self.relu(y + shortcut)


class ResNet(Trunk):
    """ResNet-18 trunk without pooling or classifier: (N, 3, H, W) normalised images -> (N, C, h, w) features."""

    def __init__(self, width: float = 1.0, layers: int = 4, frozen_bn: bool = False, norm: str = "batch"):
        super().__init__(width, layers, frozen_bn, norm)
        ch = stage_channels(width)
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
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init each block's last norm: a block starts as the identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
        self.fix_norms()

    def blocks(self) -> list[tuple[nn.Module, ...]]:
        """The trunk's blocks in order (the stem, then each stage), what `frozen_blocks` counts."""
        return [(self.conv1, self.bn1)] + [(getattr(self, f"layer{i + 1}"),) for i in range(self.layers)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(conv_norm(self.conv1, self.bn1, x)))
        for i in range(self.layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def load_resnet_weights(model: ResNet, path: str | Path) -> None:
    """Load torchvision-named ResNet-18 weights (.pth or .safetensors) into `model`, strictly.

    Dropped: the classifier `fc.*` and, for a 3-stage model, `layer4.*`. Files saved before PyTorch 0.4.1
    (torchvision's own) lack the `num_batches_tracked` counters; they are filled with zeros. Anything else
    missing, unexpected or of the wrong shape is refused with a one-line error.
    """
    path = Path(path)
    sd = read_state_dict(path)
    skip = ("fc.",) + tuple(f"layer{i}." for i in range(model.layers + 1, 5))
    load_strict(model, {k: v for k, v in sd.items() if not k.startswith(skip)}, path, "ResNet-18")
