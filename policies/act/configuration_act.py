"""`ACTConfig`: ACT's settings. Defaults are ACT's structure at CPU size: a half-width ResNet-18 on 96 px
frames, a 128-wide transformer (2 encoder layers, 1 decoder layer, as LeRobot runs it), a 2-layer CVAE encoder
with a 32-dimensional latent, chunks of 20 actions (2 s at Twin's 10 fps)."""
from __future__ import annotations

from dataclasses import dataclass

from policies.configuration import PolicyConfig
from twin_kit import opt


@dataclass
class ACTConfig(PolicyConfig):
    """ACT: a CVAE transformer over image tokens and proprioception that predicts action chunks."""

    n_encoder_layers: int = opt(2, "transformer encoder layers", low=1, high=48)
    n_decoder_layers: int = opt(1, "transformer decoder layers", low=1, high=48)
    pre_norm: bool = opt(False, "pre-norm transformer layers (ACT uses post-norm)")
    use_vae: bool = opt(True, "train with the CVAE encoder and KL loss (off: a deterministic model)")
    latent_dim: int = opt(32, "CVAE latent size", low=1, high=1024)
    n_vae_encoder_layers: int = opt(2, "CVAE encoder layers", low=1, high=48)
    kl_weight: float = opt(10.0, "weight of the KL term in the loss", low=0.0, high=1e4)
    aux_weight: float = opt(0.0, "weight of an auxiliary training loss: one decoder query per task object regresses "
                                 "its xy (the dataset's privileged.object_poses) from the encoder's tokens, so the "
                                 "image features must locate the objects (0: off; unused at run time)",
                            low=0.0, high=1e3)
    temporal_ensemble_coeff: float | None = opt(0.01, "runtime temporal ensembling: weight exp(-coeff * i) for "
                                                      "the i-th oldest chunk (none: execute n_action_steps per "
                                                      "chunk)", low=0.0, high=10.0)
