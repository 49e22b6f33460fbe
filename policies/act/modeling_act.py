"""ACT: a conditional VAE whose decoder is a transformer over image tokens and proprioception.

Training: a small transformer (the CVAE encoder) reads [CLS, state, action chunk] and gives a Gaussian latent
(mean, log variance); a sample of it, the state and every camera's feature-map tokens enter the transformer
encoder; the decoder's `chunk_size` learned queries cross-attend to them and regress the action chunk. Loss: L1
on the (non-padded) actions + kl_weight * KL(latent || N(0, I)). Inference: the latent is zero (the prior's mean).
Positions are added to queries and keys in every attention layer (DETR, as ACT): 2D sines for image tokens,
learned embeddings for the latent and state tokens and for the decoder queries.
With `state_dropout` > 0, training replaces the state token of that share of samples by a learned "unknown"
token: demos whose joint paths alone predict the next actions otherwise let the policy copy them from the state
and read its cameras less (a restyled policy more so), which closed loop punishes.
With `aux_weight` > 0, training adds an auxiliary loss: a second decoder layer with one learned query per task
object reads the same memory and regresses each object's standardised xy (privileged simulator poses, which the
policy never sees as input), so the image tokens the actions are decoded from must say where the objects are.
With `consistency_weight` > 0 and paired batches (policies.train.pairs), the image tokens of each restyled frame
are pulled towards those of its original (policies.vision.encoder.paired_consistency).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from policies.act.configuration_act import ACTConfig
from policies.act.processor_act import make_act_processors
from policies.blocks import DecoderLayer, EncoderLayer, drop_state, sinusoidal_1d
from policies.features import ACTION, ACTION_IS_PAD, IMAGES, STATE, PolicyFeatures, check_objects, object_targets
from policies.pretrained import PretrainedPolicy
from policies.vision.encoder import ImageEncoder, paired_consistency
from twin_kit import InputError


class ACTPolicy(PretrainedPolicy):
    """ACT over the features' cameras and state; `forward` gives the training loss, `predict_action_chunk`
    the normalised (B, chunk_size, A) chunk."""

    name = "act"
    config_class = ACTConfig

    def __init__(self, config: ACTConfig, features: PolicyFeatures, *, pretrained_backbone: bool = True):
        super().__init__(config, features, *make_act_processors(config, features))
        c, d = config, config.dim
        s, a = features.state_dim, features.action_dim

        def layers(n: int, kind: type[nn.Module]) -> nn.ModuleList:
            return nn.ModuleList(kind(d, c.heads, c.ff_dim, c.dropout, c.pre_norm) for _ in range(n))

        if c.use_vae:
            self.vae_cls = nn.Parameter(torch.zeros(1, 1, d))
            self.vae_state_in = nn.Linear(s, d)
            self.vae_action_in = nn.Linear(a, d)
            self.vae_encoder = layers(c.n_vae_encoder_layers, EncoderLayer)
            self.vae_out = nn.Linear(d, 2 * c.latent_dim)
            self.register_buffer("vae_pos", sinusoidal_1d(2 + c.chunk_size, d), persistent=False)
        self.images = None
        if features.cameras:
            self.images = ImageEncoder(len(features.cameras), d, c.image_size, c.backbone_width, c.backbone_layers,
                                       c.frozen_bn, c.backbone_weights if pretrained_backbone else None,
                                       c.backbone_norm, c.backbone, c.frozen_blocks)
        self.latent_in = nn.Linear(c.latent_dim, d)
        self.state_in = nn.Linear(s, d)
        self.token_pos = nn.Parameter(torch.zeros(2, d))  # latent, state
        if c.state_dropout > 0:
            self.state_unknown = nn.Parameter(torch.zeros(d))
        self.encoder = layers(c.n_encoder_layers, EncoderLayer)
        self.decoder = layers(c.n_decoder_layers, DecoderLayer)
        self.query_pos = nn.Parameter(torch.zeros(c.chunk_size, d))
        self.action_head = nn.Linear(d, a)
        if c.aux_weight > 0:
            self.aux_query = nn.Parameter(torch.zeros(check_objects(features, c.aux_weight), d))
            self.aux_decoder = DecoderLayer(d, c.heads, c.ff_dim, c.dropout, c.pre_norm)
            self.aux_head = nn.Linear(d, 2)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for p in (self.token_pos, self.query_pos, *([self.aux_query] if self.config.aux_weight > 0 else [])):
            nn.init.normal_(p, std=0.02)
        if self.config.use_vae:
            nn.init.normal_(self.vae_cls, std=0.02)

    def _latent(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                 torch.Tensor | None]:
        """(latent sample, mean, log variance): from the CVAE encoder when training with actions, else zeros."""
        state = batch[STATE]
        b = state.shape[0]
        if not (self.config.use_vae and self.training and ACTION in batch):
            return state.new_zeros(b, self.config.latent_dim), None, None
        actions = batch[ACTION]
        tokens = torch.cat([self.vae_cls.expand(b, -1, -1), self.vae_state_in(state)[:, None],
                            self.vae_action_in(actions)], dim=1)
        mask = None
        if ACTION_IS_PAD in batch:  # padded actions are hidden from every query
            keep = torch.cat([torch.ones(b, 2, dtype=torch.bool, device=state.device), ~batch[ACTION_IS_PAD]], 1)
            mask = keep[:, None, None, :]
        x = tokens
        for layer in self.vae_encoder:
            x = layer(x, self.vae_pos[None], mask)
        mu, logvar = self.vae_out(x[:, 0]).chunk(2, dim=-1)
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp(), mu, logvar

    def _decode(self, batch: dict[str, torch.Tensor],
                latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(normalised action chunk, encoder memory, its positions, the image tokens before the encoder)."""
        state = batch[STATE]
        b = state.shape[0]
        state_token = self.state_in(state)
        if self.config.state_dropout > 0 and self.training:   # some samples must be decoded without the state
            state_token = drop_state(state_token, self.state_unknown, self.config.state_dropout)
        tokens = torch.stack([self.latent_in(latent), state_token], dim=1)
        pos, img_tokens = self.token_pos, None
        if self.images is not None:
            img_tokens, img_pos = self.images(batch[IMAGES])
            tokens = torch.cat([tokens, img_tokens], dim=1)
            pos = torch.cat([pos, img_pos], dim=0)
        memory = tokens
        for layer in self.encoder:
            memory = layer(memory, pos[None])
        x = torch.zeros(b, self.config.chunk_size, self.config.dim, dtype=memory.dtype, device=memory.device)
        for layer in self.decoder:
            x = layer(x, memory, self.query_pos[None], pos[None])
        return self.action_head(x), memory, pos, img_tokens

    def _aux_loss(self, batch: dict[str, torch.Tensor], memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the object queries' xy against the batch's standardised object positions."""
        target = object_targets(batch, self.features, self.config.aux_weight)
        q = torch.zeros(memory.shape[0], *self.aux_query.shape, dtype=memory.dtype, device=memory.device)
        pred = self.aux_head(self.aux_decoder(q, memory, self.aux_query[None], pos[None]))
        return F.mse_loss(pred, target)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if ACTION not in batch:
            raise InputError("ACT training needs the action chunk in the batch")
        target = batch[ACTION]
        if target.shape[1:] != (self.config.chunk_size, self.features.action_dim):
            raise InputError(f"action chunk is {tuple(target.shape[1:])}, ACT predicts "
                             f"{(self.config.chunk_size, self.features.action_dim)}")
        latent, mu, logvar = self._latent(batch)
        pred, memory, pos, img_tokens = self._decode(batch, latent)
        err = F.l1_loss(pred, target, reduction="none")
        if ACTION_IS_PAD in batch:
            valid = (~batch[ACTION_IS_PAD]).unsqueeze(-1).to(err.dtype)
            l1 = (err * valid).sum() / (valid.sum() * err.shape[-1]).clamp(min=1)
        else:
            l1 = err.mean()
        logs = {"l1": float(l1.detach())}
        loss = l1
        if mu is not None:
            kld = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
            loss = l1 + self.config.kl_weight * kld
            logs["kld"] = float(kld.detach())
        if self.config.aux_weight > 0 and self.training:   # a training signal only: validation scores actions
            aux = self._aux_loss(batch, memory, pos)
            loss = loss + self.config.aux_weight * aux
            logs["aux"] = float(aux.detach())
        cons = paired_consistency(img_tokens, batch, self.config.consistency_weight, self.training)
        if cons is not None:
            loss = loss + self.config.consistency_weight * cons
            logs["consistency"] = float(cons.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs

    def predict_action_chunk(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, chunk_size, A) normalised actions for preprocessed observations (latent = 0)."""
        state = batch[STATE]
        return self._decode(batch, state.new_zeros(state.shape[0], self.config.latent_dim))[0]
