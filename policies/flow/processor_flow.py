"""The flow policy's processors: state and action normalised by their config modes (mean/std by default) from the
dataset's statistics, frames resized and normalised (ImageNet or per image); the inverse for actions. Real-time
chunking's prefix (already committed actions, robot units) goes through the same action normaliser."""
from __future__ import annotations

from policies.features import PolicyFeatures
from policies.flow.configuration_flow import FlowConfig
from policies.processor import Postprocessor, Preprocessor


def make_flow_processors(config: FlowConfig, features: PolicyFeatures) -> tuple[Preprocessor, Postprocessor]:
    """(preprocessor, postprocessor) of a flow policy for these features."""
    return (Preprocessor(features, config.image_size, config.state_norm, config.action_norm, config.action_space,
                         config.image_norm),
            Postprocessor(features, config.action_norm, config.action_space))
