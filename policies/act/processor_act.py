"""ACT's processors: mean/std normalisation of state and action (its config's modes) from the dataset's
statistics, and frames resized to the model size with ImageNet (or per-image) normalisation; the inverse for actions."""
from __future__ import annotations

from policies.act.configuration_act import ACTConfig
from policies.features import PolicyFeatures
from policies.processor import Postprocessor, Preprocessor


def make_act_processors(config: ACTConfig, features: PolicyFeatures) -> tuple[Preprocessor, Postprocessor]:
    """(preprocessor, postprocessor) of an ACT policy for these features."""
    return (Preprocessor(features, config.image_size, config.state_norm, config.action_norm, config.action_space,
                         config.image_norm),
            Postprocessor(features, config.action_norm, config.action_space))
