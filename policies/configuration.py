"""`PolicyConfig`: what every policy shares (chunk length, image size, backbone, transformer width,
normalisation, optimiser hints), each field documented so the training command can turn it into an option.
ACT's and the flow policy's configs extend it; `to_json` / `config_from_json` round-trip them through
config.json. Light to import (no torch): a command builds its options from the config modules alone."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from twin_kit import InputError, opt, validate_config

C = TypeVar("C", bound="PolicyConfig")
NORM_MODES = ("mean_std", "min_max", "quantile", "identity")  # policies.processor implements them
BACKBONE_NORMS = ("batch", "group")  # policies.vision.resnet implements them
BACKBONES = ("resnet18", "mobilenet_v2")  # policies.vision.resnet and policies.vision.mobilenet
IMAGE_NORMS = ("imagenet", "per_image")  # policies.vision.preprocess implements them
PACKAGED_WEIGHTS = "imagenet"  # backbone_weights value: the ImageNet weights Twin installs (mobilenet_v2's)


@dataclass
class PolicyConfig:
    """Shared policy settings; the defaults make a small model that trains on two CPU cores."""

    chunk_size: int = opt(20, "actions predicted per inference (the action chunk)", low=1, high=1000)
    n_action_steps: int = opt(10, "actions a runtime executes from each chunk before asking again (without "
                                  "temporal ensembling)", low=1, high=1000)
    image_size: int = opt(96, "side in pixels that camera frames are resized to", low=32, high=512)
    backbone: str = opt("resnet18", "image backbone: resnet18 (ResNet-18), or mobilenet_v2 (MobileNetV2, whose "
                                    "ImageNet weights Twin installs: backbone_weights imagenet)", choices=BACKBONES)
    backbone_width: float = opt(0.5, "backbone channel multiplier (1.0 is the published network's)", low=0.0,
                                high=4.0, low_open=True)
    backbone_layers: int = opt(4, "backbone depth: 4 (stride 32) or 3 (stride 16, more image tokens)",
                               choices=(3, 4))
    backbone_weights: str | None = opt(None, "weights to start the backbone from: a local torchvision-named file "
                                             "(e.g. resnet18-f37072fd.pth), or imagenet for the ImageNet weights "
                                             "Twin installs (mobilenet_v2 only); needs --backbone-width 1")
    frozen_bn: bool = opt(False, "keep the backbone's batch norms fixed (advised with pretrained weights)")
    frozen_blocks: int = opt(0, "leading backbone blocks kept fixed, no gradients and batch norms in inference mode "
                                "(0: none; -1: all, a fixed pretrained feature extractor whose backward pass training "
                                "skips); blocks are the stem then MobileNetV2's inverted residuals or ResNet's stages",
                             low=-1, high=100)
    image_norm: str = opt("imagenet", "input normalisation: imagenet (a fixed mean and spread per channel, what "
                                      "pretrained backbones expect), or per_image: each frame's channels standardised "
                                      "by their own mean and spread, blind to global exposure and white balance",
                          choices=IMAGE_NORMS)
    backbone_norm: str = opt("batch", "the backbone's normalisation: batch (ResNet's), or group: each image "
                                      "normalised on its own, no batch statistics (Diffusion Policy's choice when "
                                      "training from scratch)", choices=BACKBONE_NORMS)
    dim: int = opt(128, "transformer width", low=8, high=4096, multiple_of=4)
    heads: int = opt(4, "attention heads", low=1, high=64)
    ff_dim: int = opt(512, "transformer feed-forward width", low=8, high=16384)
    dropout: float = opt(0.1, "dropout in the transformer", low=0.0, high=0.9)
    state_dropout: float = opt(0.0, "probability, per training sample, that the proprioception token is replaced by "
                                    "a learned 'state unknown' token, so the chunk must come from the images too "
                                    "(against copycat policies that replay the demos' joint paths; unused at run "
                                    "time)", low=0.0, high=1.0)
    consistency_weight: float = opt(0.0, "weight of a training loss that pulls each restyled frame's image tokens "
                                         "towards those of the same frame in its original appearance (the first "
                                         "dataset's episode of the same seed), so the encoder learns to see past "
                                         "appearance (0: off; needs paired datasets, unused at run time)",
                                    low=0.0, high=1e3)
    state_norm: str = opt("mean_std", "normalisation of observation.state", choices=NORM_MODES)
    action_norm: str = opt("mean_std", "normalisation of action", choices=NORM_MODES)
    action_space: str = opt("absolute", "what the model predicts: absolute joint targets, or delta: each chunk's "
                                        "targets as offsets from the joint positions observed at its start "
                                        "(openpi's delta actions; normalised with the offsets' own statistics)",
                            choices=("absolute", "delta"))
    lr: float = opt(1e-4, "learning rate (AdamW)", low=0.0, low_open=True, high=1.0)
    lr_backbone: float = opt(1e-4, "learning rate of the image backbone", low=0.0, high=1.0)
    weight_decay: float = opt(1e-4, "AdamW weight decay", low=0.0, high=1.0)

    def __post_init__(self):
        validate_config(self)
        if self.dim % self.heads:
            raise InputError(f"dim {self.dim} must be a multiple of heads {self.heads}")
        if self.n_action_steps > self.chunk_size:
            raise InputError(f"n_action_steps {self.n_action_steps} exceeds chunk_size {self.chunk_size}")
        if self.backbone_norm != "batch" and (self.backbone_weights or self.frozen_bn):
            raise InputError(f"backbone_norm {self.backbone_norm}: backbone_weights and frozen_bn need batch norm "
                             f"(torchvision's resnet18 has batch norms)")
        if self.backbone_weights and self.backbone_width != 1.0:
            raise InputError(f"backbone_weights need backbone_width 1.0 (the published {self.backbone}), not "
                             f"{self.backbone_width}")
        if self.backbone_weights == PACKAGED_WEIGHTS and self.backbone != "mobilenet_v2":
            raise InputError(f"backbone_weights {PACKAGED_WEIGHTS}: Twin installs ImageNet weights for mobilenet_v2 "
                             f"only; give {self.backbone} a local weights file")

    @property
    def action_delta_indices(self) -> list[int]:
        """Frame offsets of the action targets of one sample (LeRobot's delta indices): 0 .. chunk_size - 1."""
        return list(range(self.chunk_size))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def config_from_json(cls: type[C], data: dict, where: str = "config") -> C:
    """A config of class `cls` from its JSON fields; unknown fields are refused, missing ones take defaults."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: must be a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as e:
        raise InputError(f"{where}: {e}") from None
