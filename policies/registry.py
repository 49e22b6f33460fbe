"""Policies by name: "act" and "flow", each a typed config class and a policy class, imported on first use.

`make_policy(name, config, features)` builds a fresh policy for a dataset's features (a `PolicyFeatures`, or
the `LeRobotDatasetView` itself); `load_policy(path)` (policies.pretrained) reopens a saved one.
"""
from __future__ import annotations

import importlib

from policies.configuration import PolicyConfig, config_from_json
from policies.features import PolicyFeatures, policy_features
from twin_kit import InputError

_POLICIES: dict[str, tuple[str, str, str, str]] = {
    "act": ("policies.act.configuration_act", "ACTConfig", "policies.act.modeling_act", "ACTPolicy"),
    "flow": ("policies.flow.configuration_flow", "FlowConfig", "policies.flow.modeling_flow", "FlowPolicy"),
}


def policy_names() -> list[str]:
    return list(_POLICIES)


def _entry(name: str) -> tuple[str, str, str, str]:
    if name not in _POLICIES:
        raise InputError(f"unknown policy {name!r} (policies: {', '.join(_POLICIES)})")
    return _POLICIES[name]


def config_class(name: str) -> type[PolicyConfig]:
    mod, cls, _, _ = _entry(name)
    return getattr(importlib.import_module(mod), cls)


def policy_class(name: str) -> type:
    _, _, mod, cls = _entry(name)
    return getattr(importlib.import_module(mod), cls)


def make_config(name: str, **fields) -> PolicyConfig:
    """The named policy's config with `fields` overriding its defaults (unknown fields refused)."""
    return config_from_json(config_class(name), fields, f"{name} config")


def make_policy(name: str, config: PolicyConfig | dict | None = None, features=None):
    """A freshly initialised policy `name` for `features` (PolicyFeatures or a LeRobotDatasetView)."""
    cls = policy_class(name)
    if config is None:
        config = cls.config_class()
    elif isinstance(config, dict):
        config = config_from_json(cls.config_class, config, f"{name} config")
    if features is None:
        raise InputError(f"{name} policy: give the features it reads and writes (or its dataset)")
    if not isinstance(features, PolicyFeatures):
        view = features
        features = policy_features(view)
        if config.action_space == "delta":   # the offsets' statistics, from every episode of the dataset
            from policies.features import ACTION_DELTA
            from policies.processor import delta_stats, episode_pairs

            pairs = episode_pairs(view, range(view.total_episodes))
            features.stats[ACTION_DELTA] = delta_stats(pairs, config.chunk_size, features)
    return cls(config, features)
