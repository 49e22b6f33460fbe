"""`PretrainedPolicy`, the base of every policy, and a policy's folder on disk.

A policy is one torch module holding its preprocessor, model and postprocessor, so `infer` takes raw robot
observations and returns actions in robot units, and one state dict (normaliser constants included) saves it.
Its folder: config.json (policy type, config, features), model.safetensors (weights and normaliser buffers),
stats.json (the dataset statistics the normalisers were built from). Written to a temporary sibling, then renamed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from policies.configuration import PolicyConfig, config_from_json
from policies.features import STATE, PolicyFeatures
from policies.jsonfile import read_json
from policies.processor import Postprocessor, Preprocessor
from twin_kit import InputError, make_parents, one_line, replace_path, staging_dir

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATS_FILE = "stats.json"
FORMAT = "twin-policy"
FORMAT_VERSION = 1


class PretrainedPolicy(nn.Module):
    """A policy: config, features, processors; subclasses define `forward` (training loss) and
    `predict_action_chunk` (normalised model inputs -> normalised (B, chunk, A) actions)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init__(self, config: PolicyConfig, features: PolicyFeatures, preprocessor: Preprocessor,
                 postprocessor: Postprocessor):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise InputError(f"{self.name} policy needs a {self.config_class.__name__}, not "
                             f"{type(config).__name__}")
        self.config, self.features = config, features
        self.preprocessor, self.postprocessor = preprocessor, postprocessor

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of a preprocessed batch, and its parts as floats for logging."""
        raise NotImplementedError

    def predict_action_chunk(self, batch: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def infer(self, observation: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        """Raw observations (batched, robot units, uint8 frames) -> (B, chunk, A) actions in robot units."""
        return self.postprocessor(self.predict_action_chunk(self.preprocessor(observation), **kwargs),
                                  observation.get(STATE))

    def optim_groups(self) -> list[dict]:
        """AdamW parameter groups: the image backbone at `lr_backbone`, the rest at `lr`."""
        backbone, rest = [], []
        for n, p in self.named_parameters():
            if p.requires_grad:
                (backbone if ".backbone." in f".{n}" else rest).append(p)
        groups = [{"params": rest, "lr": self.config.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": self.config.lr_backbone})
        return groups

    def num_parameters(self, trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)

    def save_pretrained(self, path: str | Path) -> Path:
        return save_policy(self, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> PretrainedPolicy:
        policy = load_policy(path, device)
        if cls is not PretrainedPolicy and not isinstance(policy, cls):
            raise InputError(f"{path}: holds a {policy.name} policy, not {cls.name}")
        return policy


def save_policy(policy: PretrainedPolicy, path: str | Path) -> Path:
    """Write `policy` to the folder `path` (replacing an earlier save of a policy there, nothing else)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / CONFIG_FILE).is_file())):
        raise InputError(f"{path}: exists and is not a saved policy; choose another folder")
    make_parents(path)
    head = {"format": FORMAT, "version": FORMAT_VERSION, "type": policy.name, "config": policy.config.to_json(),
            "features": policy.features.to_json()}
    weights = {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}
    with staging_dir(path) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(head, indent=2) + "\n")
        (tmp / STATS_FILE).write_text(json.dumps(policy.features.stats) + "\n")
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT, "type": policy.name})
        (tmp / WEIGHTS_FILE).chmod(0o644)  # safetensors writes it private; a policy folder is ordinary files
        replace_path(tmp, path)
    return path


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> PretrainedPolicy:
    """The policy saved in folder `path`, in eval mode on `device`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from policies.registry import policy_class

    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE):
        if not (path / name).is_file():
            raise InputError(f"{path}: not a saved Twin policy (no {name})")
    head = read_json(path / CONFIG_FILE)
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise InputError(f"{path / CONFIG_FILE}: not a Twin policy config")
    if head.get("version") != FORMAT_VERSION:
        raise InputError(f"{path}: policy format version {head.get('version')!r} is not supported "
                         f"({FORMAT_VERSION})")
    cls = policy_class(str(head.get("type")))
    config = config_from_json(cls.config_class, head.get("config"), str(path / CONFIG_FILE))
    features = PolicyFeatures.from_json(head.get("features") or {}, read_json(path / STATS_FILE))
    policy = cls(config, features, pretrained_backbone=False)
    try:
        weights = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as e:
        raise InputError(f"{path / WEIGHTS_FILE}: cannot read ({one_line(e)})") from None
    own = policy.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise InputError(f"{path / WEIGHTS_FILE}: does not fit its config ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. "
                         f"{(missing + unexpected + wrong)[:2]})")
    policy.load_state_dict(weights, strict=True)
    return policy.to(device).eval()
