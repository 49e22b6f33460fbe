"""`TrainConfig`: what `twin train` trains (policy type and size), on what (one or more LeRobot datasets, mixed
by weight, split into train and validation episodes), how (AdamW, warmup + cosine, batch, steps, seed, device,
threads) and where (a run folder). Light to import (no torch): the CLI builds its options from this module alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from policies.configuration import BACKBONES
from twin_kit import InputError, opt, validate_config

POLICIES = ("act", "flow")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto")
AUGMENTS = ("shift", "color", "randconv", "sensor")  # policies.train.augment implements them
# options taken from the command line when resuming; every other one comes from the run's own run.json
RESUME_FREE = ("dataset", "out", "resume", "device", "threads")


@dataclass
class TrainConfig:
    """Train a visuomotor policy (ACT or flow matching) on LeRobot datasets into a run folder."""

    dataset: list[str] = opt(help="LeRobotDataset folder(s); several are mixed by --mix (e.g. original and "
                                  "restyled, 1:1) and must share state, action and cameras", positional=True)
    out: str = opt(help="run folder to write (e.g. runs/NAME): checkpoints/, policy/, curves.json, curves.png")
    policy: str = opt("act", "policy type: act or flow", choices=POLICIES)
    policy_config: str | None = opt(None, "JSON object of policy config fields (e.g. '{\"dim\": 64, "
                                          "\"kl_weight\": 1}'); the typed options below override it")
    chunk_size: int | None = opt(None, "actions per chunk (default: the policy's)", low=1, high=1000)
    image_size: int | None = opt(None, "side camera frames are resized to (default: the policy's)", low=32,
                                 high=512)
    backbone: str | None = opt(None, "image backbone: resnet18 or mobilenet_v2 (default: the policy's, resnet18)",
                               choices=BACKBONES)
    backbone_width: float | None = opt(None, "backbone channel multiplier (default: the policy's)", low=0.0,
                                       low_open=True, high=4.0)
    dim: int | None = opt(None, "transformer width (default: the policy's)", low=8, high=4096, multiple_of=4)
    layers: int | None = opt(None, "transformer layers: ACT's encoder layers, the flow policy's prefix and expert "
                                   "layers (default: the policy's)", low=1, high=48)
    action_space: str | None = opt(None, "what the policy predicts: absolute joint targets, or delta: offsets "
                                         "from the joints observed at each chunk's start (default: the "
                                         "policy's, absolute)", choices=("absolute", "delta"))
    pretrained_backbone: str | None = opt(None, "weights to start the image backbone from: a local torchvision-named "
                                                "file, or imagenet for the MobileNetV2 ImageNet weights Twin installs "
                                                "(with --backbone mobilenet_v2); implies --backbone-width 1; never "
                                                "downloaded")
    cameras: str | None = opt(None, "comma-separated cameras to use (e.g. front,wrist; none: state only; default: "
                                    "all)")
    mix: str | None = opt(None, "comma-separated sampling weights of the datasets (e.g. 1,1: half the samples "
                                "from each; default: in proportion to their frames)")
    val_episodes: float = opt(0.1, "validation episodes per dataset: a fraction (< 1) or a count (>= 1); "
                                   "0: no validation", low=0.0, high=1_000_000)
    augment: str = opt("none", "training-time image augmentation: none, or comma-separated kinds among shift "
                               "(random shifts of up to --shift of the side, edges repeated), color (random "
                               "brightness, contrast, saturation, hue), randconv (half the frames blended "
                               "with a random convolution of themselves) and sensor (random blur, pixel noise "
                               "and white balance)")
    shift: float = opt(0.06, "largest random shift of --augment shift, as a fraction of the frame side", low=0.0,
                       low_open=True, high=0.5)
    success_only: bool = opt(True, "train only on episodes the dataset marks successful")
    steps: int = opt(10_000, "optimiser steps", low=1, high=100_000_000)
    batch_size: int = opt(8, "samples per optimiser step, split over the processes", low=1, high=65_536)
    lr: float | None = opt(None, "peak learning rate (default: the policy's; the backbone's scales with it)",
                           low=0.0, low_open=True, high=1.0)
    warmup_steps: int = opt(500, "linear warmup steps (at most a quarter of --steps)", low=0, high=100_000_000)
    min_lr_ratio: float = opt(0.1, "cosine decay ends at this fraction of the peak learning rate", low=0.0,
                              high=1.0)
    grad_clip: float = opt(10.0, "gradient norm clip (0: none)", low=0.0, high=1e6)
    seed: int = opt(0, "seed of initialisation, sampling, dropout and noise (torch, numpy, python)", low=0,
                    high=2**31 - 1)
    device: str = opt("auto", "auto (cuda when present), cpu or cuda", choices=DEVICES)
    precision: str = opt("fp32", "arithmetic of the training passes: fp32, bf16 (autocast mixed precision "
                                 "with channels-last images and a fused AdamW; weights, optimiser and loss stay "
                                 "fp32; about a third faster on CPUs with AVX-512 BF16 or AMX, about ten times "
                                 "slower on CPUs without, which emulate it), or auto (bf16 where the device "
                                 "computes it natively, else fp32; run.json records the choice)",
                         choices=PRECISIONS)
    threads: int = opt(1, "torch threads per process (one is fastest on a small shared CPU)", low=1, high=256)
    log_every: int = opt(20, "steps between points of the training loss curve", low=1, high=1_000_000)
    val_every: int = opt(500, "steps between validation losses", low=1, high=100_000_000)
    val_samples: int = opt(512, "validation frames scored each time (a fixed, seeded subset)", low=1,
                           high=10_000_000)
    checkpoint_every: int = opt(1000, "steps between checkpoints", low=1, high=100_000_000)
    keep_checkpoints: int = opt(2, "checkpoints kept (the newest; 0: all)", low=0, high=1_000_000)
    resume: bool = opt(False, "continue the run at --out from its last checkpoint (with the run's own options)")

    def __post_init__(self):
        validate_config(self)
        if self.val_episodes >= 1 and self.val_episodes != int(self.val_episodes):
            raise InputError(f"--val-episodes must be a fraction below 1 or a whole count, got {self.val_episodes:g}")
        self.augmentation()

    @property
    def warmup(self) -> int:
        return min(self.warmup_steps, self.steps // 4)

    def augmentation(self) -> tuple[str, ...]:
        """The --augment kinds (none: empty), refusing unknown or repeated ones."""
        text = self.augment.strip().lower()
        if text in ("", "none"):
            return ()
        kinds = tuple(k.strip() for k in text.split(",") if k.strip())
        if any(k not in AUGMENTS for k in kinds) or len(set(kinds)) != len(kinds):
            raise InputError(f"--augment: {self.augment!r} must be none or distinct kinds among "
                             f"{', '.join(AUGMENTS)}")
        return kinds

    def mix_weights(self) -> list[float] | None:
        """The --mix weights, one per dataset (None: in proportion to frames)."""
        if self.mix is None:
            return None
        try:
            w = [float(x) for x in self.mix.split(",")]
        except ValueError:
            raise InputError(f"--mix must be comma-separated numbers, got {self.mix!r}") from None
        if len(w) != len(self.dataset):
            raise InputError(f"--mix has {len(w)} weight(s) for {len(self.dataset)} dataset(s)")
        if any(not (x > 0 and x < float("inf")) for x in w):
            raise InputError(f"--mix weights must be positive and finite, got {self.mix!r}")
        return w

    def camera_list(self) -> list[str] | None:
        if self.cameras is None:
            return None
        if self.cameras.strip().lower() == "none":
            return []
        names = [c.strip() for c in self.cameras.split(",") if c.strip()]
        if not names or len(set(names)) != len(names):
            raise InputError(f"--cameras: {self.cameras!r} must name distinct cameras")
        return names

    def policy_fields(self) -> dict:
        """Policy config fields: --policy-config, then the typed options, then --pretrained-backbone and --lr."""
        from policies.registry import config_class

        fields: dict = {}
        if self.policy_config:
            try:
                fields = json.loads(self.policy_config)
            except ValueError as e:
                raise InputError(f"--policy-config is not valid JSON ({e})") from None
            if not isinstance(fields, dict):
                raise InputError("--policy-config must be a JSON object of policy config fields")
        defaults = config_class(self.policy)()
        for name in ("chunk_size", "image_size", "backbone", "backbone_width", "dim", "action_space"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        if self.layers is not None:
            fields["n_encoder_layers" if self.policy == "act" else "n_layers"] = self.layers
        if "chunk_size" in fields and "n_action_steps" not in fields:
            fields["n_action_steps"] = min(defaults.n_action_steps, int(fields["chunk_size"]))
        if self.pretrained_backbone is not None:
            fields["backbone_weights"] = self.pretrained_backbone
            if self.backbone_width is None and "backbone_width" not in fields:
                fields["backbone_width"] = 1.0
        if self.lr is not None:
            lr, lr_bb = fields.get("lr", defaults.lr), fields.get("lr_backbone", defaults.lr_backbone)
            fields["lr"], fields["lr_backbone"] = self.lr, lr_bb * self.lr / lr
        return fields


def train_verb(cfg: TrainConfig, json_out: bool = False) -> int:
    """The `twin train` runner for the CLI: imports torch and the training code only when the verb runs."""
    from policies.train.run import run_train

    return run_train(cfg, json_out)
