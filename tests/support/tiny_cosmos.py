"""A tiny, randomly initialised Cosmos-Transfer 2.5 pipeline built from diffusers' own classes, for CPU tests.

Real code paths (control video, VAE, ControlNet + transformer denoising clip by clip, decode) with random weights;
no text encoder (prompts go in as embeddings of width TEXT_DIM) and a pass-through object in place of
cosmos_guardrail's multi-GB safety checker, as diffusers' own Cosmos tests do. Builds offline in well under a
second.
"""
from __future__ import annotations

import numpy as np
import torch

TEXT_DIM = 32


class PassThroughChecker(torch.nn.Module):
    """Stands in for CosmosSafetyChecker: approves every prompt and video."""

    def __init__(self):
        super().__init__()
        self.register_buffer("_probe", torch.zeros(1), persistent=False)

    @property
    def device(self):
        return self._probe.device

    @property
    def dtype(self):
        return self._probe.dtype

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray:
        return frames


def tiny_pipeline(seed: int = 0):
    """Cosmos2_5_TransferPipeline with two-layer models of width 32 (progress bar off). Without torchvision its
    ControlNet needs `restyle_cosmos`'s stand-in for one resize function, which that call installs."""
    from diffusers import (
        AutoencoderKLWan,
        Cosmos2_5_TransferPipeline,
        CosmosControlNetModel,
        CosmosTransformer3DModel,
        UniPCMultistepScheduler,
    )

    torch.manual_seed(seed)
    shared = dict(num_attention_heads=2, attention_head_dim=16, mlp_ratio=2, text_embed_dim=TEXT_DIM,
                  adaln_lora_dim=4, patch_size=(1, 2, 2), max_size=(4, 32, 32), rope_scale=(2.0, 1.0, 1.0),
                  extra_pos_embed_type="learnable", img_context_dim_in=TEXT_DIM, img_context_dim_out=TEXT_DIM)
    pipe = Cosmos2_5_TransferPipeline(
        text_encoder=None, tokenizer=None, scheduler=UniPCMultistepScheduler(), safety_checker=PassThroughChecker(),
        transformer=CosmosTransformer3DModel(in_channels=17, out_channels=16, num_layers=2, concat_padding_mask=True,
                                             controlnet_block_every_n=1, img_context_num_tokens=4, **shared),
        controlnet=CosmosControlNetModel(n_controlnet_blocks=2, in_channels=18, latent_channels=18, model_channels=32,
                                         use_crossattn_projection=False, **shared),
        vae=AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True]))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_embeddings(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (positive, negative) prompt embeddings (1, 8, TEXT_DIM)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 8, TEXT_DIM, generator=g), torch.randn(1, 8, TEXT_DIM, generator=g)
